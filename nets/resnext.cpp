// ResNeXt-29 32x4d (kuangliu's CIFAR ResNeXt): a 1x1 stem and three stages of three bottleneck
// blocks (1x1 conv, grouped 3x3 conv with 32 groups, 1x1 conv to twice the group width) with
// residual shortcuts; the bottleneck width doubles each stage (4, 8, 16 channels per group).
// Reference quirks: with --norm nd the grouped 3x3 convs use 3 Newton-Schulz steps on per-group
// matrices, the 1x1 stem freezes with 10 steps, and a projection shortcut stays an
// nn.Sequential holding the lone FastDeconv (`shortcut.0`).
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

constexpr int64_t kCardinality = 32;
constexpr int64_t kStemChannels = 64;
constexpr int64_t kBlocksPerStage = 3;
constexpr int64_t kExpansion = 2;

class ResNeXtBlock : public Module {
 public:
  ResNeXtBlock(LayerFactory& f, int64_t in, int64_t group_width, int64_t stride) {
    const int64_t out = kExpansion * group_width;
    conv1_ = register_module("conv1", f.conv(conv_spec(in, group_width, 1)));
    bn1_ = optional_bn(f, "bn1", group_width);
    ConvSpec grouped = conv_spec(group_width, group_width, 3, stride, kCardinality);
    grouped.deconv.n_iter = 3;
    conv2_ = register_module("conv2", f.conv(grouped));
    bn2_ = optional_bn(f, "bn2", group_width);
    conv3_ = register_module("conv3", f.conv(conv_spec(group_width, out, 1)));
    bn3_ = optional_bn(f, "bn3", out);
    if (stride != 1 || in != out) {
      auto shortcut = std::make_shared<Sequential>();
      shortcut->push_back(f.conv(conv_spec(in, out, 1, stride)));
      if (auto bn = f.bn2d(out)) shortcut->push_back(bn);
      shortcut_ = register_module("shortcut", shortcut);
    }
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, (*conv1_)(x)));
    out = ops::relu(apply_optional(bn2_, (*conv2_)(out)));
    out = apply_optional(bn3_, (*conv3_)(out));
    return ops::relu(ops::add(out, shortcut_ ? (*shortcut_)(x) : x));
  }
  std::string type_name() const override { return "ResNeXtBlock"; }

 private:
  std::shared_ptr<Module> optional_bn(LayerFactory& f, const std::string& name, int64_t c) {
    auto bn = f.bn2d(c);
    if (bn) register_module(name, bn);
    return bn;
  }

  std::shared_ptr<Module> conv1_, bn1_, conv2_, bn2_, conv3_, bn3_, shortcut_;
};

class ResNeXt : public Module {
 public:
  ResNeXt(LayerFactory& f, int64_t classes, int64_t bottleneck_width) {
    ConvSpec stem = conv_spec(3, kStemChannels, 1);
    stem.deconv = frozen_stem(10);
    conv1_ = register_module("conv1", f.conv(stem));
    bn1_ = f.bn2d(kStemChannels);
    if (bn1_) register_module("bn1", bn1_);
    int64_t planes = kStemChannels;
    for (int s = 0; s < 3; ++s) {
      const int64_t group_width = kCardinality * bottleneck_width;
      auto layer = std::make_shared<Sequential>();
      for (int64_t i = 0; i < kBlocksPerStage; ++i) {
        layer->push_back(
            std::make_shared<ResNeXtBlock>(f, planes, group_width, i == 0 && s > 0 ? 2 : 1));
        planes = kExpansion * group_width;
      }
      layers_.push_back(register_module("layer" + std::to_string(s + 1), layer));
      bottleneck_width *= 2;
    }
    linear_ = register_module("linear", f.classifier(planes, classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, (*conv1_)(x)));
    for (auto& layer : layers_) out = (*layer)(out);
    return (*linear_)(ops::avg_pool2d(out, 8).flatten(1));
  }
  std::string type_name() const override { return "ResNeXt"; }

 private:
  std::shared_ptr<Module> conv1_, bn1_, linear_;
  std::vector<std::shared_ptr<Module>> layers_;
};

}  // namespace

std::shared_ptr<Module> build_resnext29_32x4d(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<ResNeXt>(f, cfg.num_classes, /*bottleneck_width=*/4);
}

}  // namespace nd
