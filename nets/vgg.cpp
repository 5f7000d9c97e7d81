// VGG in two forms: kuangliu's CIFAR VGG-16 (3x3 conv [BN] ReLU stacks with 2x2 max pools, an
// AvgPool2d(1, 1) that does nothing, then one classifier on the 512 features of the 1x1 map) and
// torchvision's ImageNet VGG-11 (vgg11_bn with --norm bn, vgg11 with --norm none: adaptive 7x7
// average pool, then Linear 25088-4096, ReLU, Dropout, Linear 4096-4096, ReLU, Dropout, Linear).
// Reference quirks: with --norm nd no BN is created, so `features` indices shift (conv, ReLU,
// conv, ...); the first conv freezes with 15 Newton-Schulz steps; the CIFAR classifier is
// Delinear(block_fc), the three ImageNet FC layers are all Delinear with block 64, dropout kept.
#include "layers/dropout.h"
#include "layers/pool.h"
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

// Convolution widths of each stage; every stage ends with a 2x2 max pool.
using Stages = std::vector<std::vector<int64_t>>;
const Stages kVgg16 = {{64, 64}, {128, 128}, {256, 256, 256}, {512, 512, 512}, {512, 512, 512}};
const Stages kVgg11 = {{64}, {128}, {256, 256}, {512, 512}, {512, 512}};
constexpr int64_t kImagenetPool = 7;
constexpr int64_t kImagenetHidden = 4096;
constexpr int64_t kImagenetFcBlock = 64;
constexpr double kDropout = 0.5;

// The `features` Sequential: each width a 3x3 conv (with bias) [BN] ReLU, each stage closed by a
// 2x2/2 max pool. The first conv is the frozen stem with 15 Newton-Schulz steps.
std::shared_ptr<Sequential> make_features(LayerFactory& f, const Stages& stages) {
  auto features = std::make_shared<Sequential>();
  int64_t in = f.config().in_channels;
  for (const auto& widths : stages) {
    for (int64_t width : widths) {
      ConvSpec spec = with_bias(conv_spec(in, width, 3));
      if (features->size() == 0) spec.deconv = frozen_stem(15);
      features->push_back(f.conv(spec));
      if (auto bn = f.bn2d(width)) features->push_back(bn);
      features->push_back(make_relu());
      in = width;
    }
    features->push_back(std::make_shared<MaxPool2d>(2, 2));
  }
  return features;
}

// features, an optional pool, flatten, classifier (PyTorch names: features, avgpool, classifier).
class Vgg : public Module {
 public:
  Vgg(std::shared_ptr<Sequential> features, std::shared_ptr<Module> avgpool,
      std::shared_ptr<Module> classifier) {
    features_ = register_module("features", std::move(features));
    if (avgpool) avgpool_ = register_module("avgpool", std::move(avgpool));
    classifier_ = register_module("classifier", std::move(classifier));
  }
  Tensor forward(const Tensor& x) override {
    Tensor out = apply_optional(avgpool_, (*features_)(x));
    return (*classifier_)(out.flatten(1));
  }
  std::string type_name() const override { return "VGG"; }

 private:
  std::shared_ptr<Module> features_, avgpool_, classifier_;
};

}  // namespace

std::shared_ptr<Module> build_vgg16(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  auto features = make_features(f, kVgg16);
  features->push_back(std::make_shared<AvgPool2d>(1, 1));  // kuangliu's no-op pool, kept for names
  return std::make_shared<Vgg>(features, nullptr, f.classifier(512, cfg.num_classes));
}

std::shared_ptr<Module> build_imagenet_vgg11(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"none", "bn", "nd"});  // none: torchvision's vgg11 (the paper's "simple")
  LayerFactory f(cfg, gen);
  auto features = make_features(f, kVgg11);
  auto classifier = std::make_shared<Sequential>();
  classifier->push_back(
      f.classifier_block(512 * kImagenetPool * kImagenetPool, kImagenetHidden, kImagenetFcBlock));
  classifier->push_back(make_relu());
  classifier->push_back(std::make_shared<Dropout>(kDropout, f.gen()));
  classifier->push_back(f.classifier_block(kImagenetHidden, kImagenetHidden, kImagenetFcBlock));
  classifier->push_back(make_relu());
  classifier->push_back(std::make_shared<Dropout>(kDropout, f.gen()));
  classifier->push_back(f.classifier_block(kImagenetHidden, cfg.num_classes, kImagenetFcBlock));
  auto net = std::make_shared<Vgg>(features, std::make_shared<AdaptiveAvgPool2d>(kImagenetPool),
                                   classifier);
  if (cfg.norm != "nd")
    torchvision_init(*net, gen, {/*fan_out=*/true, TorchvisionInit::LinearInit::Normal});
  return net;
}

}  // namespace nd
