// CPU reference of the covariance part of the deconvolution trio (see deconv.h and
// docs/deconvolution.md, "The algorithm", section 1, steps 1-4): the mean and covariance of the
// sampled im2col patches split into interleaved blocks (groups == 1) or per-group chunks
// (groups > 1), the same for plain rows, and the backward of both. Plain loops that accumulate in
// double; the covariance is formed from explicitly centred data (two passes), never as
// Gram/R - mean mean^T.
#include <algorithm>
#include <vector>

#include "kernels/deconv.h"

namespace nd::kernels {

namespace {

// The patch of sampled position p (length C*k*k, column f = c*k*k + ky*k + kx): its values and
// the flat index into x (N, C, H, W) each column was read from, -1 for a padded zero.
template <typename T>
void sampled_patch(const SampledCovShape& s, const T* x, int64_t p, std::vector<double>& val,
                   std::vector<int64_t>& src) {
  const int64_t kk = s.k * s.k;
  if (s.k == 1) {  // NHWC raster row first + p * s * s
    const int64_t i = s.first + p * s.stride * s.stride;
    const int64_t n = i / (s.h * s.w), hw = i % (s.h * s.w);
    for (int64_t c = 0; c < s.c; ++c) {
      src[c] = (n * s.c + c) * s.h * s.w + hw;
      val[c] = static_cast<double>(x[src[c]]);
    }
    return;
  }
  const int64_t oh = s.out_h(), ow = s.out_w();
  const int64_t px = p % ow, py = (p / ow) % oh, n = p / (ow * oh);
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t ky = 0; ky < s.k; ++ky)
      for (int64_t kx = 0; kx < s.k; ++kx) {
        const int64_t f = c * kk + ky * s.k + kx;
        const int64_t iy = py * s.stride - s.pad + ky * s.dil;
        const int64_t ix = px * s.stride - s.pad + kx * s.dil;
        const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
        src[f] = inside ? ((n * s.c + c) * s.h + iy) * s.w + ix : -1;
        val[f] = inside ? static_cast<double>(x[src[f]]) : 0.0;
      }
}

// Patch column of element q of sub-row j of matrix g: groups == 1 interleaves (f % blocks == j,
// position f / blocks); groups > 1 takes the contiguous chunk of matrix g.
struct SubRows {
  int64_t nf, blocks, groups;
  explicit SubRows(const SampledCovShape& s)
      : nf(s.nf()), blocks(s.groups == 1 ? s.c / s.block : 1), groups(s.groups) {}
  int64_t column(int64_t g, int64_t j, int64_t q) const {
    return groups == 1 ? q * blocks + j : g * nf + q;
  }
};

}  // namespace

template <typename T>
void covariance_sampled_forward_cpu(const SampledCovShape& s, double eps, const T* x, T* mean,
                                    T* cov) {
  check_sampled_cov_shape(s, "covariance_sampled_forward_cpu");
  const SubRows sr(s);
  const int64_t nf = sr.nf, m = s.matrices(), positions = s.positions();
  const double rows = static_cast<double>(s.rows());
  std::vector<double> val(static_cast<size_t>(s.c * s.k * s.k));
  std::vector<int64_t> src(val.size());
  // Pass 1: column means.
  std::vector<double> mu(static_cast<size_t>(m * nf), 0.0);
  for (int64_t p = 0; p < positions; ++p) {
    sampled_patch(s, x, p, val, src);
    for (int64_t g = 0; g < m; ++g)
      for (int64_t j = 0; j < sr.blocks; ++j)
        for (int64_t q = 0; q < nf; ++q) mu[g * nf + q] += val[sr.column(g, j, q)];
  }
  for (double& v : mu) v /= rows;
  // Pass 2: upper triangle of Xc^T Xc from the centred sub-rows.
  std::vector<double> acc(static_cast<size_t>(m * nf * nf), 0.0);
  std::vector<double> xc(static_cast<size_t>(nf));
  for (int64_t p = 0; p < positions; ++p) {
    sampled_patch(s, x, p, val, src);
    for (int64_t g = 0; g < m; ++g)
      for (int64_t j = 0; j < sr.blocks; ++j) {
        for (int64_t q = 0; q < nf; ++q) xc[q] = val[sr.column(g, j, q)] - mu[g * nf + q];
        double* a = acc.data() + g * nf * nf;
        for (int64_t i = 0; i < nf; ++i)
          for (int64_t q = i; q < nf; ++q) a[i * nf + q] += xc[i] * xc[q];
      }
  }
  for (int64_t g = 0; g < m; ++g) {
    const double* a = acc.data() + g * nf * nf;
    T* c = cov + g * nf * nf;
    for (int64_t i = 0; i < nf; ++i) {
      mean[g * nf + i] = static_cast<T>(mu[g * nf + i]);
      c[i * nf + i] = static_cast<T>(a[i * nf + i] / rows + eps);
      for (int64_t q = i + 1; q < nf; ++q)
        c[i * nf + q] = c[q * nf + i] = static_cast<T>(a[i * nf + q] / rows);
    }
  }
}

template <typename T>
void covariance_sampled_backward_cpu(const SampledCovShape& s, const T* x, const T* mean,
                                     const T* dmean, const T* dcov, T* dx) {
  check_sampled_cov_shape(s, "covariance_sampled_backward_cpu");
  const SubRows sr(s);
  const int64_t nf = sr.nf, m = s.matrices(), positions = s.positions();
  const double rows = static_cast<double>(s.rows());
  // G = dcov + dcov^T per matrix.
  std::vector<double> gsym(static_cast<size_t>(m * nf * nf));
  for (int64_t g = 0; g < m; ++g)
    for (int64_t i = 0; i < nf; ++i)
      for (int64_t q = 0; q < nf; ++q) {
        const T* d = dcov + g * nf * nf;
        gsym[(g * nf + i) * nf + q] =
            static_cast<double>(d[i * nf + q]) + static_cast<double>(d[q * nf + i]);
      }
  std::vector<double> acc(static_cast<size_t>(s.n * s.c * s.h * s.w), 0.0);
  std::vector<double> val(static_cast<size_t>(s.c * s.k * s.k));
  std::vector<int64_t> src(val.size());
  std::vector<double> xc(static_cast<size_t>(nf)), drow(static_cast<size_t>(nf));
  for (int64_t p = 0; p < positions; ++p) {
    sampled_patch(s, x, p, val, src);
    for (int64_t g = 0; g < m; ++g)
      for (int64_t j = 0; j < sr.blocks; ++j) {
        for (int64_t q = 0; q < nf; ++q)
          xc[q] = val[sr.column(g, j, q)] - static_cast<double>(mean[g * nf + q]);
        // dX row = (dmean + Xc G) / R, summed as rows of G (contiguous and vectorisable).
        const double* gm = gsym.data() + g * nf * nf;
        for (int64_t q = 0; q < nf; ++q)
          drow[q] = dmean ? static_cast<double>(dmean[g * nf + q]) : 0.0;
        for (int64_t i = 0; i < nf; ++i) {
          const double xi = xc[i];
          const double* gi = gm + i * nf;
          for (int64_t q = 0; q < nf; ++q) drow[q] += xi * gi[q];
        }
        for (int64_t q = 0; q < nf; ++q) {
          const int64_t pixel = src[sr.column(g, j, q)];
          if (pixel >= 0) acc[pixel] += drow[q] / rows;  // padded zeros feed no pixel
        }
      }
  }
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<T>(acc[i]);
}

template <typename T>
void covariance_rows_forward_cpu(int64_t rows, int64_t n, double eps, const T* x, T* mean, T* cov) {
  check_cov_rows_shape(rows, n, "covariance_rows_forward_cpu");
  std::vector<double> mu(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t q = 0; q < n; ++q) mu[q] += static_cast<double>(x[r * n + q]);
  for (double& v : mu) v /= static_cast<double>(rows);
  std::vector<double> acc(static_cast<size_t>(n * n), 0.0);
  std::vector<double> xc(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t q = 0; q < n; ++q) xc[q] = static_cast<double>(x[r * n + q]) - mu[q];
    for (int64_t i = 0; i < n; ++i)
      for (int64_t q = i; q < n; ++q) acc[i * n + q] += xc[i] * xc[q];
  }
  for (int64_t i = 0; i < n; ++i) {
    mean[i] = static_cast<T>(mu[i]);
    cov[i * n + i] = static_cast<T>(acc[i * n + i] / static_cast<double>(rows) + eps);
    for (int64_t q = i + 1; q < n; ++q)
      cov[i * n + q] = cov[q * n + i] = static_cast<T>(acc[i * n + q] / static_cast<double>(rows));
  }
}

template <typename T>
void covariance_rows_backward_cpu(int64_t rows, int64_t n, const T* x, const T* mean,
                                  const T* dmean, const T* dcov, T* dx) {
  check_cov_rows_shape(rows, n, "covariance_rows_backward_cpu");
  std::vector<double> gsym(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t q = 0; q < n; ++q)
      gsym[i * n + q] = static_cast<double>(dcov[i * n + q]) + static_cast<double>(dcov[q * n + i]);
  std::vector<double> xc(static_cast<size_t>(n)), drow(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t q = 0; q < n; ++q)
      xc[q] = static_cast<double>(x[r * n + q]) - static_cast<double>(mean[q]);
    for (int64_t q = 0; q < n; ++q) drow[q] = dmean ? static_cast<double>(dmean[q]) : 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const double xi = xc[i];
      const double* gi = gsym.data() + i * n;
      for (int64_t q = 0; q < n; ++q) drow[q] += xi * gi[q];
    }
    for (int64_t q = 0; q < n; ++q)
      dx[r * n + q] = static_cast<T>(drow[q] / static_cast<double>(rows));
  }
}

#define ND_INSTANTIATE(T)                                                                       \
  template void covariance_sampled_forward_cpu<T>(const SampledCovShape&, double, const T*, T*, \
                                                  T*);                                          \
  template void covariance_sampled_backward_cpu<T>(const SampledCovShape&, const T*, const T*,  \
                                                   const T*, const T*, T*);                     \
  template void covariance_rows_forward_cpu<T>(int64_t, int64_t, double, const T*, T*, T*);     \
  template void covariance_rows_backward_cpu<T>(int64_t, int64_t, const T*, const T*, const T*, \
                                                const T*, T*);
ND_INSTANTIATE(float)
ND_INSTANTIATE(double)
#undef ND_INSTANTIATE

}  // namespace nd::kernels
