// DenseNet-121 (growth 32, blocks 6-12-24-16, bottleneck width 4 x growth, compression 0.5) in
// two forms: kuangliu's CIFAR network (3x3 stem, no max pool, final BN + ReLU + 4x4 average pool)
// and torchvision's ImageNet network (7x7/2 stem + 3x3/2 max pool, global average pool).
// Reference quirks: every layer is pre-activation ([BN] ReLU conv), so with --norm nd a FastDeconv
// whitens a ReLU output and no BN is left anywhere, not even the final one (the ReLU stays); the
// CIFAR layers concatenate [new, input], torchvision's [input, new]; the CIFAR stem uses the run's
// deconvolution settings, the ImageNet stem freezes with 15 iterations; the ImageNet classifier is
// Delinear with block 64.
#include "layers/pool.h"
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

constexpr int64_t kGrowth = 32;
constexpr int64_t kBottleneckWidth = 4 * kGrowth;
constexpr int64_t kBlockLayers[4] = {6, 12, 24, 16};
constexpr int64_t kStemChannels = 2 * kGrowth;

// nn.Sequential with named children (PyTorch's OrderedDict form); null layers are skipped.
class NamedSequential : public Module {
 public:
  void add(const std::string& name, std::shared_ptr<Module> layer) {
    if (!layer) return;
    layers_.push_back(register_module(name, std::move(layer)));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = x;
    for (auto& layer : layers_) out = (*layer)(out);
    return out;
  }
  std::string type_name() const override { return "Sequential"; }

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

// [BN] ReLU 1x1 conv to 4 x growth, [BN] ReLU 3x3 conv to growth, then the input and the new
// features concatenated on channels. `norm` names the BNs (kuangliu "bn", torchvision "norm").
class DenseLayer : public Module {
 public:
  DenseLayer(LayerFactory& f, int64_t in, const std::string& norm, bool new_first)
      : new_first_(new_first) {
    norm1_ = f.bn2d(in);
    if (norm1_) register_module(norm + "1", norm1_);
    conv1_ = register_module("conv1", f.conv(conv_spec(in, kBottleneckWidth, 1)));
    norm2_ = f.bn2d(kBottleneckWidth);
    if (norm2_) register_module(norm + "2", norm2_);
    conv2_ = register_module("conv2", f.conv(conv_spec(kBottleneckWidth, kGrowth, 3)));
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*conv1_)(ops::relu(apply_optional(norm1_, x)));
    h = (*conv2_)(ops::relu(apply_optional(norm2_, h)));
    return new_first_ ? ops::cat({h, x}, 1) : ops::cat({x, h}, 1);
  }
  std::string type_name() const override { return "DenseLayer"; }

 private:
  bool new_first_;
  std::shared_ptr<Module> norm1_, conv1_, norm2_, conv2_;
};

// [BN] ReLU 1x1 conv halving the channels, 2x2 average pool.
class Transition : public Module {
 public:
  Transition(LayerFactory& f, int64_t in, int64_t out, const std::string& norm) {
    norm_ = f.bn2d(in);
    if (norm_) register_module(norm, norm_);
    conv_ = register_module("conv", f.conv(conv_spec(in, out, 1)));
  }
  Tensor forward(const Tensor& x) override {
    return ops::avg_pool2d((*conv_)(ops::relu(apply_optional(norm_, x))), 2);
  }
  std::string type_name() const override { return "Transition"; }

 private:
  std::shared_ptr<Module> norm_, conv_;
};

// kuangliu's DenseNet: conv1, dense1, trans1, ..., trans3, dense4, bn, linear.
class CifarDenseNet : public Module {
 public:
  CifarDenseNet(LayerFactory& f, int64_t classes) {
    conv1_ = register_module("conv1", f.conv(conv_spec(3, kStemChannels, 3)));
    int64_t planes = kStemChannels;
    for (int stage = 0; stage < 4; ++stage) {
      auto dense = std::make_shared<Sequential>();
      for (int64_t i = 0; i < kBlockLayers[stage]; ++i, planes += kGrowth)
        dense->push_back(std::make_shared<DenseLayer>(f, planes, "bn", /*new_first=*/true));
      stages_.push_back(register_module("dense" + std::to_string(stage + 1), dense));
      if (stage == 3) break;
      stages_.push_back(register_module("trans" + std::to_string(stage + 1),
                                        std::make_shared<Transition>(f, planes, planes / 2, "bn")));
      planes /= 2;
    }
    bn_ = f.bn2d(planes);
    if (bn_) register_module("bn", bn_);
    linear_ = register_module("linear", f.classifier(planes, classes));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = (*conv1_)(x);
    for (auto& stage : stages_) out = (*stage)(out);
    out = ops::avg_pool2d(ops::relu(apply_optional(bn_, out)), 4);
    return (*linear_)(out.flatten(1));
  }
  std::string type_name() const override { return "DenseNet"; }

 private:
  std::shared_ptr<Module> conv1_, bn_, linear_;
  std::vector<std::shared_ptr<Module>> stages_;
};

// torchvision's DenseNet: features (conv0, norm0, relu0, pool0, denseblock1..4, transition1..3,
// norm5), then ReLU, global average pool and the classifier.
class ImagenetDenseNet : public Module {
 public:
  ImagenetDenseNet(LayerFactory& f, int64_t classes) {
    features_ = register_module("features", std::make_shared<NamedSequential>());
    ConvSpec stem = conv_spec(3, kStemChannels, 7, 2);
    stem.deconv = frozen_stem(15);
    features_->add("conv0", f.conv(stem));
    features_->add("norm0", f.bn2d(kStemChannels));
    features_->add("relu0", make_relu());
    features_->add("pool0", std::make_shared<MaxPool2d>(3, 2, 1));
    int64_t planes = kStemChannels;
    for (int stage = 0; stage < 4; ++stage) {
      auto block = std::make_shared<NamedSequential>();
      for (int64_t i = 0; i < kBlockLayers[stage]; ++i, planes += kGrowth)
        block->add("denselayer" + std::to_string(i + 1),
                   std::make_shared<DenseLayer>(f, planes, "norm", /*new_first=*/false));
      features_->add("denseblock" + std::to_string(stage + 1), block);
      if (stage == 3) break;
      features_->add("transition" + std::to_string(stage + 1),
                     std::make_shared<Transition>(f, planes, planes / 2, "norm"));
      planes /= 2;
    }
    features_->add("norm5", f.bn2d(planes));
    classifier_ = register_module("classifier", f.classifier_block(planes, classes, 64));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = ops::adaptive_avg_pool2d(ops::relu((*features_)(x)), 1, 1);
    return (*classifier_)(out.flatten(1));
  }
  std::string type_name() const override { return "DenseNet"; }

 private:
  std::shared_ptr<NamedSequential> features_;
  std::shared_ptr<Module> classifier_;
};

}  // namespace

std::shared_ptr<Module> build_densenet121(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<CifarDenseNet>(f, cfg.num_classes);
}

std::shared_ptr<Module> build_imagenet_densenet121(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  auto net = std::make_shared<ImagenetDenseNet>(f, cfg.num_classes);
  if (cfg.norm == "bn")
    torchvision_init(*net, gen, {/*fan_out=*/false, TorchvisionInit::LinearInit::ZeroBias});
  return net;
}

}  // namespace nd
