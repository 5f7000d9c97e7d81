// Network deconvolution layers (see deconv.h). The composite paths spell the algorithm out in
// primitive ops exactly as network-deconvolution.md does; the fused paths call ops:: on the
// deconvolution kernels. Tests hold the two equal.
#include "layers/deconv.h"

#include "engine/comm.h"
#include "layers/conv.h"
#include "layers/sync_statistics.h"

#include <cmath>
#include <numeric>

namespace nd {

void check_deconv_settings(const char* layer, const DeconvSettings& s) {
  ND_CHECK(s.eps > 0, layer, ": eps must be > 0, got ", s.eps);
  ND_CHECK(s.n_iter >= 1, layer, ": n_iter must be >= 1, got ", s.n_iter);
  ND_CHECK(s.block >= 1, layer, ": block must be >= 1, got ", s.block);
  ND_CHECK(s.sampling_stride >= 1, layer, ": sampling stride must be >= 1, got ",
           s.sampling_stride);
  ND_CHECK(s.momentum >= 0 && s.momentum <= 1, layer, ": momentum must be in [0, 1], got ",
           s.momentum);
  ND_CHECK(!s.freeze || s.freeze_iter >= 1, layer, ": freeze_iter must be >= 1, got ",
           s.freeze_iter);
}

namespace {

// The block rule shared by FastDeconv and Delinear: B = block, capped at the feature count,
// else reduced to gcd(block, features) when it does not divide them.
int64_t resolve_block(int64_t block, int64_t features) {
  if (block > features) return features;
  if (features % block != 0) return std::gcd(block, features);
  return block;
}

// running = (1 - m) running + m value, outside autograd.
void update_running(Tensor& running, const Tensor& value, double momentum) {
  NoGradGuard no_grad;
  Tensor v = value.detach().reshape(running.shape());
  running.copy_(ops::add(ops::affine(running, 1.0 - momentum, 0.0), ops::affine(v, momentum, 0.0)));
}

// mean (count, n) and covariance (count, n, n) of rows x (count, rows, n), from primitives.
std::pair<Tensor, Tensor> covariance_composite(const Tensor& x, double eps) {
  const int64_t rows = x.shape()[1], n = x.shape()[2];
  Tensor mu = ops::mean(x, {1}, /*keepdim=*/true);  // (count, 1, n)
  Tensor xc = ops::sub(x, mu);
  Tensor cov = ops::affine(ops::matmul(xc.transpose(1, 2), xc), 1.0 / double(rows), 0.0);
  cov = ops::add(cov, ops::affine(ops::eye(n, x.dtype(), x.device()), eps, 0.0));
  return {mu.reshape({x.shape()[0], n}), cov};
}

}  // namespace

Tensor newton_schulz_composite(const Tensor& a, int64_t iters) {
  ND_CHECK(a.dim() == 3 && a.shape()[1] == a.shape()[2], "newton_schulz: expected (count, n, n)");
  const int64_t count = a.shape()[0], n = a.shape()[1];
  Tensor identity = ops::eye(n, a.dtype(), a.device());
  Tensor three_halves = ops::affine(identity, 1.5, 0.0);
  Tensor norm = ops::sqrt(ops::sum(ops::square(a), {1, 2}, /*keepdim=*/true));  // (count, 1, 1)
  Tensor y = ops::div(a, norm);
  Tensor z = ops::expand(identity, {count, n, n});
  for (int64_t i = 0; i < iters; ++i) {
    Tensor t = ops::add(ops::affine(ops::matmul(z, y), -0.5, 0.0), three_halves);
    y = ops::matmul(y, t);
    z = ops::matmul(t, z);
  }
  return ops::div(z, ops::sqrt(norm));
}

// ------------------------------------------------------------------------------ FastDeconv

FastDeconv::FastDeconv(int64_t in, int64_t out, int64_t kernel, const ops::Conv2dParams& p,
                       bool bias, const DeconvSettings& s, Generator& gen)
    : in_(in), out_(out), kernel_(kernel), p_(p), settings_(s) {
  check_deconv_settings("FastDeconv", s);
  ND_CHECK(in > 0 && out > 0 && kernel > 0, "FastDeconv(", in, ", ", out, ", kernel ", kernel,
           "): sizes must be positive");
  ND_CHECK(p.groups >= 1 && in % p.groups == 0 && out % p.groups == 0, "FastDeconv(", in, ", ", out,
           "): channels not divisible by groups=", p.groups);
  block_ = p.groups > 1 ? in / p.groups : resolve_block(s.block, in);
  ND_CHECK(in % block_ == 0, "FastDeconv(", in, "): block ", s.block, " cannot divide ", in,
           " channels");
  const int64_t fan_in = in / p.groups * kernel * kernel;
  const double bound = 1.0 / std::sqrt(double(fan_in));
  weight_ = &register_parameter(
      "weight", uniform_tensor({out, in / p.groups, kernel, kernel}, -bound, bound, gen));
  if (bias) bias_ = &register_parameter("bias", uniform_tensor({out}, -bound, bound, gen));
  const int64_t nf = feature_length();
  if (p.groups == 1) {
    running_mean_ = &register_buffer("running_mean", Tensor::zeros({nf}));
    running_deconv_ = &register_buffer("running_deconv", ops::eye(nf));
  } else {
    running_mean_ = &register_buffer("running_mean", Tensor::zeros({p.groups * nf}));
    running_deconv_ =
        &register_buffer("running_deconv", ops::expand(ops::eye(nf), {p.groups, nf, nf}));
  }
}

ops::PatchSampling FastDeconv::sampling() const {
  ops::PatchSampling s;
  s.kernel = kernel_, s.padding = p_.padding, s.dilation = p_.dilation;
  s.stride = effective_sampling_stride();
  s.block = block_, s.groups = p_.groups;
  return s;
}

std::pair<Tensor, Tensor> FastDeconv::covariance_composite_of(const Tensor& x,
                                                              const ops::PatchSampling& ps,
                                                              double eps) {
  const int64_t c = in_, nf = feature_length(), g = p_.groups;
  const int64_t s = effective_sampling_stride();
  Tensor rows;  // (positions, C*k*k), column f = c*k*k + ky*k + kx
  if (kernel_ == 1) {
    Tensor nhwc = x.permute({0, 2, 3, 1}).reshape({-1, c});
    rows = nhwc.slice(0, ps.first, nhwc.shape()[0], s * s);
  } else {
    ops::Conv2dParams sp;
    sp.stride = s, sp.padding = p_.padding, sp.dilation = p_.dilation;
    rows = ops::im2col(x, kernel_, kernel_, sp).permute({0, 2, 1}).reshape({-1, c * nf / block_});
  }
  const int64_t positions = rows.shape()[0];
  Tensor blocks;  // (matrices, R, nf)
  if (g == 1) {
    const int64_t per_row = c / block_;  // sub-row j takes the columns f with f % per_row == j
    blocks = rows.reshape({positions, nf, per_row}).transpose(1, 2).reshape({1, -1, nf});
  } else {
    blocks = rows.reshape({positions, g, nf}).permute({1, 0, 2});
  }
  return covariance_composite(blocks, eps);
}

int64_t FastDeconv::first_sampled_row(const Tensor& x) const {
  if (kernel_ != 1) return 0;
  // The raster rows of the ranks before this one come first in the global batch.
  const int64_t s2 = effective_sampling_stride() * effective_sampling_stride();
  const int64_t before = comm::exclusive_prefix_sum(x.shape()[0]) * x.shape()[2] * x.shape()[3];
  return (s2 - before % s2) % s2;
}

std::pair<Tensor, Tensor> FastDeconv::statistics(const Tensor& x) {
  // Synchronised statistics combine every rank's moments (eps is added once, to the total).
  const bool sync = comm::sync_statistics();
  const double eps = sync ? 0.0 : settings_.eps;
  ops::PatchSampling ps = sampling();
  if (sync) ps.first = first_sampled_row(x);
  const ops::SampledCount count = ops::sampled_count(x.shape(), ps);
  const int64_t g = p_.groups, nf = feature_length();
  Tensor mu, cov;
  if (count.positions == 0) {  // only a rank's tiny share of a 1x1 layer's sampling
    mu = Tensor::zeros({g, nf}, x.dtype(), x.device());
    cov = Tensor::zeros({g, nf, nf}, x.dtype(), x.device());
  } else if (settings_.path == DeconvPath::Composite) {
    std::tie(mu, cov) = covariance_composite_of(x, ps, eps);
  } else {
    std::tie(mu, cov) = ops::sampled_covariance(x, ps, eps);
  }
  if (sync) std::tie(mu, cov) = synchronise_covariance(mu, cov, double(count.rows), settings_.eps);
  if (settings_.path == DeconvPath::Composite)
    return {mu, newton_schulz_composite(cov, settings_.n_iter)};
  return {mu, ops::newton_schulz(cov, settings_.n_iter)};
}

std::pair<Tensor, Tensor> FastDeconv::fold_composite(const Tensor& d, const Tensor& mu) {
  const int64_t nf = feature_length(), g = p_.groups;
  Tensor w_folded, correction;  // (O, C/g*k*k), (O)
  if (g == 1) {
    const int64_t per_row = in_ / block_;
    Tensor wb = weight_->reshape({out_, nf, per_row}).transpose(1, 2).reshape({-1, nf});
    Tensor wf = ops::matmul(wb, d.reshape({nf, nf}));  // (O * per_row, nf)
    correction = ops::sum(ops::matmul(wf, mu.reshape({nf, 1})).reshape({out_, per_row}), {1});
    w_folded = wf.reshape({out_, per_row, nf}).transpose(1, 2).reshape({out_, -1});
  } else {
    Tensor wg = weight_->reshape({g, out_ / g, nf});
    Tensor wf = ops::matmul(wg, d);  // (g, O/g, nf)
    correction = ops::matmul(wf, mu.reshape({g, nf, 1})).reshape({out_});
    w_folded = wf.reshape({out_, nf});
  }
  Tensor b = bias_ ? ops::sub(*bias_, correction) : ops::neg(correction);
  return {w_folded, b};
}

Tensor FastDeconv::forward(const Tensor& x) {
  ND_CHECK(x.dim() == 4 && x.shape()[1] == in_, "FastDeconv(", in_, " -> ", out_,
           ") got input of shape ", shape_str(x.shape()), "; expected (N, ", in_, ", H, W)");
  const bool frozen = settings_.freeze && counter_ > settings_.freeze_iter;
  const int64_t g = p_.groups, nf = feature_length();
  Tensor mu, d;
  if (is_training()) {
    if (settings_.freeze) counter_ = (counter_ + 1) % (10 * settings_.freeze_iter);
  }
  if (is_training() && !frozen) {
    std::tie(mu, d) = statistics(x);
    update_running(*running_mean_, mu, settings_.momentum);
    update_running(*running_deconv_, d, settings_.momentum);
  } else {
    mu = running_mean_->detach().reshape({g, nf});
    d = running_deconv_->detach().reshape({g, nf, nf});
  }
  Tensor w_folded, b_folded;
  if (settings_.path == DeconvPath::Composite) {
    std::tie(w_folded, b_folded) = fold_composite(d, mu);
  } else {
    ops::FoldLayout fl;
    fl.outputs = out_, fl.features = nf, fl.blocks = g == 1 ? in_ / block_ : 1, fl.groups = g;
    std::tie(w_folded, b_folded) = ops::fold(*weight_, bias_ ? *bias_ : Tensor(), d, mu, fl);
  }
  return ops::conv2d(x, w_folded.reshape(weight_->shape()), b_folded, p_);
}

namespace {
// Coupled Newton-Schulz: three n x n products per step.
double newton_schulz_flops(int64_t n, int64_t iters) {
  return 6.0 * double(iters) * double(n) * double(n) * double(n);
}
}  // namespace

double FastDeconv::flops(const Shape& in, const Shape& out) const {
  const int64_t rows = ops::sampled_count({1, in[1], in[2], in[3]}, sampling()).rows;
  const double nf = double(feature_length());
  return conv2d_flops(in_, kernel_, p_.groups, out) + 2.0 * double(rows) * nf * nf;
}

double FastDeconv::per_step_flops() const {
  const int64_t nf = feature_length();
  const double fold =
      2.0 * double(out_) * double(in_ / p_.groups) * double(kernel_ * kernel_) * double(nf);
  return double(p_.groups) * newton_schulz_flops(nf, settings_.n_iter) + fold;
}

void FastDeconv::set_extra_state(const std::vector<int64_t>& s) {
  ND_CHECK(s.size() == 1 && s[0] >= 0, "FastDeconv: bad saved freeze counter");
  counter_ = s[0];
}

std::string FastDeconv::describe() const {
  return std::to_string(in_) + " -> " + std::to_string(out_) + ", " + std::to_string(kernel_) +
         "x" + std::to_string(kernel_) + ", stride " + std::to_string(p_.stride) +
         (p_.groups > 1 ? ", groups " + std::to_string(p_.groups) : "") + ", block " +
         std::to_string(block_) + ", n_iter " + std::to_string(settings_.n_iter) +
         ", sampling stride " + std::to_string(effective_sampling_stride()) +
         (settings_.freeze ? ", freeze " + std::to_string(settings_.freeze_iter) : "");
}

// ------------------------------------------------------------------------------ Delinear

Delinear::Delinear(int64_t in, int64_t out, bool bias, const DeconvSettings& s, Generator& gen)
    : in_(in), out_(out), settings_(s) {
  check_deconv_settings("Delinear", s);
  ND_CHECK(in > 0 && out > 0, "Delinear(", in, ", ", out, "): sizes must be positive");
  block_ = resolve_block(s.block, in);
  const double bound = 1.0 / std::sqrt(double(in));
  weight_ = &register_parameter("weight", uniform_tensor({out, in}, -bound, bound, gen));
  if (bias) bias_ = &register_parameter("bias", uniform_tensor({out}, -bound, bound, gen));
  running_mean_ = &register_buffer("running_mean", Tensor::zeros({block_}));
  running_deconv_ = &register_buffer("running_deconv", ops::eye(block_));
}

Tensor Delinear::forward(const Tensor& x) {
  ND_CHECK(x.dim() == 2 && x.shape()[1] == in_, "Delinear(", in_, " -> ", out_,
           ") got input of shape ", shape_str(x.shape()), "; expected (N, ", in_, ")");
  const int64_t b = block_;
  Tensor mu, d;  // (B), (B, B)
  if (is_training()) {
    Tensor rows = x.reshape({-1, b});  // consecutive features form a row
    const bool sync = comm::sync_statistics();
    const double eps = sync ? 0.0 : settings_.eps;
    Tensor cov;
    if (settings_.path == DeconvPath::Composite)
      std::tie(mu, cov) = covariance_composite(rows.reshape({1, -1, b}), eps);
    else
      std::tie(mu, cov) = ops::rows_covariance(rows, eps);
    mu = mu.reshape({1, b});
    cov = cov.reshape({1, b, b});
    if (sync)
      std::tie(mu, cov) = synchronise_covariance(mu, cov, double(rows.shape()[0]), settings_.eps);
    d = (settings_.path == DeconvPath::Composite ? newton_schulz_composite(cov, settings_.n_iter)
                                                 : ops::newton_schulz(cov, settings_.n_iter))
            .reshape({b, b});
    mu = mu.reshape({b});
    update_running(*running_mean_, mu, settings_.momentum);
    update_running(*running_deconv_, d, settings_.momentum);
  } else {
    mu = running_mean_->detach();
    d = running_deconv_->detach();
  }
  Tensor wf = ops::matmul(weight_->reshape({-1, b}), d);  // (O * in/B, B)
  Tensor correction = ops::sum(ops::matmul(wf, mu.reshape({b, 1})).reshape({out_, in_ / b}), {1});
  Tensor bias = bias_ ? ops::sub(*bias_, correction) : ops::neg(correction);
  return ops::linear(x, wf.reshape({out_, in_}), bias);
}

double Delinear::flops(const Shape&, const Shape&) const {
  return 2.0 * double(in_) * double(out_) + 2.0 * double(in_) * double(block_);
}

double Delinear::per_step_flops() const {
  return newton_schulz_flops(block_, settings_.n_iter) + 2.0 * double(in_) * double(out_ * block_);
}

std::string Delinear::describe() const {
  return std::to_string(in_) + " -> " + std::to_string(out_) + ", block " + std::to_string(block_) +
         ", n_iter " + std::to_string(settings_.n_iter);
}

// ------------------------------------------------------------------------------ ChannelDeconv

ChannelDeconv::ChannelDeconv(int64_t block, const DeconvSettings& s, bool centred)
    : block_(block), settings_(s), centred_(centred) {
  check_deconv_settings("ChannelDeconv", s);
  running_mean_ = &register_buffer("running_mean", Tensor::zeros({block}));
  running_deconv_ = &register_buffer("running_deconv", ops::eye(block));
}

Tensor ChannelDeconv::forward(const Tensor& x_in) {
  ND_CHECK((x_in.dim() == 2 || x_in.dim() == 4) && x_in.shape()[1] >= block_, "ChannelDeconv(",
           block_, ") got input of shape ", shape_str(x_in.shape()),
           "; expected (N, C) or (N, C, H, W) with C >= ", block_);
  const bool flat = x_in.dim() == 2;
  Tensor x = flat ? x_in.reshape({x_in.shape()[0], x_in.shape()[1], 1, 1}) : x_in;
  const int64_t n = x.shape()[0], c_all = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const int64_t b = block_, c = c_all / b * b;
  const int64_t s = settings_.sampling_stride;
  // (c, N, H, W) viewed as B rows: row r is the contiguous chunk of c/B channels r.
  Tensor rows = x.slice(1, 0, c).permute({1, 0, 2, 3}).reshape({b, -1});
  Tensor mu, d;         // (B, 1), (B, B)
  Tensor rows_centred;  // rows - mu, when the statistics already made it
  if (is_training()) {
    const bool subsample = h >= s && w >= s;
    Tensor sampled = subsample ? rows.slice(1, 0, rows.shape()[1], s * s) : rows;
    const int64_t m = sampled.shape()[1];
    // The B x B statistics are small GEMMs over the (sampled) columns; only the
    // Newton-Schulz step differs between the paths.
    mu = ops::mean(sampled, {1}, /*keepdim=*/true);
    Tensor centred = centred_ ? ops::sub(sampled, mu) : sampled;
    // rows - mu is the centred data itself, unless the mean becomes every rank's below.
    if (centred_ && !subsample && !comm::sync_statistics()) rows_centred = centred;
    Tensor cov = ops::affine(ops::matmul(centred, centred.transpose(0, 1)), 1.0 / double(m), 0.0);
    Tensor cov3;
    if (comm::sync_statistics()) {
      // Every rank's columns together (on feature maps each rank samples its own columns).
      auto [mu_all, cov_all] = synchronise_covariance(mu.reshape({1, b}), cov.reshape({1, b, b}),
                                                      double(m), settings_.eps, centred_);
      mu = mu_all.reshape({b, 1});
      cov3 = cov_all;
    } else {
      cov = ops::add(cov, ops::affine(ops::eye(b, x.dtype(), x.device()), settings_.eps, 0.0));
      cov3 = cov.reshape({1, b, b});
    }
    d = (settings_.path == DeconvPath::Fused ? ops::newton_schulz(cov3, settings_.n_iter)
                                             : newton_schulz_composite(cov3, settings_.n_iter))
            .reshape({b, b});
    if (!initialised_) {
      NoGradGuard no_grad;
      running_mean_->copy_(mu.detach().reshape({b}));
      running_deconv_->copy_(d.detach());
      initialised_ = true;
    } else {
      update_running(*running_mean_, mu, settings_.momentum);
      update_running(*running_deconv_, d, settings_.momentum);
    }
  } else {
    mu = running_mean_->detach().reshape({b, 1});
    d = running_deconv_->detach();
  }
  if (!rows_centred.defined()) rows_centred = ops::sub(rows, mu);
  Tensor whitened = ops::matmul(d, rows_centred).reshape({c, n, h, w}).permute({1, 0, 2, 3});
  Tensor out = whitened;
  if (c < c_all) {
    // Leftover channels: one scalar mean and unbiased variance over all of them (this batch).
    Tensor rest = x.slice(1, c, c_all);
    double count = double(rest.numel());
    Tensor mean = ops::mean(rest);
    Tensor centred = ops::sub(rest, mean);
    Tensor m2 = ops::sum(ops::square(centred));
    if (comm::sync_statistics()) {
      Moments all = all_reduce_moments({mean.reshape({1}), m2.reshape({1}), count}, true);
      count = all.count;
      centred = ops::sub(rest, all.mean.reshape({}));
      m2 = all.m2.reshape({});
    }
    Tensor var = ops::affine(m2, 1.0 / std::max(count - 1.0, 1.0), settings_.eps);
    out = ops::cat({whitened, ops::div(centred, ops::sqrt(var))}, 1);
  }
  return flat ? out.reshape({n, c_all}) : out;
}

void ChannelDeconv::set_extra_state(const std::vector<int64_t>& s) {
  ND_CHECK(s.size() == 1, "ChannelDeconv: bad saved state");
  initialised_ = s[0] != 0;
}

std::string ChannelDeconv::describe() const {
  return "block " + std::to_string(block_) + ", n_iter " + std::to_string(settings_.n_iter) +
         (centred_ ? "" : ", uncentred (reference)");
}

}  // namespace nd
