// The Fashion-MNIST models of the paper: the one-layer linear model (optionally with
// ChannelDeconv(32) on the flattened pixels) and the MLP 784-128-128-10 with sigmoid: vanilla
// (with bias), BatchNorm1d before each sigmoid (no bias), or ChannelDeconv(32) before every
// Linear (no bias).
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

constexpr int64_t kHidden = 128;
constexpr int64_t kChannelBlock = 32;

// The ChannelDeconv settings of the reference's Fashion-MNIST experiments.
std::shared_ptr<ChannelDeconv> make_channel_deconv(const NetConfig& cfg) {
  DeconvSettings s;
  s.block = kChannelBlock;
  s.eps = 1e-2;
  s.n_iter = 5;
  s.momentum = 0.1;
  s.sampling_stride = 3;
  s.path = cfg.deconv_path;
  return std::make_shared<ChannelDeconv>(kChannelBlock, s, /*centred=*/!cfg.ref_compat);
}

}  // namespace

std::shared_ptr<Module> build_linear(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"none", "nd"});
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Flatten>());
  if (cfg.norm == "nd") net->push_back(make_channel_deconv(cfg));
  net->push_back(std::make_shared<Linear>(cfg.in_channels * cfg.height * cfg.width, cfg.num_classes,
                                          true, gen));
  return net;
}

std::shared_ptr<Module> build_mlp(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"none", "bn", "nd"});
  const bool bn = cfg.norm == "bn", nd = cfg.norm == "nd";
  auto net = std::make_shared<Sequential>();
  net->push_back(std::make_shared<Flatten>());
  int64_t in = cfg.in_channels * cfg.height * cfg.width;
  for (int layer = 0; layer < 2; ++layer) {
    if (nd) net->push_back(make_channel_deconv(cfg));
    net->push_back(std::make_shared<Linear>(in, kHidden, /*bias=*/!bn && !nd, gen));
    if (bn) net->push_back(std::make_shared<BatchNorm1d>(kHidden));
    net->push_back(make_sigmoid());
    in = kHidden;
  }
  if (nd) net->push_back(make_channel_deconv(cfg));
  net->push_back(std::make_shared<Linear>(in, cfg.num_classes, /*bias=*/!nd, gen));
  return net;
}

}  // namespace nd
