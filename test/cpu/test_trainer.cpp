// The full trainer: run directory (config.json, summary.csv, checkpoints), exact resume (two
// epochs straight equal one epoch + --resume, bitwise), --evaluate, a NaN that keeps the last good
// checkpoint, CIFAR-format files end to end, and nd-infer on every network.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/infer.h"
#include "apps/trainer.h"
#include "data/cifar.h"
#include "io/safetensors.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/data_dir.h"
#include "test/net_tables.h"
#include "test/run_fixtures.h"
#include "test/temp_dir.h"

using namespace nd;
using test::fashion_slice;
using test::read_text;
using test::require_same_tensors;
namespace fs = std::filesystem;

namespace {

// CIFAR-10 binary files (the published layout) whose classes differ in colour and texture, so a
// network can learn them: n_train images spread over data_batch_1..5, n_test in test_batch.
void write_cifar10(const std::string& dir, int64_t n_train, int64_t n_test) {
  Generator gen(11);
  auto write = [&](const std::string& path, int64_t count) {
    std::ofstream out(path, std::ios::binary);
    for (int64_t i = 0; i < count; ++i) {
      const uint8_t label = uint8_t(gen.below(10));
      out.put(char(label));
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t y = 0; y < 32; ++y)
          for (int64_t x = 0; x < 32; ++x) {
            const double stripes = ((x + y * (label % 3)) / (1 + label % 4)) % 2 ? 60.0 : 0.0;
            const double v = 25.0 * label * (c + 1) / 3.0 + stripes + 30.0 * gen.uniform();
            out.put(char(uint8_t(std::min(255.0, v))));
          }
    }
  };
  for (int b = 1; b <= 5; ++b)
    write(dir + "/data_batch_" + std::to_string(b) + ".bin", n_train / 5);
  write(dir + "/test_batch.bin", n_test);
}

// Two epochs straight against one epoch (--stop-after 1), then --resume to two: same weights,
// buffers, optimizer state and history, bit for bit.
void check_exact_resume(TrainConfig cfg, const test::TempDir& dir) {
  std::ostringstream log;
  cfg.output = dir.file("straight");
  const TrainResult straight = train(cfg, log);
  // Interrupted after epoch 1 of 2 (the schedule spans both), then resumed.
  cfg.output = dir.file("resumed");
  cfg.stop_after = 1;
  REQUIRE(train(cfg, log).epochs.size() == 1);
  TrainConfig saved = resume_config(cfg.output);
  cfg.stop_after = 0;
  CHECK(to_json(saved) == to_json(cfg));
  saved.workers = 0;  // batches do not depend on the number of loader threads
  const TrainResult resumed = train(saved, log, cfg.output);
  REQUIRE(resumed.epochs.size() == 2);
  CHECK(resumed.epochs[1].train_loss == straight.epochs[1].train_loss);
  CHECK(resumed.epochs[1].test_top1 == straight.epochs[1].test_top1);
  require_same_tensors(io::load_safetensors(dir.file("straight/last.safetensors")),
                       io::load_safetensors(dir.file("resumed/last.safetensors")));
  require_same_tensors(io::load_safetensors(dir.file("straight/training_state.safetensors")),
                       io::load_safetensors(dir.file("resumed/training_state.safetensors")));
  // summary.csv: the header and one row per epoch, identical except for the timings.
  auto rows = [](const std::string& path) {
    std::vector<std::string> out;
    std::istringstream in(read_text(path));
    std::string line;
    while (std::getline(in, line))
      out.push_back(line.substr(0, line.rfind(',', line.rfind(',') - 1)));
    return out;
  };
  const auto a = rows(dir.file("straight/summary.csv")), b = rows(dir.file("resumed/summary.csv"));
  REQUIRE(a.size() == 3);
  CHECK(a == b);
  CHECK(a[0] == "epoch,lr,train_loss,train_top1,test_loss,test_top1,test_top5");
}

// Writes net's weights and the batch x into dir and returns the nd-infer settings that read them.
InferConfig infer_files(const NetConfig& n, Module& net, const Tensor& x,
                        const test::TempDir& dir) {
  io::save_safetensors(dir.file("w.safetensors"), net.state_dict());
  io::save_safetensors(dir.file("x.safetensors"), {{"input", x}});
  InferConfig cfg;
  cfg.net = n;
  cfg.weights = dir.file("w.safetensors");
  cfg.input = dir.file("x.safetensors");
  cfg.output = dir.file("y.safetensors");
  cfg.device = "cpu";
  return cfg;
}

// An MLP of the given norm, n random images and the nd-infer settings that read them.
struct MlpInferCase {
  NetConfig net_cfg;
  std::shared_ptr<Module> net;
  Tensor x;
  InferConfig cfg;
};

MlpInferCase mlp_infer_case(const std::string& norm, int64_t n, Generator& gen,
                            const test::TempDir& dir) {
  MlpInferCase c;
  c.net_cfg.arch = "mlp";
  c.net_cfg.norm = norm;
  c.net = build_net(c.net_cfg, gen);
  c.x = normal_tensor({n, 1, 28, 28}, 0, 1, gen);
  c.cfg = infer_files(c.net_cfg, *c.net, c.x, dir);
  return c;
}

}  // namespace

TEST_CASE("resume is exact: 2 epochs equal 1 epoch + --resume to 2, bitwise", "[trainer]") {
  test::TempDir dir("resume");
  SECTION("MLP with ChannelDeconv, SGD") {
    check_exact_resume(fashion_slice("mlp", "nd", ""), dir);
  }
  SECTION("MLP with batch norm, Adam") {
    TrainConfig cfg = fashion_slice("mlp", "bn", "");
    cfg.optimizer = "adam";
    cfg.lr = 0.003;
    check_exact_resume(cfg, dir);
  }
  SECTION("MLP with batch norm, SGD, weights exported as BF16 (the state stays exact)") {
    TrainConfig cfg = fashion_slice("mlp", "bn", "");
    cfg.save_dtype = "BF16";
    check_exact_resume(cfg, dir);
  }
}

// [large]: a CIFAR-sized network on the CPU reference, the longest trainer runs (ThreadSanitizer
// leaves them out: their threads are those of the MLP runs).
TEST_CASE("resume is exact for MobileNetV2 with deconvolution (frozen stem) on CIFAR-format files",
          "[trainer][large]") {
  test::TempDir dir("resume_mobilenet");
  write_cifar10(dir.path(), 40, 16);
  TrainConfig cfg = fashion_slice("mobilenetv2", "nd", "");
  cfg.dataset = "cifar10";
  cfg.data_dir = dir.path();
  cfg.batch_size = 8;
  cfg.freeze = true;
  check_exact_resume(cfg, dir);
}

TEST_CASE("run directory: config, summary, checkpoints, --evaluate", "[trainer]") {
  test::TempDir dir("rundir");
  TrainConfig cfg = fashion_slice("mlp", "bn", dir.file("run"));
  std::ostringstream log;
  const TrainResult r = train(cfg, log);
  for (const char* f : {"config.json", "summary.csv", "steps.csv", "last.safetensors",
                        "best.safetensors", "training_state.safetensors"}) {
    INFO(f);
    CHECK(fs::exists(dir.file(std::string("run/") + f)));
  }
  for (const auto& entry : fs::directory_iterator(dir.file("run")))
    CHECK(entry.path().string().find(".tmp") == std::string::npos);  // no temporary left behind
  CHECK(config_from_json(read_text(dir.file("run/config.json")), "config.json").lr == cfg.lr);
  // The weights are the reference's names and nothing else.
  auto weights = io::load_safetensors(dir.file("run/last.safetensors"));
  CHECK(weights.count("2.running_var"));
  CHECK(weights.at("2.num_batches_tracked").dtype() == DType::I64);
  CHECK(weights.at("2.num_batches_tracked").to_vector<int64_t>()[0] == 10);  // 2 epochs x 5 steps
  // --evaluate of the best weights reproduces that epoch's test accuracy.
  size_t best = 0;
  for (size_t i = 0; i < r.epochs.size(); ++i)
    if (r.epochs[i].test_top1 > r.epochs[best].test_top1) best = i;
  const EvalResult e = evaluate_weights(cfg, dir.file("run/best.safetensors"), log);
  CHECK(e.images == 128);
  CHECK(e.top1 == r.epochs[best].test_top1);
  CHECK(e.top5 >= e.top1);
  CHECK(std::abs(e.loss - r.epochs[best].test_loss) < 1e-9);
}

TEST_CASE("a diverging run stops with a clear message and keeps the last good checkpoint",
          "[trainer]") {
  test::TempDir dir("nan");
  TrainConfig cfg = fashion_slice("linear", "none", dir.file("run"));
  cfg.loss = "L2";
  cfg.lr = 0.01;
  cfg.epochs = 1;
  std::ostringstream log;
  train(cfg, log);
  const std::string last = dir.file("run/last.safetensors");
  const auto good = io::load_safetensors(last);
  // Same run, continued with a rate that blows up (edited config, as a user might).
  std::string json = read_text(dir.file("run/config.json"));
  TrainConfig edited = config_from_json(json, "config.json");
  edited.lr = 1e4;
  edited.epochs = 2;
  std::ofstream(dir.file("run/config.json")) << to_json(edited);
  test::check_error_contains([&] { train(resume_config(dir.file("run")), log, dir.file("run")); },
                             {"diverged", "--lr", "last.safetensors (epoch 1)"});
  require_same_tensors(good, io::load_safetensors(last));
}

TEST_CASE("resume refuses what it cannot continue", "[trainer]") {
  test::TempDir dir("resume_errors");
  std::ostringstream log;
  test::check_error_contains([&] { resume_config(dir.file("none")); }, {"config.json"});
  TrainConfig cfg = fashion_slice("linear", "none", dir.file("run"));
  cfg.epochs = 1;
  train(cfg, log);
  TrainConfig saved = resume_config(dir.file("run"));
  saved.optimizer = "adam";
  test::check_error_contains([&] { train(saved, log, dir.file("run")); },
                             {"training_state.safetensors", "--optimizer"});
  std::ofstream(dir.file("run/config.json")) << "{\"lr\": 0.1, \"colour\": 3}";
  test::check_error_contains([&] { resume_config(dir.file("run")); }, {"unknown field 'colour'"});
}

TEST_CASE("a CIFAR network trains end to end from CIFAR-10 binary files", "[trainer][large]") {
  test::TempDir dir("cifar_e2e");
  write_cifar10(dir.path(), 100, 30);
  TrainConfig cfg = fashion_slice("mobilenetv2", "bn", dir.file("run"));
  cfg.dataset = "cifar10";
  cfg.data_dir = dir.path();
  cfg.batch_size = 20;
  cfg.epochs = 3;
  cfg.train_limit = 0;
  cfg.test_limit = 0;
  std::ostringstream log;
  const TrainResult r = train(cfg, log);
  REQUIRE(r.epochs.size() == 3);
  CHECK(r.epochs.back().train_loss < r.epochs.front().train_loss);
  CHECK(r.step_losses.size() == 15);
  for (const auto& s : r.epochs) CHECK(std::isfinite(s.test_loss));
}

TEST_CASE("an ImageNet network trains on an image folder of real photographs", "[trainer]") {
  // Debian's python3-skimage photographs in the ImageNet layout: two classes, train and val.
  const fs::path photos = "/usr/lib/python3/dist-packages/skimage/data";
  const std::map<std::string, std::vector<std::string>> classes = {
      {"colour", {"astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"}},
      {"grey", {"camera.png", "moon.png", "coins.png", "page.png"}}};
  test::TempDir dir("image_folder_run");
  for (const auto& [cls, files] : classes)
    for (const char* split : {"train", "val"}) {
      fs::create_directories(dir.file(std::string("photos/") + split + "/" + cls));
      for (const auto& f : files) {
        INFO("install python3-skimage: missing " << (photos / f));
        REQUIRE(fs::exists(photos / f));
        fs::create_symlink(photos / f,
                           dir.file(std::string("photos/") + split + "/" + cls + "/" + f));
      }
    }
  TrainConfig cfg = fashion_slice("resnet18", "bn", dir.file("run"));
  cfg.dataset = "imagenet";
  cfg.data_dir = dir.file("photos");
  cfg.image_size = 64;
  cfg.batch_size = 4;
  cfg.lr = 0.01;
  cfg.train_limit = cfg.test_limit = 0;
  std::ostringstream log;
  const TrainResult r = train(cfg, log);
  REQUIRE(r.epochs.size() == 2);
  CHECK(r.step_losses.size() == 4);
  for (double l : r.step_losses) CHECK(std::isfinite(l));
  CHECK(r.epochs.back().test_top5 == 100.0);  // two classes
  auto weights = io::load_safetensors(dir.file("run/last.safetensors"));
  CHECK(weights.at("fc.weight").shape() == Shape{2, 512});  // torchvision's names, 2 classes
}

TEST_CASE("nd-infer gives the network's logits and names what is wrong", "[trainer][infer]") {
  test::TempDir dir("infer");
  Generator gen(3);
  MlpInferCase c = mlp_infer_case("nd", 5, gen, dir);
  auto& [net_cfg, net, x, cfg] = c;
  run_inference(cfg);
  net->eval();
  Tensor want = (*net)(x);
  test::require_close(io::load_safetensors(cfg.output).at("logits"), want, 0, 0, "logits");

  io::save_safetensors(dir.file("bad.safetensors"), {{"images", x}});
  cfg.input = dir.file("bad.safetensors");
  test::check_error_contains([&] { run_inference(cfg); }, {"no tensor 'input'", "images"});
  io::save_safetensors(dir.file("bad.safetensors"), {{"input", x.to(DType::F64)}});
  test::check_error_contains([&] { run_inference(cfg); }, {"'input'", "float64", "float32"});
  io::save_safetensors(dir.file("bad.safetensors"), {{"input", x.reshape({5, 784})}});
  test::check_error_contains([&] { run_inference(cfg); }, {"'input'", "(N, C, H, W)"});
  cfg.input = dir.file("x.safetensors");
  auto state = net->state_dict();
  state.erase("8.weight");
  io::save_safetensors(dir.file("w2.safetensors"), state);
  cfg.weights = dir.file("w2.safetensors");
  test::check_error_contains([&] { run_inference(cfg); }, {"w2.safetensors", "8.weight"});
}

TEST_CASE("nd-infer reads F16 and BF16 inputs and weights and refuses a .pth", "[trainer][infer]") {
  test::TempDir dir("infer_half");
  Generator gen(8);
  MlpInferCase c = mlp_infer_case("bn", 3, gen, dir);
  auto& [net_cfg, net, x, cfg] = c;
  io::save_safetensors(cfg.weights, net->state_dict(), {}, io::FloatStorage::F16);
  io::save_safetensors(cfg.input, {{"input", x}}, {}, io::FloatStorage::BF16);
  const Tensor got = run_inference(cfg);
  // The same network with the rounded weights, on the rounded input.
  auto rounded = build_net(net_cfg, gen);
  rounded->load_state_dict(io::load_safetensors(cfg.weights));
  rounded->eval();
  NoGradGuard no_grad;
  const Tensor want = (*rounded)(io::load_safetensors(cfg.input).at("input"));
  test::require_close(got, want, 0, 0, "logits of half-precision files");
  net->eval();
  CHECK(test::max_abs(ops::sub(got, (*net)(x))) > 0);  // the rounding is there

  std::ofstream(dir.file("model.pth"), std::ios::binary)
      << std::string("PK\x03\x04\0\0\x08\x08", 8);
  cfg.weights = dir.file("model.pth");
  test::check_error_contains([&] { run_inference(cfg); },
                             {"model.pth", "zip archive", "never unpickled", "save_file"});
}

TEST_CASE("nd-infer works on every network, in eval and train mode", "[trainer][infer][nets]") {
  test::TempDir dir("infer_all");
  std::vector<test::NetCase> cases = test::cifar_cases();
  for (const auto& c : test::imagenet_cases()) cases.push_back(c);
  for (const auto& c : cases) {
    INFO(c.arch << " --norm " << c.norm);
    const bool imagenet = c.input == "imagenet";
    NetConfig n = test::net_config(c, imagenet ? 1000 : 10);
    n.height = n.width = imagenet ? 64 : 32;
    Generator gen(5);
    auto net = build_net(n, gen);
    Tensor x = normal_tensor({2, 3, n.height, n.width}, 0, 1, gen);
    InferConfig cfg = infer_files(n, *net, x, dir);
    auto fresh = build_net(n, gen);  // other initial weights: the file must replace them all
    fresh->load_state_dict(io::load_safetensors(cfg.weights));
    for (bool train_mode : {false, true}) {
      INFO("train mode " << train_mode);
      cfg.train_mode = train_mode;
      Tensor got = run_inference(cfg);
      CHECK(got.shape() == Shape{2, n.num_classes});
      fresh->train(train_mode);
      set_dropout_off(*fresh);
      NoGradGuard no_grad;
      test::require_close(got, (*fresh)(x), 0, 0, c.arch + " logits");
    }
  }
}
