// What every network builder shares: the factory that turns "a convolution followed by batch
// norm" into Conv2d + BatchNorm2d (--norm bn) or a single FastDeconv (--norm nd; no batch norm
// is created, network-deconvolution.md section 4), the classifier (Linear, or Delinear when
// deconvolving with block_fc > 0), a residual sum and small parameter-free layers.
#pragma once
#include <optional>

#include "layers/activation.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/deconv.h"
#include "layers/linear.h"
#include "nets/registry.h"

namespace nd {

// Per-layer departures from the run's deconvolution settings (the reference's stems use more
// Newton-Schulz steps and freeze; grouped and depthwise layers fewer steps).
struct DeconvOverride {
  std::optional<int64_t> n_iter;
  std::optional<bool> freeze;
  std::optional<int64_t> block;  // a block fixed by the network whatever --block says
};

// The reference's stems: more Newton-Schulz steps, statistics frozen after freeze_iter steps.
inline DeconvOverride frozen_stem(int64_t n_iter) {
  DeconvOverride o;
  o.n_iter = n_iter;
  o.freeze = true;
  return o;
}

struct ConvSpec {
  int64_t in = 0, out = 0, kernel = 1, stride = 1, padding = 0, groups = 1;
  bool bias = false;  // of the Conv2d in the batch-norm network; FastDeconv always has a bias
  DeconvOverride deconv = {};
};

// A "same" convolution (padding kernel / 2), bias-free in the batch-norm form.
inline ConvSpec conv_spec(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1,
                          int64_t groups = 1) {
  ConvSpec s;
  s.in = in;
  s.out = out;
  s.kernel = kernel;
  s.stride = stride;
  s.padding = kernel / 2;
  s.groups = groups;
  return s;
}

// spec with a bias in the batch-norm form too (VGG's convolutions, SENet's excitation layers).
inline ConvSpec with_bias(ConvSpec spec) {
  spec.bias = true;
  return spec;
}

class LayerFactory {
 public:
  LayerFactory(const NetConfig& cfg, Generator& gen);
  bool deconv() const { return deconv_; }
  const NetConfig& config() const { return cfg_; }
  Generator& gen() { return gen_; }

  // Conv2d (bn and none) or FastDeconv (nd).
  std::shared_ptr<Module> conv(const ConvSpec& spec);
  // A convolution that stays a Conv2d whatever the norm (the reference's mixed EfficientNet).
  std::shared_ptr<Module> plain_conv(const ConvSpec& spec);
  // The settings conv() gives a FastDeconv for this spec.
  DeconvSettings deconv_settings(const DeconvOverride& o) const;
  // BatchNorm2d(c) with bn; nullptr otherwise (register it only when non-null).
  std::shared_ptr<Module> bn2d(int64_t channels);
  // Linear(in, out), or Delinear(in, out, block_fc) with nd and block_fc > 0.
  std::shared_ptr<Module> classifier(int64_t in, int64_t out);
  // Delinear with an explicit block whatever block_fc says (ImageNet classifiers), or Linear.
  std::shared_ptr<Module> classifier_block(int64_t in, int64_t out, int64_t block);

 private:
  NetConfig cfg_;
  Generator& gen_;
  bool deconv_;
};

// Runs `m` when set, else passes x through (an optional batch norm).
inline Tensor apply_optional(const std::shared_ptr<Module>& m, const Tensor& x) {
  return m ? (*m)(x) : x;
}

// torchvision's initialisation of its ImageNet networks, for their batch-norm forms (the
// standard torchvision networks): every Conv2d weight Kaiming-normal for ReLU (std sqrt(2 / fan),
// fan = out*k*k with fan_out, in/groups*k*k with fan_in) and bias 0; every Linear either
// N(0, 0.01) with bias 0 (VGG), bias 0 only (DenseNet) or left at PyTorch's default (ResNet).
// Batch norm already starts at weight 1, bias 0.
struct TorchvisionInit {
  bool fan_out = true;
  enum class LinearInit { Default, ZeroBias, Normal } linear = LinearInit::Default;
};
void torchvision_init(Module& net, Generator& gen, const TorchvisionInit& how);

// Throws unless cfg.norm is one of `allowed`, naming the arch and the choices.
void require_norm(const NetConfig& cfg, std::initializer_list<const char*> allowed);

}  // namespace nd
