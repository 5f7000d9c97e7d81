// Modules: reference naming, parameter counts, state dicts, train/eval, optimizers, schedules.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/optim.h"
#include "layers/activation.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "nets/registry.h"
#include "test/catch.h"

using namespace nd;

namespace {
std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& v) {
  std::vector<std::string> out;
  for (auto& [n, t] : v) out.push_back(n);
  return out;
}
}  // namespace

TEST_CASE("MLP names and counts follow torch.nn.Sequential", "[layers]") {
  Generator gen(0);
  NetConfig cfg;
  cfg.arch = "mlp";
  auto vanilla = build_net(cfg, gen);
  CHECK(names_of(vanilla->named_parameters()) ==
        std::vector<std::string>{"1.weight", "1.bias", "3.weight", "3.bias", "5.weight", "5.bias"});
  CHECK(vanilla->num_parameters() == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10);
  cfg.norm = "bn";
  auto bn = build_net(cfg, gen);
  CHECK(names_of(bn->named_parameters()) ==
        std::vector<std::string>{"1.weight", "2.weight", "2.bias", "4.weight", "5.weight", "5.bias",
                                 "7.weight", "7.bias"});
  CHECK(names_of(bn->named_buffers()) ==
        std::vector<std::string>{"2.running_mean", "2.running_var", "2.num_batches_tracked",
                                 "5.running_mean", "5.running_var", "5.num_batches_tracked"});
  cfg.norm = "nd";
  auto nd = build_net(cfg, gen);
  CHECK(names_of(nd->named_parameters()) ==
        std::vector<std::string>{"2.weight", "5.weight", "8.weight"});
  CHECK(names_of(nd->named_buffers()) ==
        std::vector<std::string>{"1.running_mean", "1.running_deconv", "4.running_mean",
                                 "4.running_deconv", "7.running_mean", "7.running_deconv"});
  CHECK(nd->num_parameters() == 784 * 128 + 128 * 128 + 128 * 10);
  cfg.arch = "linear";
  cfg.norm = "none";
  CHECK(build_net(cfg, gen)->num_parameters() == 7850);
  cfg.norm = "bn";
  CHECK_THROWS_AS(build_net(cfg, gen), Error);
  cfg.arch = "resnet999";
  CHECK_THROWS_AS(build_net(cfg, gen), Error);
}

TEST_CASE("Linear and Conv2d initialise like PyTorch and check shapes", "[layers]") {
  Generator gen(3);
  Linear lin(100, 7, true, gen);
  const double bound = 1.0 / std::sqrt(100.0);
  for (float w : lin.weight().to_vector<float>()) CHECK(std::abs(w) <= bound);
  CHECK_THROWS_AS(lin(Tensor::zeros({2, 99})), Error);
  ops::Conv2dParams p;
  p.padding = 1;
  Conv2d conv(3, 8, 3, p, false, gen);
  CHECK(conv.num_parameters() == 8 * 3 * 9);
  CHECK(conv(Tensor::zeros({2, 3, 5, 5})).shape() == Shape{2, 8, 5, 5});
  CHECK_THROWS_AS(conv(Tensor::zeros({2, 4, 5, 5})), Error);
}

TEST_CASE("BatchNorm1d tracks running statistics and switches in eval", "[layers]") {
  BatchNorm1d bn(2);
  Tensor x = Tensor::from_vector<float>({1, 10, 3, 20, 5, 30}, {3, 2});
  Tensor y = bn(x);
  const auto state = bn.state_dict();
  // batch mean (3, 20); unbiased variance (4, 100); momentum 0.1 from (0, 1).
  const auto rm = state.at("running_mean").to_vector<float>();
  const auto rv = state.at("running_var").to_vector<float>();
  CHECK(std::abs(rm[0] - 0.3f) < 1e-6);
  CHECK(std::abs(rm[1] - 2.0f) < 1e-6);
  CHECK(std::abs(rv[0] - (0.9f + 0.4f)) < 1e-5);
  CHECK(std::abs(rv[1] - (0.9f + 10.0f)) < 1e-5);
  CHECK(state.at("num_batches_tracked").item() == 1);
  // Training output is standardised per channel.
  const auto yv = y.to_vector<float>();
  CHECK(std::abs(yv[0] + std::sqrt(1.5f)) < 1e-3);  // (1-3)/sqrt(8/3 + eps)
  bn.eval();
  Tensor ye = bn(x);
  CHECK(std::abs(ye.to_vector<float>()[0] - (1 - 0.3f) / std::sqrt(1.3f + 1e-5f)) < 1e-5);
  CHECK(bn.state_dict().at("num_batches_tracked").item() == 1);
}

TEST_CASE("state dicts round-trip and reject mismatches by name", "[layers]") {
  Generator g1(1), g2(2);
  NetConfig cfg;
  cfg.norm = "bn";
  auto a = build_net(cfg, g1), b = build_net(cfg, g2);
  b->load_state_dict(a->state_dict());
  for (auto& [name, t] : a->state_dict())
    CHECK(t.to_vector<double>() == b->state_dict().at(name).to_vector<double>());
  // A model whose values all differ from a's: a load that fails must leave every one of them.
  Generator g3(3);
  auto c = build_net(cfg, g3);
  std::map<std::string, std::vector<double>> before;  // values, not handles to c's storage
  for (auto& [name, t] : c->state_dict()) before[name] = t.to_vector<double>();
  auto unchanged = [&] {
    for (auto& [name, t] : c->state_dict()) CHECK(t.to_vector<double>() == before.at(name));
  };
  auto bad = a->state_dict();
  bad["1.weight"] = Tensor::zeros({3, 3});
  try {
    c->load_state_dict(bad);
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("1.weight is (3, 3)") != std::string::npos);
  }
  unchanged();  // the entries that fit did not go in either
  auto extra = a->state_dict();
  extra["9.weight"] = Tensor::zeros({1});
  CHECK_THROWS_AS(c->load_state_dict(extra), Error);
  unchanged();
  // Skipped names may be missing, foreign or mismatched, and keep their values.
  extra.erase("1.weight");
  c->load_state_dict(extra,
                     [](const std::string& n) { return n == "1.weight" || n == "9.weight"; });
  CHECK(c->state_dict().at("1.weight").to_vector<double>() == before.at("1.weight"));
  for (auto& [name, t] : a->state_dict())
    if (name != "1.weight")
      CHECK(t.to_vector<double>() == c->state_dict().at(name).to_vector<double>());
}

TEST_CASE("SGD and Adam follow PyTorch's update rules", "[optim]") {
  // SGD: p1 = p0 - lr (g + wd p0); then buf = m buf + g'.
  Tensor p = Tensor::from_vector<double>({1.0, -2.0}, {2});
  p.set_requires_grad(true);
  Sgd sgd({p}, 0.1, 0.9, 0.01);
  p.set_grad(Tensor::from_vector<double>({0.5, 0.25}, {2}));
  sgd.step();
  const double b0 = 0.5 + 0.01 * 1.0;
  CHECK(std::abs(p.to_vector<double>()[0] - (1.0 - 0.1 * b0)) < 1e-15);
  const double p1 = 1.0 - 0.1 * b0;
  sgd.step();  // same gradient again
  const double b1 = 0.9 * b0 + (0.5 + 0.01 * p1);
  CHECK(std::abs(p.to_vector<double>()[0] - (p1 - 0.1 * b1)) < 1e-15);

  Tensor q = Tensor::from_vector<double>({1.0}, {1});
  q.set_requires_grad(true);
  Adam adam({q}, 0.01, 0.0);
  q.set_grad(Tensor::from_vector<double>({2.0}, {1}));
  adam.step();
  // First Adam step moves by lr * sign(g) (bias-corrected m/sqrt(v) = g/|g|).
  CHECK(std::abs(q.to_vector<double>()[0] - (1.0 - 0.01 * 2.0 / (2.0 + 1e-8))) < 1e-12);
  // A parameter without gradient is skipped.
  Tensor untouched = Tensor::ones({1}, DType::F64);
  untouched.set_requires_grad(true);
  Sgd skip({untouched}, 0.1, 0.9, 0.1);
  skip.step();
  CHECK(untouched.item() == 1.0);
}

TEST_CASE("learning-rate schedules", "[optim]") {
  CHECK(cosine_lr(0.1, 0, 100) == 0.1);
  CHECK(std::abs(cosine_lr(0.1, 50, 100) - 0.05) < 1e-15);
  CHECK(std::abs(cosine_lr(0.1, 100, 100)) < 1e-15);
  CHECK(multistep_lr(0.1, 3, {8, 16}, 0.1) == 0.1);
  CHECK(std::abs(multistep_lr(0.1, 8, {8, 16}, 0.1) - 0.01) < 1e-15);
  CHECK(std::abs(multistep_lr(0.1, 19, {8, 16}, 0.1) - 0.001) < 1e-15);
}
