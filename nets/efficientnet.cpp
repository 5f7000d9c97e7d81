// EfficientNet-B0 for CIFAR (kuangliu's early version, as the network-deconvolution reference
// builds it): a stride-1 3x3 stem of 32 channels, 16 MBConv blocks (1x1 expand, 3x3 depthwise,
// 1x1 project, squeeze-and-excitation by two 1x1 convs fc1/fc2 with bias) and the classifier on
// the flattened 1x1x320 map (no pooling: 32x32 inputs are halved five times). Reference quirks
// kept:
// - ReLU everywhere (no swish), no dropout and no drop connect;
// - `shortcut` is assigned first in a block, so it leads the block's state_dict;
// - a stride-2 block adds its own output as the "shortcut": out * se + out;
// - the SE squeeze pools with a window of the map's height.
// The reference deconvolves only the stem and keeps batch norm and plain convs in the blocks (a
// bug, network-deconvolution.md section 6), which --ref-compat reproduces. Our default deconvolves
// every conv: the depthwise ones with 1 Newton-Schulz step (as MobileNetV2's), the others with the
// run's settings.
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

struct Stage {
  int64_t expansion, out, blocks, stride;
};
constexpr Stage kStages[] = {{1, 16, 1, 2},  {6, 24, 2, 1},  {6, 40, 2, 2}, {6, 80, 3, 2},
                             {6, 112, 3, 1}, {6, 192, 4, 2}, {6, 320, 1, 2}};
constexpr int64_t kStemWidth = 32, kSeReduction = 16;

// Builds a block's convs and batch norms: deconvolved (no batch norm), or Conv2d + BatchNorm2d
// for --norm bn and for the reference's mixed --norm nd --ref-compat form.
class BlockLayers {
 public:
  BlockLayers(LayerFactory& f, bool batch_norm) : f_(f), batch_norm_(batch_norm) {}
  std::shared_ptr<Module> conv(const ConvSpec& spec) {
    return batch_norm_ ? f_.plain_conv(spec) : f_.conv(spec);
  }
  std::shared_ptr<Module> bn(int64_t channels) {
    return batch_norm_ ? std::make_shared<BatchNorm2d>(channels) : nullptr;
  }

 private:
  LayerFactory& f_;
  bool batch_norm_;
};

class MBConv : public Module {
 public:
  MBConv(BlockLayers& l, int64_t in, int64_t out, int64_t expansion, int64_t stride)
      : stride_(stride) {
    const int64_t planes = expansion * in, squeezed = out / kSeReduction;
    if (stride == 1 && in != out) {
      auto shortcut = std::make_shared<Sequential>();
      shortcut->push_back(l.conv({in, out, 1}));
      if (auto bn = l.bn(out)) shortcut->push_back(bn);
      shortcut_ = register_module("shortcut", shortcut);
    }
    expand_ = register_module("conv1", l.conv({in, planes, 1}));
    expand_bn_ = register_optional("bn1", l.bn(planes));
    depthwise_ = register_module(
        "conv2", l.conv({planes, planes, 3, stride, 1, /*groups=*/planes, false, {1, {}, {}}}));
    depthwise_bn_ = register_optional("bn2", l.bn(planes));
    project_ = register_module("conv3", l.conv({planes, out, 1}));
    project_bn_ = register_optional("bn3", l.bn(out));
    se_reduce_ = register_module("fc1", l.conv({out, squeezed, 1, 1, 0, 1, /*bias=*/true}));
    se_expand_ = register_module("fc2", l.conv({squeezed, out, 1, 1, 0, 1, /*bias=*/true}));
  }

  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(expand_bn_, (*expand_)(x)));
    out = ops::relu(apply_optional(depthwise_bn_, (*depthwise_)(out)));
    out = apply_optional(project_bn_, (*project_)(out));
    const Tensor shortcut = stride_ != 1 ? out : shortcut_ ? (*shortcut_)(x) : x;
    Tensor w = ops::avg_pool2d(out, out.size(2));
    w = ops::sigmoid((*se_expand_)(ops::relu((*se_reduce_)(w))));
    return ops::add(ops::mul(out, w), shortcut);
  }
  std::string type_name() const override { return "MBConv"; }

 private:
  int64_t stride_;
  std::shared_ptr<Module> shortcut_, expand_, expand_bn_, depthwise_, depthwise_bn_, project_,
      project_bn_, se_reduce_, se_expand_;
};

class EfficientNet : public Module {
 public:
  EfficientNet(LayerFactory& f, const NetConfig& cfg) {
    stem_ = register_module(
        "conv1", f.conv({cfg.in_channels, kStemWidth, 3, 1, 1, 1, false, frozen_stem(10)}));
    stem_bn_ = register_optional("bn1", f.bn2d(kStemWidth));
    BlockLayers block_layers(f, /*batch_norm=*/!f.deconv() || cfg.ref_compat);
    auto layers = std::make_shared<Sequential>();
    int64_t in = kStemWidth;
    for (const Stage& s : kStages)
      for (int64_t b = 0; b < s.blocks; ++b) {
        layers->push_back(
            std::make_shared<MBConv>(block_layers, in, s.out, s.expansion, b == 0 ? s.stride : 1));
        in = s.out;
      }
    layers_ = register_module("layers", layers);
    linear_ = register_module("linear", f.classifier(in, cfg.num_classes));
  }

  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(stem_bn_, (*stem_)(x)));
    out = (*layers_)(out);
    return (*linear_)(out.flatten(1));
  }
  std::string type_name() const override { return "EfficientNet"; }

 private:
  std::shared_ptr<Module> stem_, stem_bn_, layers_, linear_;
};

}  // namespace

std::shared_ptr<Module> build_efficientnetb0(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<EfficientNet>(f, cfg);
}

}  // namespace nd
