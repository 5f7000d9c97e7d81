// Network deconvolution layers (docs/deconvolution.md, "The algorithm", sections 1-3):
// FastDeconv (a convolution whose input patches are whitened on the fly), Delinear (the same for
// a linear layer) and ChannelDeconv (whitening of channels). Each runs one of two paths: the
// composite one built from primitive autograd ops (readable; the oracle) and the fused one on
// the kernels of kernels/deconv.h (the default). Buffers carry the reference's names.
#pragma once
#include "layers/module.h"

namespace nd {

enum class DeconvPath { Composite, Fused };

struct DeconvSettings {
  int64_t block = 64;
  double eps = 1e-5;
  int64_t n_iter = 5;
  double momentum = 0.1;
  int64_t sampling_stride = 3;
  bool freeze = false;
  int64_t freeze_iter = 100;
  DeconvPath path = DeconvPath::Fused;
};

// The coupled Newton-Schulz iteration from primitive ops: a (count, n, n) -> D (count, n, n).
Tensor newton_schulz_composite(const Tensor& a, int64_t iters);

class FastDeconv : public Module {
 public:
  FastDeconv(int64_t in, int64_t out, int64_t kernel, const ops::Conv2dParams& p, bool bias,
             const DeconvSettings& s, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "FastDeconv"; }
  std::string describe() const override;
  // The convolution plus the covariance of the sampled patches (per image).
  double flops(const Shape& in, const Shape& out) const override;
  // Newton-Schulz and the weight fold (once per training step, whatever the batch).
  double per_step_flops() const override;
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int64_t kernel() const { return kernel_; }
  const ops::Conv2dParams& params() const { return p_; }

  int64_t block() const { return block_; }  // after the gcd/groups rules
  int64_t feature_length() const { return kernel_ * kernel_ * block_; }
  int64_t effective_sampling_stride() const { return settings_.sampling_stride * p_.stride; }
  const DeconvSettings& settings() const { return settings_; }
  void set_path(DeconvPath p) { settings_.path = p; }
  // The freeze counter (per-layer training state; goes into training checkpoints).
  int64_t freeze_counter() const { return counter_; }
  void set_freeze_counter(int64_t c) { counter_ = c; }
  std::vector<int64_t> extra_state() const override { return {counter_}; }
  void set_extra_state(const std::vector<int64_t>& s) override;

 private:
  // Mean (groups, nf) and deconvolution matrices (groups, nf, nf) of this batch.
  std::pair<Tensor, Tensor> statistics(const Tensor& x);
  // Mean and covariance (+ eps I) of the sampled patches from primitive ops (the oracle).
  std::pair<Tensor, Tensor> covariance_composite_of(const Tensor& x, const ops::PatchSampling& ps,
                                                    double eps);
  // k == 1 under synchronised statistics: where this rank's rows enter the global sampling.
  int64_t first_sampled_row(const Tensor& x) const;
  std::pair<Tensor, Tensor> fold_composite(const Tensor& d, const Tensor& mu);
  ops::PatchSampling sampling() const;  // how forward samples its input (first = 0)

  int64_t in_, out_, kernel_;
  ops::Conv2dParams p_;
  DeconvSettings settings_;
  int64_t block_;
  int64_t counter_ = 0;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
  Tensor* running_mean_;
  Tensor* running_deconv_;
};

class Delinear : public Module {
 public:
  Delinear(int64_t in, int64_t out, bool bias, const DeconvSettings& s, Generator& gen);
  Tensor forward(const Tensor& x) override;  // (N, in) -> (N, out)
  std::string type_name() const override { return "Delinear"; }
  std::string describe() const override;
  double flops(const Shape& in, const Shape& out) const override;
  double per_step_flops() const override;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  const DeconvSettings& settings() const { return settings_; }
  int64_t block() const { return block_; }
  void set_path(DeconvPath p) { settings_.path = p; }

 private:
  int64_t in_, out_;
  DeconvSettings settings_;
  int64_t block_;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
  Tensor* running_mean_;
  Tensor* running_deconv_;
};

// Whitens groups of channels: input (N, C, H, W) or (N, C). `centred` false reproduces the
// reference's uncentred covariance (--ref-compat).
class ChannelDeconv : public Module {
 public:
  ChannelDeconv(int64_t block, const DeconvSettings& s, bool centred = true);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ChannelDeconv"; }
  std::string describe() const override;
  std::vector<int64_t> extra_state() const override { return {initialised_ ? 1 : 0}; }
  void set_extra_state(const std::vector<int64_t>& s) override;
  void set_path(DeconvPath p) { settings_.path = p; }

 private:
  int64_t block_;
  DeconvSettings settings_;
  bool centred_;
  bool initialised_ = false;  // running buffers are copied from the first batch
  Tensor* running_mean_;
  Tensor* running_deconv_;
};

// Validates the shared settings, naming the layer and the bad value.
void check_deconv_settings(const char* layer, const DeconvSettings& s);

}  // namespace nd
