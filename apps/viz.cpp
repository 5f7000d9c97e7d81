// The figure computations of nd-viz (see viz.h).
#include "apps/viz.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace nd::viz {

namespace {

void check_signal(const Tensor& x, int64_t kernel, const char* who) {
  ND_CHECK(x.dim() == 4, who, ": expected a signal (N, C, H, W), got shape ", shape_str(x.shape()));
  ND_CHECK(x.dtype() == DType::F32 && x.device().is_cpu(), who,
           ": expected a float32 tensor on the CPU");
  ND_CHECK(kernel >= 1 && kernel % 2 == 1, who, ": the kernel size must be odd, got ", kernel);
  ND_CHECK(kernel <= x.size(2) && kernel <= x.size(3), who, ": a ", kernel, "x", kernel,
           " kernel does not fit the ", x.size(2), "x", x.size(3), " signal");
}

int64_t centre_tap(int64_t kernel) {
  return (kernel / 2) * kernel + kernel / 2;
}

}  // namespace

PatchWhitening whiten_patches(const Tensor& x, int64_t kernel, int64_t iters, double eps) {
  check_signal(x, kernel, "whiten_patches");
  ND_CHECK(iters >= 1, "whiten_patches: at least one Newton-Schulz step, got ", iters);
  NoGradGuard no_grad;
  ops::PatchSampling s;
  s.kernel = kernel, s.padding = 0, s.dilation = 1, s.stride = 1;
  s.block = x.size(1), s.groups = 1;  // the whole patch is one block
  PatchWhitening w;
  w.channels = x.size(1), w.kernel = kernel, w.patches = ops::sampled_count(x.shape(), s).rows;
  ND_CHECK(w.patches > w.nf(), "whiten_patches: ", w.patches, " patches cannot give a full-rank ",
           w.nf(), "x", w.nf(), " covariance; use larger images or a smaller kernel");
  auto [mean, cov] = ops::sampled_covariance(x.contiguous(), s, eps);
  w.mean = mean.reshape({w.nf()});
  w.cov = cov.reshape({w.nf(), w.nf()});
  w.deconv = ops::newton_schulz(cov, iters).reshape({w.nf(), w.nf()});
  return w;
}

Tensor patch_rows(const Tensor& x, int64_t kernel) {
  check_signal(x, kernel, "patch_rows");
  NoGradGuard no_grad;
  const int64_t nf = x.size(1) * kernel * kernel;
  return ops::im2col(x, kernel, kernel, ops::Conv2dParams{})
      .permute({0, 2, 1})
      .reshape({-1, nf})
      .contiguous();
}

Tensor deconvolve_rows(const Tensor& rows, const PatchWhitening& w) {
  ND_CHECK(rows.dim() == 2 && rows.size(1) == w.nf(), "deconvolve_rows: rows of ", w.nf(),
           " features expected, got shape ", shape_str(rows.shape()));
  NoGradGuard no_grad;
  return ops::matmul(ops::sub(rows, w.mean.reshape({1, w.nf()})), w.deconv);
}

Tensor correlation(const Tensor& rows) {
  ND_CHECK(rows.dim() == 2 && rows.size(0) > 1, "correlation: expected rows (R > 1, n), got ",
           shape_str(rows.shape()));
  NoGradGuard no_grad;
  const int64_t n = rows.size(1);
  const std::vector<double> cov =
      ops::rows_covariance(rows.to(DType::F64).contiguous(), 0.0).second.to_vector<double>();
  std::vector<double> corr(size_t(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double scale = std::sqrt(cov[size_t(i * n + i)] * cov[size_t(j * n + j)]);
      corr[size_t(i * n + j)] = i == j ? 1.0 : scale > 0 ? cov[size_t(i * n + j)] / scale : 0.0;
    }
  return Tensor::from_vector(corr, {n, n});
}

Tensor pixelwise_correlation(const Tensor& corr, int64_t channels, int64_t kernel) {
  const int64_t taps = kernel * kernel, n = channels * taps;
  ND_CHECK(corr.dim() == 2 && corr.size(0) == n && corr.size(1) == n,
           "pixelwise_correlation: expected a ", n, "x", n, " matrix");
  const std::vector<double> c = corr.to_vector<double>();
  std::vector<double> out(size_t(taps * taps), 0.0);
  for (int64_t ch = 0; ch < channels; ++ch)
    for (int64_t i = 0; i < taps; ++i)
      for (int64_t j = 0; j < taps; ++j)
        out[size_t(i * taps + j)] +=
            c[size_t((ch * taps + i) * n + ch * taps + j)] / double(channels);
  return Tensor::from_vector(out, {taps, taps});
}

Tensor channelwise_correlation(const Tensor& corr, int64_t channels, int64_t kernel) {
  const int64_t taps = kernel * kernel, n = channels * taps;
  ND_CHECK(corr.dim() == 2 && corr.size(0) == n && corr.size(1) == n,
           "channelwise_correlation: expected a ", n, "x", n, " matrix");
  const std::vector<double> c = corr.to_vector<double>();
  std::vector<double> out(size_t(channels * channels), 0.0);
  for (int64_t a = 0; a < channels; ++a)
    for (int64_t b = 0; b < channels; ++b)
      for (int64_t t = 0; t < taps; ++t)
        out[size_t(a * channels + b)] +=
            c[size_t((a * taps + t) * n + b * taps + t)] / double(taps);
  return Tensor::from_vector(out, {channels, channels});
}

OffDiagonal off_diagonal(const Tensor& corr) {
  const int64_t n = corr.size(0);
  const std::vector<double> c = corr.to_vector<double>();
  OffDiagonal r;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const double a = std::abs(c[size_t(i * n + j)]);
      r.max_abs = std::max(r.max_abs, a);
      r.mean_abs += a;
    }
  if (n > 1) r.mean_abs /= double(n * (n - 1));
  return r;
}

DeconvKernels deconvolution_kernels(const PatchWhitening& w) {
  NoGradGuard no_grad;
  const int64_t c = w.channels, k = w.kernel, nf = w.nf();
  std::vector<float> delta(size_t(c * nf), 0.0f);  // (C, C*k*k): output o copies its centre tap
  for (int64_t o = 0; o < c; ++o) delta[size_t(o * nf + o * k * k + centre_tap(k))] = 1.0f;
  ops::FoldLayout fs;
  fs.outputs = c, fs.features = nf, fs.blocks = 1, fs.groups = 1;
  auto [weight, bias] = ops::fold(Tensor::from_vector(delta, {c, nf}), Tensor(),
                                  w.deconv.reshape({1, nf, nf}), w.mean.reshape({1, nf}), fs);
  return {weight.reshape({c, c, k, k}), bias};
}

Tensor deconvolve_image(const Tensor& x, const PatchWhitening& w) {
  check_signal(x, w.kernel, "deconvolve_image");
  ND_CHECK(x.size(1) == w.channels, "deconvolve_image: the statistics are of ", w.channels,
           " channels, the signal has ", x.size(1));
  NoGradGuard no_grad;
  const DeconvKernels kernels = deconvolution_kernels(w);
  return ops::conv2d(x, kernels.weight, kernels.bias, ops::Conv2dParams{});
}

CentreSurround centre_surround(const Tensor& kernels, int64_t o) {
  ND_CHECK(
      kernels.dim() == 4 && kernels.size(0) == kernels.size(1) && o >= 0 && o < kernels.size(0),
      "centre_surround: expected kernels (C, C, k, k) and 0 <= o < C");
  const int64_t c = kernels.size(1), k = kernels.size(2), taps = k * k;
  ND_CHECK(taps > 1, "centre_surround: a 1x1 kernel has no surround");
  const std::vector<double> v = kernels.to_vector<double>();
  const double* own = v.data() + (o * c + o) * taps;  // kernel o, input channel o
  CentreSurround r;
  r.centre = own[centre_tap(k)];
  for (int64_t t = 0; t < taps; ++t)
    if (t != centre_tap(k)) r.surround += own[t] / double(taps - 1);
  return r;
}

std::vector<double> standardised_values(const Tensor& x) {
  ND_CHECK(x.dim() == 4, "standardised_values: expected (N, C, H, W)");
  const int64_t n = x.size(0), c = x.size(1), plane = x.size(2) * x.size(3);
  std::vector<double> v = x.to_vector<double>();
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < plane; ++p) sum += v[size_t((i * c + ch) * plane + p)];
    const double mean = sum / double(n * plane);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t p = 0; p < plane; ++p) v[size_t((i * c + ch) * plane + p)] -= mean;
  }
  double squares = 0;
  for (double a : v) squares += a * a;
  const double sd = std::sqrt(squares / double(v.size()));
  ND_CHECK(sd > 0, "standardised_values: the signal is constant");
  for (double& a : v) a /= sd;
  return v;
}

double kurtosis(const std::vector<double>& values) {
  ND_CHECK(values.size() > 1, "kurtosis: need at least two values");
  double mean = 0;
  for (double a : values) mean += a / double(values.size());
  double m2 = 0, m4 = 0;
  for (double a : values) {
    const double d2 = (a - mean) * (a - mean);
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 /= double(values.size());
  m4 /= double(values.size());
  ND_CHECK(m2 > 0, "kurtosis: the values are constant");
  return m4 / (m2 * m2);
}

Histogram histogram(const std::vector<double>& values, int64_t bins, double range) {
  ND_CHECK(bins >= 1 && range > 0, "histogram: need bins >= 1 and range > 0");
  Histogram h;
  const double width = 2 * range / double(bins);
  std::vector<int64_t> counts(size_t(bins), 0);
  for (double a : values) {
    const int64_t b = int64_t(std::floor((a + range) / width));
    if (b >= 0 && b < bins) ++counts[size_t(b)];
  }
  for (int64_t b = 0; b < bins; ++b) {
    h.centres.push_back(-range + (double(b) + 0.5) * width);
    h.density.push_back(double(counts[size_t(b)]) / (double(values.size()) * width));
  }
  return h;
}

}  // namespace nd::viz
