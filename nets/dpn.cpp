// DPN-92 (kuangliu's CIFAR Dual Path Network): a 3x3 stem and four stages of dual path blocks
// (1x1 conv, grouped 3x3 conv with 32 groups, 1x1 conv to out + dense_depth channels); the first
// out channels are added to the shortcut (residual path), the rest concatenated to it (dense path).
// Reference quirks: the first block of a stage registers its projection shortcut before conv1; with
// --norm nd that shortcut is a bare FastDeconv (`shortcut`), with bn an nn.Sequential(conv, BN)
// (`shortcut.0`, `shortcut.1`); the stem freezes with 10 Newton-Schulz steps; the grouped 3x3
// convs whiten each group with its own matrix.
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

constexpr int64_t kGroups = 32;
constexpr int64_t kStemChannels = 64;

struct StageConfig {
  int64_t width, out, blocks, dense_depth, stride;
};
constexpr StageConfig kStages[4] = {
    {96, 256, 3, 16, 1}, {192, 512, 4, 32, 2}, {384, 1024, 20, 24, 2}, {768, 2048, 3, 128, 2}};

class DualPathBlock : public Module {
 public:
  DualPathBlock(LayerFactory& f, int64_t in, const StageConfig& stage, int64_t stride, bool first)
      : residual_(stage.out) {
    const int64_t out = stage.out + stage.dense_depth;
    if (first) {
      auto conv = f.conv(conv_spec(in, out, 1, stride));
      auto bn = f.bn2d(out);
      if (bn) {
        auto seq = std::make_shared<Sequential>();
        seq->push_back(conv);
        seq->push_back(bn);
        shortcut_ = seq;
      } else {
        shortcut_ = conv;
      }
      register_module("shortcut", shortcut_);
    }
    conv1_ = register_module("conv1", f.conv(conv_spec(in, stage.width, 1)));
    bn1_ = optional_bn(f, "bn1", stage.width);
    conv2_ =
        register_module("conv2", f.conv(conv_spec(stage.width, stage.width, 3, stride, kGroups)));
    bn2_ = optional_bn(f, "bn2", stage.width);
    conv3_ = register_module("conv3", f.conv(conv_spec(stage.width, out, 1)));
    bn3_ = optional_bn(f, "bn3", out);
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, (*conv1_)(x)));
    out = ops::relu(apply_optional(bn2_, (*conv2_)(out)));
    out = apply_optional(bn3_, (*conv3_)(out));
    const Tensor s = shortcut_ ? (*shortcut_)(x) : x;
    const int64_t d = residual_;
    return ops::relu(ops::cat({ops::add(s.slice(1, 0, d), out.slice(1, 0, d)),
                               s.slice(1, d, s.size(1)), out.slice(1, d, out.size(1))},
                              1));
  }
  std::string type_name() const override { return "DualPathBlock"; }

 private:
  std::shared_ptr<Module> optional_bn(LayerFactory& f, const std::string& name, int64_t c) {
    auto bn = f.bn2d(c);
    if (bn) register_module(name, bn);
    return bn;
  }

  int64_t residual_;
  std::shared_ptr<Module> shortcut_, conv1_, bn1_, conv2_, bn2_, conv3_, bn3_;
};

class Dpn : public Module {
 public:
  Dpn(LayerFactory& f, int64_t classes) {
    ConvSpec stem = conv_spec(3, kStemChannels, 3);
    stem.deconv = frozen_stem(10);
    conv1_ = register_module("conv1", f.conv(stem));
    bn1_ = f.bn2d(kStemChannels);
    if (bn1_) register_module("bn1", bn1_);
    int64_t planes = kStemChannels;
    for (int s = 0; s < 4; ++s) {
      const StageConfig& stage = kStages[s];
      auto layer = std::make_shared<Sequential>();
      for (int64_t i = 0; i < stage.blocks; ++i) {
        layer->push_back(
            std::make_shared<DualPathBlock>(f, planes, stage, i == 0 ? stage.stride : 1, i == 0));
        planes = stage.out + (i + 2) * stage.dense_depth;
      }
      layers_.push_back(register_module("layer" + std::to_string(s + 1), layer));
    }
    linear_ = register_module("linear", f.classifier(planes, classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, (*conv1_)(x)));
    for (auto& layer : layers_) out = (*layer)(out);
    return (*linear_)(ops::avg_pool2d(out, 4).flatten(1));
  }
  std::string type_name() const override { return "DPN"; }

 private:
  std::shared_ptr<Module> conv1_, bn1_, linear_;
  std::vector<std::shared_ptr<Module>> layers_;
};

}  // namespace

std::shared_ptr<Module> build_dpn92(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<Dpn>(f, cfg.num_classes);
}

}  // namespace nd
