// The Fashion-MNIST models of the paper: the one-layer linear model and the MLP 784-128-128-10
// with sigmoid, vanilla (with bias) or with BatchNorm1d before each sigmoid (no bias).
#include "layers/activation.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "nets/registry.h"

namespace nd {

namespace {

constexpr int64_t kHidden = 128;

void require_norm(const NetConfig& cfg, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (cfg.norm == a) return;
    list += list.empty() ? a : std::string(", ") + a;
  }
  if (cfg.norm == "nd")
    ND_FAIL("--arch ", cfg.arch,
            " --norm nd: network deconvolution layers are not built yet "
            "(they arrive with the deconvolution issue); use --norm ",
            list);
  ND_FAIL("--arch ", cfg.arch, " does not support --norm ", cfg.norm, "; choose one of: ", list);
}

std::shared_ptr<Module> build_linear(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"none"});
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Flatten>());
  net->push_back(std::make_shared<Linear>(cfg.in_channels * cfg.height * cfg.width, cfg.num_classes,
                                          true, gen));
  return net;
}

std::shared_ptr<Module> build_mlp(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"none", "bn"});
  const bool bn = cfg.norm == "bn";
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Flatten>());
  int64_t in = cfg.in_channels * cfg.height * cfg.width;
  for (int layer = 0; layer < 2; ++layer) {
    net->push_back(std::make_shared<Linear>(in, kHidden, /*bias=*/!bn, gen));
    if (bn) net->push_back(std::make_shared<BatchNorm1d>(kHidden));
    net->push_back(make_sigmoid());
    in = kHidden;
  }
  net->push_back(std::make_shared<Linear>(in, cfg.num_classes, true, gen));
  return net;
}

}  // namespace

std::vector<std::string> available_archs() {
  return {"linear", "mlp"};
}

std::shared_ptr<Module> build_net(const NetConfig& cfg, Generator& gen) {
  ND_CHECK(cfg.num_classes > 0, "number of classes must be positive");
  if (cfg.arch == "linear") return build_linear(cfg, gen);
  if (cfg.arch == "mlp") return build_mlp(cfg, gen);
  std::string list;
  for (const auto& a : available_archs()) list += (list.empty() ? "" : ", ") + a;
  ND_FAIL("unknown --arch '", cfg.arch, "'; available: ", list);
}

}  // namespace nd
