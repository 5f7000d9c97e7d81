// ResNet-18 in three forms: kuangliu's CIFAR ResNet18 and PreActResNet18 (3x3 stem, stages of
// two basic blocks at 64-128-256-512 channels, 4x4 average pool, `linear`) and torchvision's
// ImageNet resnet18 (7x7/2 stem, 3x3/2 max pool, `downsample` shortcuts, global pool, `fc`).
// Reference quirks:
// - CIFAR ResNet block registers conv1, conv2, shortcut, then bn1, bn2; stride-2 1x1 shortcuts
//   are FastDeconv (in a Sequential: shortcut.0); the stem uses the run's deconv settings.
// - PreAct: the stem freezes with 10 Newton-Schulz steps; the nd shortcut is a bare FastDeconv
//   (`shortcut`), the bn one a Sequential (`shortcut.0`); the bn stem creates `bn1` but the
//   reference's forward never calls it. We keep it unused too: its parameters are in checkpoints
//   (so reference files load) but the network is the published one.
// - ImageNet: the stem freezes with 15 steps; the nd downsample keeps a BatchNorm2d after the
//   1x1 FastDeconv; the classifier is Delinear with block 64.
#include <functional>

#include "layers/pool.h"
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

constexpr int64_t kStageWidths[4] = {64, 128, 256, 512};
constexpr int64_t kBlocksPerStage = 2;
constexpr int64_t kImagenetFcBlock = 64;

// A Sequential of the given layers, skipping null ones (batch norms absent with --norm nd).
std::shared_ptr<Sequential> sequential(std::initializer_list<std::shared_ptr<Module>> layers) {
  auto seq = std::make_shared<Sequential>();
  for (const auto& layer : layers)
    if (layer) seq->push_back(layer);
  return seq;
}

ConvSpec conv3x3(int64_t in, int64_t out, int64_t stride) {
  return conv_spec(in, out, 3, stride);
}

ConvSpec conv1x1(int64_t in, int64_t out, int64_t stride) {
  return conv_spec(in, out, 1, stride);
}

// How the CIFAR and torchvision basic blocks differ in names and layout.
struct BasicBlockForm {
  const char* shortcut_name;  // "shortcut" (kuangliu) or "downsample" (torchvision)
  // torchvision registers conv1, bn1, conv2, bn2, downsample; kuangliu conv1, conv2, shortcut,
  // bn1, bn2.
  bool torchvision_order;
  bool shortcut_keeps_bn;  // the ImageNet reference keeps the downsample BN with --norm nd
};

constexpr BasicBlockForm kCifarBlock{"shortcut", false, false};
constexpr BasicBlockForm kImagenetBlock{"downsample", true, true};

// relu(bn1(conv1 x)), bn2(conv2), plus the shortcut (projection when the shape changes), relu.
class BasicBlock : public Module {
 public:
  BasicBlock(LayerFactory& f, int64_t in, int64_t planes, int64_t stride,
             const BasicBlockForm& form) {
    conv1_ = f.conv(conv3x3(in, planes, stride));
    bn1_ = f.bn2d(planes);
    conv2_ = f.conv(conv3x3(planes, planes, 1));
    bn2_ = f.bn2d(planes);
    if (stride != 1 || in != planes) {
      auto bn = form.shortcut_keeps_bn ? std::make_shared<BatchNorm2d>(planes) : f.bn2d(planes);
      shortcut_ = sequential({f.conv(conv1x1(in, planes, stride)), bn});
    }
    register_module("conv1", conv1_);
    if (form.torchvision_order) register_optional("bn1", bn1_);
    register_module("conv2", conv2_);
    if (form.torchvision_order) register_optional("bn2", bn2_);
    register_optional(form.shortcut_name, shortcut_);
    if (!form.torchvision_order) {
      register_optional("bn1", bn1_);
      register_optional("bn2", bn2_);
    }
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, (*conv1_)(x)));
    out = apply_optional(bn2_, (*conv2_)(out));
    return ops::relu(out + apply_optional(shortcut_, x));
  }
  std::string type_name() const override { return "BasicBlock"; }

 private:
  std::shared_ptr<Module> conv1_, bn1_, conv2_, bn2_, shortcut_;
};

// relu(bn1 x) feeds conv1 and the projection shortcut; conv2(relu(bn2(conv1))) plus the
// shortcut (x itself when the shape stays).
class PreActBlock : public Module {
 public:
  PreActBlock(LayerFactory& f, int64_t in, int64_t planes, int64_t stride) {
    bn1_ = f.bn2d(in);
    if (bn1_) register_module("bn1", bn1_);
    conv1_ = register_module("conv1", f.conv(conv3x3(in, planes, stride)));
    bn2_ = f.bn2d(planes);
    if (bn2_) register_module("bn2", bn2_);
    conv2_ = register_module("conv2", f.conv(conv3x3(planes, planes, 1)));
    if (stride != 1 || in != planes) {
      auto conv = f.conv(conv1x1(in, planes, stride));
      // The reference wraps the bn shortcut in a Sequential but not the nd one.
      shortcut_ = register_module("shortcut", f.deconv() ? conv : sequential({conv}));
    }
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(bn1_, x));
    Tensor shortcut = shortcut_ ? (*shortcut_)(out) : x;
    out = (*conv1_)(out);
    out = (*conv2_)(ops::relu(apply_optional(bn2_, out)));
    return out + shortcut;
  }
  std::string type_name() const override { return "PreActBlock"; }

 private:
  std::shared_ptr<Module> bn1_, conv1_, bn2_, conv2_, shortcut_;
};

using BlockMaker = std::function<std::shared_ptr<Module>(LayerFactory&, int64_t in, int64_t planes,
                                                         int64_t stride)>;

// layer1..layer4: two blocks each, the first of stages 2-4 with stride 2.
std::vector<std::shared_ptr<Sequential>> make_stages(LayerFactory& f, const BlockMaker& block) {
  std::vector<std::shared_ptr<Sequential>> stages;
  int64_t in = kStageWidths[0];
  for (int stage = 0; stage < 4; ++stage) {
    auto seq = std::make_shared<Sequential>();
    for (int64_t i = 0; i < kBlocksPerStage; ++i) {
      const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
      seq->push_back(block(f, in, kStageWidths[stage], stride));
      in = kStageWidths[stage];
    }
    stages.push_back(seq);
  }
  return stages;
}

// conv1, bn1 (bn only), layer1..4, linear; the stem is conv1 [bn1] [ReLU], the head a 4x4
// average pool of the 4x4 map.
class CifarResNet : public Module {
 public:
  CifarResNet(LayerFactory& f, const ConvSpec& stem, bool stem_bn, bool stem_relu,
              const BlockMaker& block)
      : stem_bn_(stem_bn), stem_relu_(stem_relu) {
    conv1_ = register_module("conv1", f.conv(stem));
    bn1_ = f.bn2d(stem.out);
    if (bn1_) register_module("bn1", bn1_);
    stages_ = make_stages(f, block);
    for (size_t i = 0; i < stages_.size(); ++i)
      register_module("layer" + std::to_string(i + 1), stages_[i]);
    linear_ = register_module("linear", f.classifier(kStageWidths[3], f.config().num_classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = (*conv1_)(x);
    if (stem_bn_) out = apply_optional(bn1_, out);
    if (stem_relu_) out = ops::relu(out);
    for (auto& stage : stages_) out = (*stage)(out);
    return (*linear_)(ops::avg_pool2d(out, 4).flatten(1));
  }
  std::string type_name() const override { return "ResNet"; }

 private:
  bool stem_bn_, stem_relu_;
  std::shared_ptr<Module> conv1_, bn1_, linear_;
  std::vector<std::shared_ptr<Sequential>> stages_;
};

// torchvision's names: conv1, bn1, (relu), maxpool, layer1..4, avgpool, fc.
class ImagenetResNet : public Module {
 public:
  explicit ImagenetResNet(LayerFactory& f) {
    ConvSpec stem = conv_spec(f.config().in_channels, kStageWidths[0], 7, 2);
    stem.deconv = frozen_stem(15);
    conv1_ = register_module("conv1", f.conv(stem));
    bn1_ = f.bn2d(kStageWidths[0]);
    if (bn1_) register_module("bn1", bn1_);
    maxpool_ = register_module("maxpool", std::make_shared<MaxPool2d>(3, 2, 1));
    stages_ = make_stages(f, [](LayerFactory& lf, int64_t in, int64_t planes, int64_t stride) {
      return std::make_shared<BasicBlock>(lf, in, planes, stride, kImagenetBlock);
    });
    for (size_t i = 0; i < stages_.size(); ++i)
      register_module("layer" + std::to_string(i + 1), stages_[i]);
    avgpool_ = register_module("avgpool", std::make_shared<AdaptiveAvgPool2d>(1));
    fc_ = register_module(
        "fc", f.classifier_block(kStageWidths[3], f.config().num_classes, kImagenetFcBlock));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = (*maxpool_)(ops::relu(apply_optional(bn1_, (*conv1_)(x))));
    for (auto& stage : stages_) out = (*stage)(out);
    return (*fc_)((*avgpool_)(out).flatten(1));
  }
  std::string type_name() const override { return "ResNet"; }

 private:
  std::shared_ptr<Module> conv1_, bn1_, maxpool_, avgpool_, fc_;
  std::vector<std::shared_ptr<Sequential>> stages_;
};

ConvSpec cifar_stem(const NetConfig& cfg) {
  return conv3x3(cfg.in_channels, kStageWidths[0], 1);
}

}  // namespace

std::shared_ptr<Module> build_resnet18(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<CifarResNet>(
      f, cifar_stem(cfg), /*stem_bn=*/true, /*stem_relu=*/true,
      [](LayerFactory& lf, int64_t in, int64_t planes, int64_t stride) {
        return std::make_shared<BasicBlock>(lf, in, planes, stride, kCifarBlock);
      });
}

std::shared_ptr<Module> build_preact18(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  ConvSpec stem = cifar_stem(cfg);
  stem.deconv = frozen_stem(10);
  return std::make_shared<CifarResNet>(
      f, stem, /*stem_bn=*/false, /*stem_relu=*/false,
      [](LayerFactory& lf, int64_t in, int64_t planes, int64_t stride) {
        return std::make_shared<PreActBlock>(lf, in, planes, stride);
      });
}

std::shared_ptr<Module> build_imagenet_resnet18(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  auto net = std::make_shared<ImagenetResNet>(f);
  if (cfg.norm == "bn") torchvision_init(*net, gen, {/*fan_out=*/true});
  return net;
}

}  // namespace nd
