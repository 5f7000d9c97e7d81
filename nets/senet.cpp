// kuangliu's SENet-18: a ReLU'd 3x3 stem, stages of two pre-activation blocks with
// squeeze-and-excitation at 64-128-256-512 channels, 4x4 average pool, `linear`.
// Reference quirks: the SE fully-connected layers fc1/fc2 are 1x1 convolutions with bias on the
// pooled 1x1 map, so with --norm nd they are FastDeconv too; the nd shortcut is a bare FastDeconv
// (`shortcut`), the bn one a Sequential (`shortcut.0`); the stem freezes with 15 Newton-Schulz
// steps. (PreActResNet18 in resnet.cpp has the same block without SE.)
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

constexpr int64_t kStageWidths[4] = {64, 128, 256, 512};
constexpr int64_t kBlocksPerStage = 2;
constexpr int64_t kSqueezeRatio = 16;

// relu(bn1 x) feeds conv1 and the projection shortcut; h = conv2(relu(bn2(conv1))) is scaled per
// channel by sigmoid(fc2(relu(fc1(mean of h)))), then the shortcut (x itself when the shape stays)
// is added.
class SePreActBlock : public Module {
 public:
  SePreActBlock(LayerFactory& f, int64_t in, int64_t planes, int64_t stride) {
    bn1_ = f.bn2d(in);
    if (bn1_) register_module("bn1", bn1_);
    conv1_ = register_module("conv1", f.conv(conv_spec(in, planes, 3, stride)));
    bn2_ = f.bn2d(planes);
    if (bn2_) register_module("bn2", bn2_);
    conv2_ = register_module("conv2", f.conv(conv_spec(planes, planes, 3)));
    if (stride != 1 || in != planes) {
      auto conv = f.conv(conv_spec(in, planes, 1, stride));
      if (f.deconv()) {
        shortcut_ = register_module("shortcut", conv);
      } else {
        auto seq = std::make_shared<Sequential>();
        seq->push_back(conv);
        shortcut_ = register_module("shortcut", seq);
      }
    }
    const int64_t squeezed = planes / kSqueezeRatio;
    fc1_ = register_module("fc1", f.conv(with_bias(conv_spec(planes, squeezed, 1))));
    fc2_ = register_module("fc2", f.conv(with_bias(conv_spec(squeezed, planes, 1))));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, x));
    Tensor shortcut = shortcut_ ? (*shortcut_)(out) : x;
    out = (*conv1_)(out);
    out = (*conv2_)(ops::relu(apply_optional(bn2_, out)));
    // The reference squeezes with avg_pool2d(out, out.size(2)): global on its square maps.
    Tensor w = ops::avg_pool2d(out, out.size(2));
    w = ops::sigmoid((*fc2_)(ops::relu((*fc1_)(w))));
    return out * w + shortcut;
  }
  std::string type_name() const override { return "SEPreActBlock"; }

 private:
  std::shared_ptr<Module> bn1_, conv1_, bn2_, conv2_, shortcut_, fc1_, fc2_;
};

// conv1, bn1 (bn only), layer1..4, linear; stem relu([bn1](conv1 x)).
class SeNet : public Module {
 public:
  explicit SeNet(LayerFactory& f) {
    ConvSpec stem = conv_spec(f.config().in_channels, kStageWidths[0], 3);
    stem.deconv = frozen_stem(15);
    conv1_ = register_module("conv1", f.conv(stem));
    bn1_ = f.bn2d(kStageWidths[0]);
    if (bn1_) register_module("bn1", bn1_);
    int64_t in = kStageWidths[0];
    for (int stage = 0; stage < 4; ++stage) {
      auto seq = std::make_shared<Sequential>();
      for (int64_t i = 0; i < kBlocksPerStage; ++i) {
        const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
        seq->push_back(std::make_shared<SePreActBlock>(f, in, kStageWidths[stage], stride));
        in = kStageWidths[stage];
      }
      stages_.push_back(register_module("layer" + std::to_string(stage + 1), seq));
    }
    linear_ = register_module("linear", f.classifier(in, f.config().num_classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, (*conv1_)(x)));
    for (auto& stage : stages_) out = (*stage)(out);
    return (*linear_)(ops::avg_pool2d(out, 4).flatten(1));
  }
  std::string type_name() const override { return "SENet"; }

 private:
  std::shared_ptr<Module> conv1_, bn1_, linear_;
  std::vector<std::shared_ptr<Sequential>> stages_;
};

}  // namespace

std::shared_ptr<Module> build_senet18(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<SeNet>(f);
}

}  // namespace nd
