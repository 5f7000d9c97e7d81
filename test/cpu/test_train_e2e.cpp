// End to end: a few training steps of the trainer on a small slice of the real Fashion-MNIST;
// the loss falls and two runs with one seed agree bitwise on the CPU.
#include <sstream>

#include "apps/trainer.h"
#include "test/catch.h"
#include "test/data_dir.h"

using namespace nd;

namespace {
TrainConfig slice_config(const std::string& norm) {
  TrainConfig cfg;
  cfg.dataset = "fashion-mnist";
  cfg.data_dir = test::fashion_mnist_dir();
  cfg.weight_decay = 5e-4;
  cfg.arch = "mlp";
  cfg.norm = norm;
  cfg.device = "cpu";
  cfg.epochs = 3;
  cfg.batch_size = 32;
  if (norm == "none") {
    // The plain sigmoid MLP sits on a plateau for its first few hundred SGD steps; Adam leaves
    // it within this slice's 96 steps (and so gets exercised end to end too).
    cfg.optimizer = "adam";
    cfg.lr = 0.003;
  }
  cfg.train_limit = 1024;
  cfg.test_limit = 512;
  cfg.write_files = false;
  cfg.progress = false;
  return cfg;
}
}  // namespace

TEST_CASE("training on a Fashion-MNIST slice lowers the loss and repeats bitwise", "[e2e]") {
  for (const std::string norm : {"none", "bn"}) {
    INFO("norm " << norm);
    std::ostringstream log1, log2;
    const TrainResult a = train(slice_config(norm), log1);
    const TrainResult b = train(slice_config(norm), log2);
    REQUIRE(a.epochs.size() == 3);
    CHECK(a.epochs.back().train_loss < 0.8 * a.epochs.front().train_loss);
    CHECK(a.epochs.back().test_top1 > 50.0);  // chance is 10%
    CHECK(a.step_losses == b.step_losses);    // bitwise: exact double equality
    REQUIRE(a.final_state.size() == b.final_state.size());
    for (const auto& [name, t] : a.final_state) {
      INFO(name);
      CHECK(t.to_vector<double>() == b.final_state.at(name).to_vector<double>());
    }
    // A different seed gives a different run.
    TrainConfig other = slice_config(norm);
    other.seed = 1;
    std::ostringstream log3;
    CHECK(train(other, log3).step_losses != a.step_losses);
  }
}

TEST_CASE("trainer rejects bad settings with the flag's name", "[e2e]") {
  std::ostringstream log;
  auto expect = [&](TrainConfig cfg, const std::string& needle) {
    try {
      train(cfg, log);
      FAIL("expected an error mentioning " << needle);
    } catch (const Error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  TrainConfig cfg = slice_config("none");
  cfg.loss = "hinge";
  expect(cfg, "--loss 'hinge'");
  cfg = slice_config("none");
  cfg.batch_size = 0;
  expect(cfg, "--batch-size");
  cfg = slice_config("none");
  cfg.data_dir = "/nonexistent/fashion";
  expect(cfg, "dataset-fashion-mnist");
  cfg = slice_config("gn");
  expect(cfg, "--norm 'gn'");
}
