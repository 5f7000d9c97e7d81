// CPU reference of batch normalisation (see batchnorm.h). The statistics and the sums of the
// backward accumulate in double (vectorised reductions within a channel's plane); the per-element
// passes apply per-channel coefficients in T. Channels are independent, so threads take whole
// channels (cpu_parallel.h) and the results do not depend on the thread count.
#include <cmath>

#include "kernels/batchnorm.h"
#include "kernels/cpu_parallel.h"

namespace nd::kernels {

namespace {

// Sum of x[i] over the plane of channel c, all images, in double.
template <typename T>
double channel_sum(const BatchNormShape& sh, const T* x, int64_t c) {
  double sum = 0;
  for (int64_t n = 0; n < sh.n; ++n) {
    const T* p = x + (n * sh.c + c) * sh.s;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < sh.s; ++i) sum += double(p[i]);
  }
  return sum;
}

}  // namespace

template <typename T>
void batch_norm_forward_cpu(const BatchNormShape& sh, bool training, const T* x, const T* gamma,
                            const T* beta, T* running_mean, T* running_var, T* save_mean,
                            T* save_invstd, T* y) {
  const int64_t m = sh.n * sh.s;
  parallel_ranges(sh.c, m, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double mean, var;
      if (training) {
        mean = channel_sum(sh, x, c) / double(m);
        double sq = 0;
        for (int64_t n = 0; n < sh.n; ++n) {
          const T* p = x + (n * sh.c + c) * sh.s;
#pragma omp simd reduction(+ : sq)
          for (int64_t i = 0; i < sh.s; ++i) {
            const double d = double(p[i]) - mean;
            sq += d * d;
          }
        }
        var = sq / double(m);
        if (running_mean)
          running_mean[c] = T((1 - sh.momentum) * running_mean[c] + sh.momentum * mean);
        if (running_var) {
          const double unbiased = m > 1 ? var * double(m) / double(m - 1) : var;
          running_var[c] = T((1 - sh.momentum) * running_var[c] + sh.momentum * unbiased);
        }
      } else {
        mean = running_mean[c];
        var = running_var[c];
      }
      const double invstd = 1.0 / std::sqrt(var + sh.eps);
      save_mean[c] = T(mean);
      save_invstd[c] = T(invstd);
      // y = (x - mean) * invstd * g + b = x * scale + shift
      const double g = gamma ? double(gamma[c]) : 1.0, b = beta ? double(beta[c]) : 0.0;
      const T scale = T(invstd * g), shift = T(b - mean * invstd * g);
      for (int64_t n = 0; n < sh.n; ++n) {
        const int64_t at = (n * sh.c + c) * sh.s;
        for (int64_t i = 0; i < sh.s; ++i) y[at + i] = x[at + i] * scale + shift;
      }
    }
  });
}

template <typename T>
void batch_norm_backward_cpu(const BatchNormShape& sh, bool training, const T* x, const T* gamma,
                             const T* save_mean, const T* save_invstd, const T* dy, T* dx,
                             T* dgamma, T* dbeta) {
  const int64_t m = sh.n * sh.s;
  parallel_ranges(sh.c, 2 * m, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const double mean = save_mean[c], invstd = save_invstd[c];
      const T mean_t = save_mean[c];
      double sum_dy = 0, sum_dy_xc = 0;  // sums of dy and of dy * (x - mean)
      for (int64_t n = 0; n < sh.n; ++n) {
        const int64_t at = (n * sh.c + c) * sh.s;
#pragma omp simd reduction(+ : sum_dy, sum_dy_xc)
        for (int64_t i = 0; i < sh.s; ++i) {
          sum_dy += double(dy[at + i]);
          sum_dy_xc += double(dy[at + i]) * (double(x[at + i]) - mean);
        }
      }
      const double sum_dy_xhat = sum_dy_xc * invstd;
      if (dgamma) dgamma[c] = T(sum_dy_xhat);
      if (dbeta) dbeta[c] = T(sum_dy);
      if (!dx) continue;
      // training: dx = g invstd / m (m dy - sum_dy - xhat sum_dy_xhat)
      //              = a dy + b (x - mean) + k;   eval: dx = a dy
      const double g = gamma ? double(gamma[c]) : 1.0;
      const T a = T(g * invstd);
      const T b = T(-g * invstd * invstd * sum_dy_xhat / double(m));
      const T k = T(-g * invstd * sum_dy / double(m));
      for (int64_t n = 0; n < sh.n; ++n) {
        const int64_t at = (n * sh.c + c) * sh.s;
        if (training) {
          for (int64_t i = 0; i < sh.s; ++i)
            dx[at + i] = a * dy[at + i] + b * (x[at + i] - mean_t) + k;
        } else {
          for (int64_t i = 0; i < sh.s; ++i) dx[at + i] = a * dy[at + i];
        }
      }
    }
  });
}

#define ND_INSTANTIATE(T)                                                                   \
  template void batch_norm_forward_cpu<T>(const BatchNormShape&, bool, const T*, const T*,  \
                                          const T*, T*, T*, T*, T*, T*);                    \
  template void batch_norm_backward_cpu<T>(const BatchNormShape&, bool, const T*, const T*, \
                                           const T*, const T*, const T*, T*, T*, T*);
ND_INSTANTIATE(float)
ND_INSTANTIATE(double)
#undef ND_INSTANTIATE

}  // namespace nd::kernels
