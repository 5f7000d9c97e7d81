// CPU reference of batch normalisation (see batchnorm.h), statistics in double.
#include <cmath>

#include "kernels/batchnorm.h"

namespace nd::kernels {

template <typename T>
void batch_norm_forward_cpu(const BatchNormShape& sh, bool training, const T* x, const T* gamma,
                            const T* beta, T* running_mean, T* running_var, T* save_mean,
                            T* save_invstd, T* y) {
  const int64_t m = sh.n * sh.s;
  for (int64_t c = 0; c < sh.c; ++c) {
    double mean, var;
    if (training) {
      double sum = 0;
      for (int64_t n = 0; n < sh.n; ++n)
        for (int64_t i = 0; i < sh.s; ++i) sum += x[(n * sh.c + c) * sh.s + i];
      mean = sum / double(m);
      double sq = 0;
      for (int64_t n = 0; n < sh.n; ++n)
        for (int64_t i = 0; i < sh.s; ++i) {
          const double d = x[(n * sh.c + c) * sh.s + i] - mean;
          sq += d * d;
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
    const double g = gamma ? double(gamma[c]) : 1.0, b = beta ? double(beta[c]) : 0.0;
    for (int64_t n = 0; n < sh.n; ++n)
      for (int64_t i = 0; i < sh.s; ++i) {
        const int64_t at = (n * sh.c + c) * sh.s + i;
        y[at] = T((x[at] - mean) * invstd * g + b);
      }
  }
}

template <typename T>
void batch_norm_backward_cpu(const BatchNormShape& sh, bool training, const T* x, const T* gamma,
                             const T* save_mean, const T* save_invstd, const T* dy, T* dx,
                             T* dgamma, T* dbeta) {
  const int64_t m = sh.n * sh.s;
  for (int64_t c = 0; c < sh.c; ++c) {
    const double mean = save_mean[c], invstd = save_invstd[c];
    double sum_dy = 0, sum_dy_xhat = 0;
    for (int64_t n = 0; n < sh.n; ++n)
      for (int64_t i = 0; i < sh.s; ++i) {
        const int64_t at = (n * sh.c + c) * sh.s + i;
        sum_dy += dy[at];
        sum_dy_xhat += dy[at] * (x[at] - mean) * invstd;
      }
    if (dgamma) dgamma[c] = T(sum_dy_xhat);
    if (dbeta) dbeta[c] = T(sum_dy);
    if (!dx) continue;
    const double g = gamma ? double(gamma[c]) : 1.0;
    for (int64_t n = 0; n < sh.n; ++n)
      for (int64_t i = 0; i < sh.s; ++i) {
        const int64_t at = (n * sh.c + c) * sh.s + i;
        if (training) {
          const double xhat = (x[at] - mean) * invstd;
          dx[at] = T(g * invstd / double(m) * (double(m) * dy[at] - sum_dy - xhat * sum_dy_xhat));
        } else {
          dx[at] = T(dy[at] * g * invstd);
        }
      }
  }
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
