// nd-train --init-weights, --init-skip, --no-augment, --no-shuffle and the progress lines: two SGD
// steps (momentum, weight decay) from a weights file on the stored batches equal the update
// computed here by hand from the network's own gradients; every kind of bad file is one clear
// error that leaves no run directory; --init-skip keeps the matching names at their initial
// values; config.json records the file and its sha256, --resume keeps the flags and refuses a
// weights file that changed before the first checkpoint.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "apps/checkpoint.h"
#include "apps/datasets.h"
#include "apps/epoch_progress.h"
#include "apps/trainer.h"
#include "io/safetensors.h"
#include "io/sha256.h"
#include "nets/registry.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/run_fixtures.h"
#include "test/temp_dir.h"

using namespace nd;
namespace fs = std::filesystem;

namespace {

// Weights of a short run with another seed: neither the initial weights nor running statistics.
std::string trained_weights(const std::string& norm, const test::TempDir& dir) {
  TrainConfig cfg = test::fashion_slice("mlp", norm, dir.file("source-" + norm));
  cfg.epochs = 1;
  cfg.seed = 7;
  std::ostringstream log;
  train(cfg, log);
  return cfg.output + "/last.safetensors";
}

// The first `count` training images in stored order, untransformed but for the dataset's own
// scaling (what --no-augment --no-shuffle feeds), and their labels.
std::pair<Tensor, Tensor> stored_batch(const TrainConfig& cfg, int64_t first, int64_t count) {
  DataSplits data = load_splits(cfg, true, false);
  const Shape s = data.train->sample_shape();
  const int64_t pixels = s[0] * s[1] * s[2];
  std::vector<float> images(size_t(count * pixels));
  std::vector<int64_t> labels;
  Generator unused(0);
  for (int64_t i = 0; i < count; ++i) {
    data.train->load(first + i, unused, images.data() + i * pixels);
    labels.push_back(data.train->label(first + i));
  }
  return {Tensor::from_vector(images, {count, s[0], s[1], s[2]}),
          Tensor::from_vector(labels, {count})};
}

double relative_error(const Tensor& got, const std::vector<double>& want) {
  const auto g = got.to_vector<double>();
  REQUIRE(g.size() == want.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < g.size(); ++i) diff += (g[i] - want[i]) * (g[i] - want[i]);
  for (double w : want) norm += w * w;
  return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
}

}  // namespace

TEST_CASE("two SGD steps from --init-weights on stored batches equal the hand-computed update",
          "[trainer][init]") {
  test::TempDir dir("init_steps");
  for (const std::string norm : {"bn", "nd"}) {
    INFO("mlp --norm " << norm);
    const std::string weights = trained_weights(norm, dir);
    TrainConfig cfg = test::fashion_slice("mlp", norm, dir.file("run-" + norm));
    cfg.epochs = 3;  // multistep drops the rate at epochs 1 and 2 (0.4 and 0.8 of 3)
    cfg.stop_after = 1;
    cfg.batch_size = 32;
    cfg.train_limit = 64;  // two steps
    cfg.lr = 0.05;
    cfg.momentum = 0.9;
    cfg.weight_decay = 1e-3;
    cfg.lr_scheduler = "multistep";  // one rate through the epoch (run.epochs[0].lr)
    cfg.init_weights = weights;
    cfg.no_augment = cfg.no_shuffle = true;
    std::ostringstream log;
    const TrainResult run = train(cfg, log);

    // By hand: the same network from the same file, its gradients on the stored batches, and
    // SGD with momentum and weight decay as PyTorch defines it, in double.
    Generator gen(cfg.seed);
    auto net = build_net(net_config(cfg, 1, 28, 28, 10), gen);
    load_init_weights(weights, "", *net);
    net->train();
    std::map<std::string, Tensor> initial;
    for (const auto& [name, t] : net->state_dict()) initial[name] = t.clone();
    std::map<std::string, std::vector<double>> w, buf;
    for (auto& [name, p] : net->named_parameters()) w[name] = p.to_vector<double>();
    for (int64_t step = 0; step < 2; ++step) {
      auto [x, y] = stored_batch(cfg, step * cfg.batch_size, cfg.batch_size);
      net->zero_grad();
      ops::loss(ops::LossKind::CrossEntropy, (*net)(x), y).backward();
      for (auto& [name, p] : net->named_parameters()) {
        const auto g = p.grad().to_vector<double>();
        auto& wv = w[name];
        auto& b = buf[name];
        if (b.empty()) b.assign(g.size(), 0.0);
        for (size_t i = 0; i < g.size(); ++i) {
          const double d = g[i] + cfg.weight_decay * wv[i];
          b[i] = step == 0 ? d : cfg.momentum * b[i] + d;
          wv[i] -= run.epochs[0].lr * b[i];
        }
        std::vector<float> as_float(wv.begin(), wv.end());
        NoGradGuard no_grad;
        p.copy_(Tensor::from_vector(as_float, p.shape()));
      }
    }
    for (auto& [name, p] : net->named_parameters()) {
      INFO(name);
      const Tensor& got = run.final_state.at(name);
      CHECK(relative_error(got, w[name]) < 1e-5);
      CHECK(relative_error(got, initial.at(name).to_vector<double>()) > 1e-4);  // it moved
    }
    for (auto& [name, b] : net->named_buffers()) {  // running statistics of the same batches
      INFO(name);
      CHECK(relative_error(run.final_state.at(name), b.to_vector<double>()) < 1e-5);
    }
    const std::string config = test::read_text(cfg.output + "/config.json");
    REQUIRE(run.epochs[0].lr == cfg.lr);
    CHECK(config.find("\"init_weights\": \"" + weights + "\"") != std::string::npos);
    CHECK(config.find("\"init_weights_sha256\": \"" + io::sha256_file(weights) + "\"") !=
          std::string::npos);
    CHECK(config.find("\"no_augment\": true") != std::string::npos);
    CHECK(config.find("\"no_shuffle\": true") != std::string::npos);
  }
}

TEST_CASE("--init-weights that do not fit: one error listing every name, no run directory",
          "[trainer][init]") {
  test::TempDir dir("init_errors");
  const std::string weights = trained_weights("bn", dir);
  const auto good = io::load_safetensors(weights);
  TrainConfig cfg = test::fashion_slice("mlp", "bn", dir.file("run"));
  cfg.epochs = 1;
  auto attempt = [&](const std::string& file, const std::vector<std::string>& parts) {
    cfg.init_weights = file;
    std::ostringstream log;
    test::check_error_contains([&] { train(cfg, log); }, parts);
    CHECK_FALSE(fs::exists(cfg.output));
  };
  std::vector<std::string> names;
  for (const auto& [name, t] : good) names.push_back(name);
  REQUIRE(names.size() >= 4);

  auto wrong = good;  // two missing, one unexpected, one of another shape
  wrong.erase(names[0]);
  wrong.erase(names[1]);
  wrong["head.extra"] = Tensor::zeros({3});
  wrong[names[2]] = Tensor::zeros({1, 2, 3});
  io::save_safetensors(dir.file("wrong.safetensors"), wrong);
  attempt(dir.file("wrong.safetensors"), {"wrong.safetensors", "missing", names[0], names[1],
                                          "not in the model", "head.extra", names[2], "(1, 2, 3)"});

  auto mistyped = good;  // an integer tensor where the model has float32
  const std::string float_name = names[3];
  mistyped[float_name] = Tensor::from_vector(
      std::vector<int64_t>(size_t(good.at(float_name).numel()), 1), good.at(float_name).shape());
  io::save_safetensors(dir.file("mistyped.safetensors"), mistyped);
  attempt(dir.file("mistyped.safetensors"), {"mistyped.safetensors", float_name, "int64"});

  const std::string bytes = test::read_text(weights);
  std::ofstream(dir.file("truncated.safetensors"), std::ios::binary)
      << bytes.substr(0, bytes.size() - 100);
  attempt(dir.file("truncated.safetensors"), {"truncated.safetensors"});

  std::ofstream(dir.file("model.pth"), std::ios::binary)
      << std::string("PK\x03\x04\0\0\x08\x08", 8);
  attempt(dir.file("model.pth"), {"model.pth", "save_file"});
  attempt(dir.file("absent.safetensors"), {"absent.safetensors", "does not exist"});

  cfg.init_weights = weights;
  cfg.init_skip = "(";
  std::ostringstream log;
  test::check_error_contains([&] { train(cfg, log); }, {"--init-skip", "("});
  CHECK_FALSE(fs::exists(cfg.output));
}

TEST_CASE("--init-skip keeps the matching names at their initial values", "[trainer][init]") {
  test::TempDir dir("init_skip");
  const std::string weights = trained_weights("bn", dir);
  TrainConfig cfg = test::fashion_slice("mlp", "bn", dir.file("run"));
  auto file = io::load_safetensors(weights);
  const std::string skipped = file.rbegin()->first;  // drop one name, add a foreign one
  const std::string prefix = skipped.substr(0, skipped.find('.') + 1);
  file.erase(skipped);
  file[prefix + "foreign"] = Tensor::zeros({5});
  io::save_safetensors(dir.file("partial.safetensors"), file);

  Generator gen(cfg.seed), same(cfg.seed);
  auto net = build_net(net_config(cfg, 1, 28, 28, 10), gen);
  const auto fresh = build_net(net_config(cfg, 1, 28, 28, 10), same)->state_dict();
  std::string pattern;
  for (char c : prefix) pattern += c == '.' ? std::string("\\.") : std::string(1, c);
  load_init_weights(dir.file("partial.safetensors"), pattern + ".*", *net);
  for (const auto& [name, t] : net->state_dict()) {
    INFO(name);
    const Tensor& want = name.rfind(prefix, 0) == 0 ? fresh.at(name) : file.at(name);
    CHECK(test::first_difference({{name, t}}, {{name, want}}).empty());
  }
  // Without the pattern the same file is refused.
  test::check_error_contains([&] { load_init_weights(dir.file("partial.safetensors"), "", *net); },
                             {skipped, prefix + "foreign"});
}

TEST_CASE("--resume keeps --init-weights, --no-augment, --no-shuffle and checks the file",
          "[trainer][init]") {
  test::TempDir dir("init_resume");
  const std::string weights = trained_weights("bn", dir);
  TrainConfig cfg = test::fashion_slice("mlp", "bn", dir.file("run"));
  cfg.init_weights = weights;
  cfg.no_augment = cfg.no_shuffle = true;
  std::ostringstream log;
  const TrainResult straight = train(cfg, log);
  cfg.output = dir.file("resumed");
  cfg.stop_after = 1;
  train(cfg, log);
  TrainConfig saved = resume_config(cfg.output);
  CHECK(saved.init_weights == weights);
  CHECK(saved.no_augment);
  CHECK(saved.no_shuffle);
  const TrainResult resumed = train(saved, log, cfg.output);
  CHECK(resumed.epochs.back().train_loss == straight.epochs.back().train_loss);

  // Killed before its first checkpoint, the run starts again from the file, if it is the same.
  cfg.output = dir.file("restarted");
  cfg.stop_after = 0;
  cfg.init_weights_sha256 = std::string(64, '0');
  fs::create_directories(cfg.output);
  std::ofstream(cfg.output + "/config.json") << to_json(cfg);
  test::check_error_contains([&] { train(resume_config(cfg.output), log, cfg.output); },
                             {"has changed since", weights, io::sha256_file(weights)});
}

TEST_CASE("--no-augment gives the stored CIFAR pixels, normalised, whatever the generator",
          "[trainer][init]") {
  test::TempDir dir("no_augment");
  Generator pixels(3);
  for (const std::string file : {"data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                 "data_batch_5", "test_batch"}) {
    std::ofstream out(dir.file(file + ".bin"), std::ios::binary);
    for (int image = 0; image < 2; ++image) {
      out.put(char(image));
      for (int i = 0; i < 3 * 32 * 32; ++i) out.put(char(pixels.below(256)));
    }
  }
  TrainConfig cfg;
  cfg.dataset = "cifar10";
  cfg.data_dir = dir.path();
  auto sample = [&](bool no_augment, uint64_t seed) {
    cfg.no_augment = no_augment;
    DataSplits data = load_splits(cfg, true, false);
    std::vector<float> out(3 * 32 * 32);
    Generator gen(seed);
    data.train->load(0, gen, out.data());
    return out;
  };
  CHECK(sample(true, 1) == sample(true, 2));
  bool augmented = false;  // some seed crops or flips
  for (uint64_t seed = 1; seed < 20 && !augmented; ++seed)
    augmented = sample(false, seed) != sample(true, 1);
  CHECK(augmented);
}

TEST_CASE("progress lines while an epoch runs", "[trainer]") {
  test::TempDir dir("progress");
  TrainConfig cfg = test::fashion_slice("mlp", "bn", dir.file("run"));
  cfg.epochs = 1;
  cfg.progress = true;
  cfg.log_interval = 2;  // 5 steps: lines after steps 2 and 4, then the epoch line
  std::ostringstream log;
  train(cfg, log);
  const std::string out = log.str();
  INFO(out);
  CHECK(out.find("epoch 1/1  step 2/5  loss ") != std::string::npos);
  CHECK(out.find("epoch 1/1  step 4/5  loss ") != std::string::npos);
  CHECK(out.find("step 1/5") == std::string::npos);
  CHECK(out.find("step 5/5") == std::string::npos);
  for (const char* part : {"top1 ", "img/s", "data ", "lr 0.1", "ETA "})
    CHECK(out.find(part) != std::string::npos);
  CHECK(out.find('\r') == std::string::npos);  // not a terminal: whole lines
}

TEST_CASE("progress line format and durations", "[trainer]") {
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(59.4) == "59s");
  CHECK(format_duration(125) == "2m05s");
  CHECK(format_duration(3 * 3600 + 7 * 60 + 20) == "3h07m");
  ProgressSnapshot s;
  s.steps_done = 100;
  s.loss_mean = 1.23456;
  s.top1 = 45.678;
  s.images = 12800;
  s.data_seconds = 5;
  s.lr = 0.0999;
  CHECK(progress_line(3, 20, 391, s, 50) ==
        "epoch 3/20  step 100/391  loss 1.2346  top1 45.68%  256 img/s  data 10%  lr 0.0999  "
        "ETA 2m26s");
  s.images = 400;  // below 100 img/s: one decimal
  CHECK(progress_line(3, 20, 391, s, 50).find("  8.0 img/s  ") != std::string::npos);
}
