// Checkpoints that survive what happens to long runs: non-finite test losses in the history,
// exported weights in F16/BF16 beside an exact float32 training state, a run killed between the
// state and the exported weights, before its first checkpoint, or in the middle of a steps.csv
// row, and temporary files left behind. (Killing the real binary: test_crash_safety.cpp.)
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "apps/checkpoint.h"
#include "apps/trainer.h"
#include "engine/optim.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "nets/registry.h"
#include "test/catch.h"
#include "test/run_fixtures.h"
#include "test/temp_dir.h"

using namespace nd;
using test::fashion_slice;
using test::read_text;
using test::require_same_tensors;
namespace fs = std::filesystem;

namespace {

// The "model." tensors of a training state, under their state_dict names.
std::map<std::string, Tensor> model_in_state(const std::string& state_path) {
  std::map<std::string, Tensor> model;
  for (auto& [name, t] : io::load_safetensors(state_path))
    if (name.rfind("model.", 0) == 0) model[name.substr(6)] = t;
  return model;
}

// The dtype strings of a safetensors file's header, by tensor name (read here from the bytes).
std::map<std::string, std::string> stored_dtypes(const std::string& path) {
  const std::string bytes = read_text(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(uint8_t(bytes[size_t(i)])) << (8 * i);
  const auto header = nlohmann::json::parse(bytes.substr(8, length));
  std::map<std::string, std::string> out;
  for (const auto& [name, info] : header.items())
    if (name != "__metadata__") out[name] = info.at("dtype").get<std::string>();
  return out;
}

}  // namespace

TEST_CASE("the epoch line says when the test loss is not finite", "[trainer][checkpoint]") {
  EpochStats s;
  s.epoch = 3;
  s.test_loss = std::numeric_limits<double>::infinity();
  CHECK(epoch_line(s).find("test loss inf (not finite)") != std::string::npos);
  s.test_loss = std::numeric_limits<double>::quiet_NaN();
  CHECK(epoch_line(s).find("test loss nan (not finite)") != std::string::npos);
  s.test_loss = 0.25;
  CHECK(epoch_line(s).find("test loss 0.2500  top1") != std::string::npos);
  CHECK(epoch_line(s).find("not finite") == std::string::npos);
}

TEST_CASE("non-finite losses round-trip through the history and --resume continues",
          "[trainer][checkpoint]") {
  test::TempDir dir("nonfinite");
  TrainConfig cfg = fashion_slice("linear", "none", dir.file("run"));
  cfg.stop_after = 1;
  std::ostringstream log;
  train(cfg, log);
  // The state as a run whose test loss overflowed in eval mode leaves it (JSON has no NaN: the
  // history once stored null there and --resume then failed).
  Generator gen(0);
  NetConfig n;
  n.arch = "linear";
  auto net = build_net(n, gen);
  Sgd opt(net->parameters(), cfg.lr, cfg.momentum, cfg.weight_decay);
  TrainingProgress progress;
  load_training_checkpoint(dir.file("run"), *net, opt, progress);
  REQUIRE(progress.history.size() == 1);
  progress.history[0].test_loss = std::numeric_limits<double>::quiet_NaN();
  progress.history[0].train_loss = std::numeric_limits<double>::infinity();
  progress.history[0].images_per_s = -std::numeric_limits<double>::infinity();
  const double lr = progress.history[0].lr;
  save_training_checkpoint(dir.file("run"), *net, opt, progress);

  TrainingProgress again;
  load_training_checkpoint(dir.file("run"), *net, opt, again);
  REQUIRE(again.history.size() == 1);
  CHECK(std::isnan(again.history[0].test_loss));
  CHECK(again.history[0].train_loss == std::numeric_limits<double>::infinity());
  CHECK(again.history[0].images_per_s == -std::numeric_limits<double>::infinity());
  CHECK(again.history[0].lr == lr);

  TrainConfig saved = resume_config(dir.file("run"));
  saved.stop_after = 0;
  const TrainResult resumed = train(saved, log, dir.file("run"));
  REQUIRE(resumed.epochs.size() == 2);
  CHECK(std::isnan(resumed.epochs[0].test_loss));
  CHECK(std::isfinite(resumed.epochs[1].test_loss));
  CHECK(read_text(dir.file("run/summary.csv")).find(",nan,") != std::string::npos);
}

TEST_CASE("--save-dtype exports F16/BF16 weights; the training state stays exact float32",
          "[trainer][checkpoint]") {
  for (const char* dtype : {"F16", "BF16"}) {
    INFO("--save-dtype " << dtype);
    test::TempDir dir("save_dtype");
    TrainConfig cfg = fashion_slice("mlp", "bn", dir.file("run"));
    cfg.save_dtype = dtype;
    std::ostringstream log;
    const TrainResult r = train(cfg, log);
    for (const char* file : {"last.safetensors", "best.safetensors"}) {
      INFO(file);
      const auto dtypes = stored_dtypes(dir.file(std::string("run/") + file));
      CHECK(dtypes.at("1.weight") == dtype);
      CHECK(dtypes.at("2.running_var") == dtype);
      CHECK(dtypes.at("2.num_batches_tracked") == "I64");  // integers as they are
    }
    for (const auto& [name, t] : stored_dtypes(dir.file("run/training_state.safetensors")))
      if (name.rfind("model.", 0) == 0 || name.rfind("optimizer.", 0) == 0)
        CHECK((t == "F32" || t == "I64"));
    // The state holds the final weights exactly; the export is them rounded to half precision:
    // within half a unit in the last place (2^-11 relative for F16, 2^-8 for BF16).
    require_same_tensors(model_in_state(dir.file("run/training_state.safetensors")), r.final_state);
    const double half_ulp =
        std::string(dtype) == "F16" ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    const auto exported = io::load_safetensors(dir.file("run/last.safetensors"));
    int64_t rounded = 0;
    for (const auto& [name, t] : r.final_state) {
      if (t.dtype() != DType::F32) continue;
      const auto want = t.to_vector<double>(), got = exported.at(name).to_vector<double>();
      for (size_t i = 0; i < want.size(); ++i) {
        INFO(name << "[" << i << "]: " << want[i] << " exported as " << got[i]);
        REQUIRE(std::abs(got[i] - want[i]) <= half_ulp * std::abs(want[i]) + 6e-8);
        rounded += got[i] != want[i];
      }
    }
    CHECK(rounded > 1000);  // it was rounded, not stored as float32
    // --evaluate reads the half-precision weights: close to the epoch's float32 evaluation.
    size_t best = 0;
    for (size_t i = 0; i < r.epochs.size(); ++i)
      if (r.epochs[i].test_top1 > r.epochs[best].test_top1) best = i;
    const EvalResult e = evaluate_weights(cfg, dir.file("run/best.safetensors"), log);
    CHECK(e.images == 128);
    CHECK(std::abs(e.loss - r.epochs[best].test_loss) < 0.02 * r.epochs[best].test_loss);
    CHECK(std::abs(e.top1 - r.epochs[best].test_top1) <= 3.0);
  }
}

TEST_CASE("a run killed between the state and the exported weights resumes and re-exports",
          "[trainer][checkpoint]") {
  test::TempDir dir("kill_between");
  TrainConfig cfg = fashion_slice("mlp", "bn", dir.file("run"));
  cfg.epochs = 3;
  cfg.stop_after = 1;
  std::ostringstream log;
  train(cfg, log);
  fs::copy_file(dir.file("run/last.safetensors"), dir.file("epoch1.safetensors"));
  TrainConfig saved = resume_config(dir.file("run"));
  saved.stop_after = 2;
  train(saved, log, dir.file("run"));
  // As if killed after training_state.safetensors of epoch 2, before last.safetensors.
  fs::copy_file(dir.file("epoch1.safetensors"), dir.file("run/last.safetensors"),
                fs::copy_options::overwrite_existing);
  REQUIRE(weights_epoch(dir.file("run/last.safetensors")) == 1);
  std::ostringstream resumed_log;
  train(saved, resumed_log, dir.file("run"));  // nothing left to train up to epoch 2
  CHECK(resumed_log.str().find("resuming after epoch 2") != std::string::npos);
  CHECK(weights_epoch(dir.file("run/last.safetensors")) == 2);
  require_same_tensors(io::load_safetensors(dir.file("run/last.safetensors")),
                       model_in_state(dir.file("run/training_state.safetensors")));
}

TEST_CASE("resume after a kill before the first checkpoint starts over; torn rows go",
          "[trainer][checkpoint]") {
  test::TempDir dir("early_kill");
  std::ostringstream log;
  TrainConfig cfg = fashion_slice("mlp", "nd", dir.file("straight"));
  const TrainResult straight = train(cfg, log);

  SECTION("only config.json was written") {
    cfg.output = dir.file("run");
    fs::create_directories(cfg.output);
    io::write_file_atomic(cfg.output + "/config.json", to_json(cfg));
    std::ofstream(cfg.output + "/last.safetensors.tmp.4242") << "half a file";
    std::ostringstream resumed_log;
    const TrainResult r = train(resume_config(cfg.output), resumed_log, cfg.output);
    CHECK(resumed_log.str().find("no checkpoint yet: starting from epoch 0") != std::string::npos);
    REQUIRE(r.epochs.size() == 2);
    require_same_tensors(r.final_state, straight.final_state);
    CHECK(!fs::exists(cfg.output + "/last.safetensors.tmp.4242"));
  }
  SECTION("killed in epoch 2 while appending to steps.csv") {
    cfg.output = dir.file("run");
    cfg.stop_after = 1;
    train(cfg, log);
    // Rows of steps after the checkpoint, the last one cut short (its step number too).
    std::ofstream(cfg.output + "/steps.csv", std::ios::app) << "6,2,0.05,2.25\n7,2,0.0";
    std::ofstream(cfg.output + "/steps.csv", std::ios::app) << "\n1";
    TrainConfig saved = resume_config(cfg.output);
    saved.stop_after = 0;
    const TrainResult r = train(saved, log, cfg.output);
    require_same_tensors(r.final_state, straight.final_state);
    CHECK(read_text(cfg.output + "/steps.csv") == read_text(dir.file("straight/steps.csv")));
  }
}

TEST_CASE("first_difference names the first differing tensor and its largest difference",
          "[trainer][checkpoint]") {
  std::map<std::string, Tensor> a = {{"a", Tensor::from_vector<float>({1, 2, 3}, {3})},
                                     {"b", Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2})}};
  std::map<std::string, Tensor> b = {{"a", Tensor::from_vector<float>({1, 2, 3}, {3})},
                                     {"b", Tensor::from_vector<float>({1, 2.5f, 3, 7}, {2, 2})}};
  CHECK(test::first_difference(a, a).empty());
  const std::string d = test::first_difference(a, b);
  CHECK(d.find("tensor 'b' (2, 2): 2 of 4 elements differ, the largest by 3 at (1, 1)") !=
        std::string::npos);
  b.erase("a");
  CHECK(test::first_difference(a, b) == "unexpected tensor 'a'");
}

TEST_CASE("config.json fields keep their JSON types: nothing is converted silently",
          "[trainer][checkpoint]") {
  auto read = [](const std::string& json) { return config_from_json(json, "config.json"); };
  struct Bad {
    const char* json;
    const char* says;
  };
  for (const Bad& b : {Bad{"{\"epochs\": 2.5}", "field 'epochs' is 2.5, expected a whole number"},
                       Bad{"{\"seed\": 18446744073709551616}", "expected a whole number"},
                       Bad{"{\"seed\": -1}", "expected a whole number >= 0"},
                       Bad{"{\"workers\": 4294967296}", "expected a smaller whole number"},
                       Bad{"{\"lr\": \"0.1\"}", "field 'lr' is \"0.1\", expected a finite number"},
                       Bad{"{\"freeze\": 1}", "expected true or false"},
                       Bad{"{\"arch\": null}", "expected a string"}}) {
    INFO(b.json);
    test::check_error_contains([&] { read(b.json); }, {"config.json", b.says});
  }
  CHECK(read("{\"seed\": 18446744073709551615}").seed == 18446744073709551615ull);
  CHECK(read("{\"lr\": 1}").lr == 1.0);  // an integer is a fine number
  CHECK(read("{\"epochs\": 7, \"freeze\": true}").epochs == 7);
}
