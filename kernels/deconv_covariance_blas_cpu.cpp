// The fast CPU path of the deconvolution covariance (same contracts as the double-precision
// reference in deconv_covariance_cpu.cpp, which the tests compare it with). The sampled patches
// are gathered into one matrix X per covariance (R rows of nf), centred, and the covariance is one
// SYRK; the backward is one GEMM dX = (1 dmean^T + Xc (dcov + dcov^T)) / R and a scatter of dX
// onto the input pixels. Arithmetic in T (float or double) with the column means summed in double.
// The loops run on the OpenMP pool; every one splits its work by output (rows of X, images of
// dx, fixed chunks of rows for the means), so results do not depend on the number of threads.
#include <algorithm>
#include <vector>

#include "kernels/cpu_threads.h"
#include "kernels/deconv.h"
#include "kernels/matmul.h"

namespace nd::kernels {

namespace {

// Rows summed per partial column sum: fixed, so the means do not depend on the thread count.
constexpr int64_t kRowsPerChunk = 256;

template <typename T>
T* scratch_array(Scratch& scratch, int64_t count) {
  return static_cast<T*>(scratch.get(size_t(std::max<int64_t>(count, 1)) * sizeof(T)));
}

// Where the gathered matrices keep patch column f of sampled position p: X + base[f] + p * step.
// groups == 1: one (positions * blocks, nf) matrix, row p * blocks + j holding the columns f with
// f % blocks == j (element f / blocks); groups > 1: `groups` (positions, nf) matrices back to back,
// matrix f / nf holding column f at element f % nf.
struct PatchLayout {
  std::vector<int64_t> base;
  int64_t step;
  explicit PatchLayout(const SampledCovShape& s) {
    const int64_t width = s.c * s.k * s.k, nf = s.nf(), positions = s.positions();
    base.resize(size_t(width));
    if (s.groups == 1) {
      const int64_t blocks = s.c / s.block;
      for (int64_t f = 0; f < width; ++f) base[size_t(f)] = (f % blocks) * nf + f / blocks;
      step = width;
    } else {
      for (int64_t f = 0; f < width; ++f) base[size_t(f)] = (f / nf) * positions * nf + f % nf;
      step = nf;
    }
  }
};

// Calls visit(f, pixel) for the patch columns f of sampled position p, pixel being the flat index
// into x (N, C, H, W) or -1 for a padded zero (the conventions of deconv.h).
template <typename Visit>
void for_patch(const SampledCovShape& s, int64_t p, Visit&& visit) {
  if (s.k == 1) {  // NHWC raster row first + p * s * s
    const int64_t i = s.first + p * s.stride * s.stride, hw = s.h * s.w;
    const int64_t n = i / hw, at = i % hw;
    for (int64_t c = 0; c < s.c; ++c) visit(c, (n * s.c + c) * hw + at);
    return;
  }
  const int64_t oh = s.out_h(), ow = s.out_w(), kk = s.k * s.k;
  const int64_t px = p % ow, py = (p / ow) % oh, n = p / (ow * oh);
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t ky = 0; ky < s.k; ++ky) {
      const int64_t iy = py * s.stride - s.pad + ky * s.dil;
      const bool row_inside = iy >= 0 && iy < s.h;
      for (int64_t kx = 0; kx < s.k; ++kx) {
        const int64_t ix = px * s.stride - s.pad + kx * s.dil;
        const bool inside = row_inside && ix >= 0 && ix < s.w;
        visit(c * kk + ky * s.k + kx, inside ? ((n * s.c + c) * s.h + iy) * s.w + ix : -1);
      }
    }
}

// The sampled positions of image n: [first, last). Patches of different images never share a
// pixel, so the backward scatters one image per thread.
std::pair<int64_t, int64_t> image_positions(const SampledCovShape& s, int64_t n) {
  if (s.k > 1) return {n * s.out_h() * s.out_w(), (n + 1) * s.out_h() * s.out_w()};
  const int64_t ss = s.stride * s.stride, hw = s.h * s.w;
  // The first position whose raster row first + p ss is at or after row i.
  const auto first_at_or_after = [&](int64_t i) {
    return i <= s.first ? int64_t(0) : (i - s.first + ss - 1) / ss;
  };
  return {std::min(first_at_or_after(n * hw), s.positions()),
          std::min(first_at_or_after((n + 1) * hw), s.positions())};
}

template <typename T>
void gather_patches(const SampledCovShape& s, const PatchLayout& layout, const T* x, T* xg) {
  const int64_t positions = s.positions();
#pragma omp parallel for schedule(static) if (parallel_worth(positions * layout.step))
  for (int64_t p = 0; p < positions; ++p) {
    T* row = xg + p * layout.step;
    for_patch(s, p, [&](int64_t f, int64_t pixel) {
      row[layout.base[size_t(f)]] = pixel >= 0 ? x[pixel] : T(0);
    });
  }
}

// Column means of `count` (rows, n) matrices stored back to back -> mean (count, n), summed in
// double over fixed chunks of rows and then over the chunks in order.
template <typename T>
void column_means(int64_t count, int64_t rows, int64_t n, const T* x, T* mean) {
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  std::vector<double> partial(size_t(count * chunks * n), 0.0);
#pragma omp parallel for schedule(static) if (parallel_worth(count * rows * n))
  for (int64_t job = 0; job < count * chunks; ++job) {
    const int64_t g = job / chunks, chunk = job % chunks;
    double* acc = partial.data() + job * n;
    const int64_t end = std::min(rows, (chunk + 1) * kRowsPerChunk);
    for (int64_t r = chunk * kRowsPerChunk; r < end; ++r) {
      const T* row = x + (g * rows + r) * n;
      for (int64_t q = 0; q < n; ++q) acc[q] += double(row[q]);
    }
  }
  for (int64_t g = 0; g < count; ++g)
    for (int64_t q = 0; q < n; ++q) {
      double sum = 0;
      for (int64_t chunk = 0; chunk < chunks; ++chunk)
        sum += partial[size_t((g * chunks + chunk) * n + q)];
      mean[g * n + q] = T(sum / double(rows));
    }
}

// x -= mean, row by row, for `count` (rows, n) matrices.
template <typename T>
void centre(int64_t count, int64_t rows, int64_t n, const T* mean, T* x) {
#pragma omp parallel for schedule(static) if (parallel_worth(count * rows * n))
  for (int64_t r = 0; r < count * rows; ++r) {
    const T* mu = mean + (r / rows) * n;
    T* row = x + r * n;
    for (int64_t q = 0; q < n; ++q) row[q] -= mu[q];
  }
}

// cov_g = Xc_g^T Xc_g / rows + eps I for the `count` centred matrices.
template <typename T>
void covariances(int64_t count, int64_t rows, int64_t n, double eps, const T* xc, T* cov) {
  for (int64_t g = 0; g < count; ++g) {
    T* c = cov + g * n * n;
    syrk_cpu<T>(n, rows, 1.0 / double(rows), xc + g * rows * n, n, 0.0, c);
    for (int64_t i = 0; i < n; ++i) c[i * n + i] += T(eps);
  }
}

// dX_g (rows, n) = (1 dmean_g^T + Xc_g (dcov_g + dcov_g^T)) / rows; dmean may be null.
template <typename T>
void centred_backward(int64_t count, int64_t rows, int64_t n, const T* xc, const T* dmean,
                      const T* dcov, T* dxg, Scratch& scratch) {
  T* gsym = scratch_array<T>(scratch, n * n);
  for (int64_t g = 0; g < count; ++g) {
    const T* d = dcov + g * n * n;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t q = 0; q < n; ++q) gsym[i * n + q] = d[i * n + q] + d[q * n + i];
    T* out = dxg + g * rows * n;
    const double inv_rows = 1.0 / double(rows);
#pragma omp parallel for schedule(static) if (parallel_worth(rows * n))
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < n; ++q)
        out[r * n + q] = dmean ? T(dmean[g * n + q] * inv_rows) : T(0);
    GemmShape gs;  // out (rows, n) += Xc (rows, n) G (n, n) / rows
    gs.m = rows, gs.n = n, gs.k = n, gs.lda = n, gs.ldb = n, gs.ldc = n;
    gemm_cpu<T>(gs, inv_rows, xc + g * rows * n, gsym, 1.0, out);
  }
}

}  // namespace

template <typename T>
void covariance_sampled_forward_blas(const SampledCovShape& s, double eps, const T* x, T* mean,
                                     T* cov, Scratch& scratch) {
  check_sampled_cov_shape(s, "covariance_sampled_forward_blas");
  const PatchLayout layout(s);
  const int64_t m = s.matrices(), nf = s.nf(), rows = s.rows();
  T* xg = scratch_array<T>(scratch, m * rows * nf);
  gather_patches(s, layout, x, xg);
  column_means(m, rows, nf, xg, mean);
  centre(m, rows, nf, mean, xg);
  covariances(m, rows, nf, eps, xg, cov);
}

template <typename T>
void covariance_sampled_backward_blas(const SampledCovShape& s, const T* x, const T* mean,
                                      const T* dmean, const T* dcov, T* dx, Scratch& scratch) {
  check_sampled_cov_shape(s, "covariance_sampled_backward_blas");
  const PatchLayout layout(s);
  const int64_t m = s.matrices(), nf = s.nf(), rows = s.rows();
  T* xg = scratch_array<T>(scratch, m * rows * nf);
  T* dxg = scratch_array<T>(scratch, m * rows * nf);
  gather_patches(s, layout, x, xg);
  centre(m, rows, nf, mean, xg);
  centred_backward(m, rows, nf, xg, dmean, dcov, dxg, scratch);
  const int64_t image = s.c * s.h * s.w;
#pragma omp parallel for schedule(static) if (parallel_worth(s.n * image))
  for (int64_t n = 0; n < s.n; ++n) {
    T* dxn = dx + n * image;
    std::fill(dxn, dxn + image, T(0));
    const auto [first, last] = image_positions(s, n);
    for (int64_t p = first; p < last; ++p) {
      const T* row = dxg + p * layout.step;
      for_patch(s, p, [&](int64_t f, int64_t pixel) {
        if (pixel >= 0) dx[pixel] += row[layout.base[size_t(f)]];  // padded zeros feed no pixel
      });
    }
  }
}

template <typename T>
void covariance_rows_forward_blas(int64_t rows, int64_t n, double eps, const T* x, T* mean, T* cov,
                                  Scratch& scratch) {
  check_cov_rows_shape(rows, n, "covariance_rows_forward_blas");
  T* xc = scratch_array<T>(scratch, rows * n);
  std::copy(x, x + rows * n, xc);
  column_means(1, rows, n, xc, mean);
  centre(1, rows, n, mean, xc);
  covariances(1, rows, n, eps, xc, cov);
}

template <typename T>
void covariance_rows_backward_blas(int64_t rows, int64_t n, const T* x, const T* mean,
                                   const T* dmean, const T* dcov, T* dx, Scratch& scratch) {
  check_cov_rows_shape(rows, n, "covariance_rows_backward_blas");
  T* xc = scratch_array<T>(scratch, rows * n);
  std::copy(x, x + rows * n, xc);
  centre(1, rows, n, mean, xc);
  centred_backward(1, rows, n, xc, dmean, dcov, dx, scratch);
}

#define ND_INSTANTIATE(T)                                                                        \
  template void covariance_sampled_forward_blas<T>(const SampledCovShape&, double, const T*, T*, \
                                                   T*, Scratch&);                                \
  template void covariance_sampled_backward_blas<T>(const SampledCovShape&, const T*, const T*,  \
                                                    const T*, const T*, T*, Scratch&);           \
  template void covariance_rows_forward_blas<T>(int64_t, int64_t, double, const T*, T*, T*,      \
                                                Scratch&);                                       \
  template void covariance_rows_backward_blas<T>(int64_t, int64_t, const T*, const T*, const T*, \
                                                 const T*, T*, Scratch&);
ND_INSTANTIATE(float)
ND_INSTANTIATE(double)
#undef ND_INSTANTIATE

}  // namespace nd::kernels
