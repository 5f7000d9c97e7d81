// MobileNetV2 for CIFAR (kuangliu's, as the network-deconvolution reference builds it): a stride-1
// 3x3 stem, 17 inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 project), a 1x1 conv to
// 1280 channels, 4x4 average pooling and the classifier. Reference quirks kept:
// - conv2/bn2 (the head) are assigned before `layers`, so they come first in the state_dict;
// - a block adds its shortcut only at stride 1 (identity, or a 1x1 conv when widths differ);
// - deconvolved, the stem takes 10 Newton-Schulz steps and freezes; the depthwise conv (9x9
//   matrices per channel) and the projection take 1 step, and the projection whitens blocks of
//   the block's input width whatever --block says.
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

struct Stage {
  int64_t expansion, out, blocks, stride;
};
// The CIFAR settings: the second stage and the stem keep stride 1.
constexpr Stage kStages[] = {{1, 16, 1, 1}, {6, 24, 2, 1},  {6, 32, 3, 2}, {6, 64, 4, 2},
                             {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
constexpr int64_t kStemWidth = 32, kHeadIn = 320, kHeadWidth = 1280;
constexpr int64_t kPool = 4;  // 32x32 inputs end as 4x4 maps

class InvertedResidual : public Module {
 public:
  InvertedResidual(LayerFactory& f, int64_t in, int64_t out, int64_t expansion, int64_t stride)
      : stride_(stride) {
    const int64_t planes = expansion * in;
    expand_ = register_module("conv1", f.conv({in, planes, 1}));
    expand_bn_ = register_optional("bn1", f.bn2d(planes));
    depthwise_ = register_module(
        "conv2", f.conv({planes, planes, 3, stride, 1, /*groups=*/planes, false, {1, {}, {}}}));
    depthwise_bn_ = register_optional("bn2", f.bn2d(planes));
    project_ =
        register_module("conv3", f.conv({planes, out, 1, 1, 0, 1, false, {1, {}, /*block=*/in}}));
    project_bn_ = register_optional("bn3", f.bn2d(out));
    if (stride == 1 && in != out) {
      auto shortcut = std::make_shared<Sequential>();
      shortcut->push_back(f.conv({in, out, 1}));
      if (auto bn = f.bn2d(out)) shortcut->push_back(bn);
      shortcut_ = register_module("shortcut", shortcut);
    }
  }

  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(expand_bn_, (*expand_)(x)));
    out = ops::relu(apply_optional(depthwise_bn_, (*depthwise_)(out)));
    out = apply_optional(project_bn_, (*project_)(out));
    if (stride_ != 1) return out;
    return ops::add(out, shortcut_ ? (*shortcut_)(x) : x);
  }
  std::string type_name() const override { return "InvertedResidual"; }

 private:
  int64_t stride_;
  std::shared_ptr<Module> expand_, expand_bn_, depthwise_, depthwise_bn_, project_, project_bn_;
  std::shared_ptr<Module> shortcut_;
};

class MobileNetV2 : public Module {
 public:
  MobileNetV2(LayerFactory& f, int64_t in_channels, int64_t classes) {
    stem_ = register_module("conv1",
                            f.conv({in_channels, kStemWidth, 3, 1, 1, 1, false, frozen_stem(10)}));
    stem_bn_ = register_optional("bn1", f.bn2d(kStemWidth));
    head_ = register_module("conv2", f.conv({kHeadIn, kHeadWidth, 1}));
    head_bn_ = register_optional("bn2", f.bn2d(kHeadWidth));
    auto layers = std::make_shared<Sequential>();
    int64_t in = kStemWidth;
    for (const Stage& s : kStages)
      for (int64_t b = 0; b < s.blocks; ++b) {
        layers->push_back(
            std::make_shared<InvertedResidual>(f, in, s.out, s.expansion, b == 0 ? s.stride : 1));
        in = s.out;
      }
    layers_ = register_module("layers", layers);
    linear_ = register_module("linear", f.classifier(kHeadWidth, classes));
  }

  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(stem_bn_, (*stem_)(x)));
    out = (*layers_)(out);
    out = ops::relu(apply_optional(head_bn_, (*head_)(out)));
    return (*linear_)(ops::avg_pool2d(out, kPool).flatten(1));
  }
  std::string type_name() const override { return "MobileNetV2"; }

 private:
  std::shared_ptr<Module> stem_, stem_bn_, head_, head_bn_, layers_, linear_;
};

}  // namespace

std::shared_ptr<Module> build_mobilenetv2(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<MobileNetV2>(f, cfg.in_channels, cfg.num_classes);
}

}  // namespace nd
