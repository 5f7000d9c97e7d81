// CPU reference of the loss family (see loss.h), accumulating in double.
#include <algorithm>
#include <cmath>

#include "kernels/loss.h"

namespace nd::kernels {

namespace {
template <typename T>
double log_sum_exp(const T* z, int64_t k, double* max_out) {
  double m = z[0];
  for (int64_t j = 1; j < k; ++j) m = std::max(m, double(z[j]));
  double s = 0;
  for (int64_t j = 0; j < k; ++j) s += std::exp(double(z[j]) - m);
  *max_out = m;
  return m + std::log(s);
}
}  // namespace

template <typename T>
void loss_forward_cpu(LossKind kind, const T* logits, const int64_t* labels, int64_t n, int64_t k,
                      T* loss) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * k;
    if (kind == LossKind::CrossEntropy) {
      double m;
      total += log_sum_exp(z, k, &m) - double(z[labels[i]]);
    } else {
      double s = 0;
      for (int64_t j = 0; j < k; ++j) {
        const double d = double(z[j]) - (j == labels[i] ? 1.0 : 0.0);
        s += d * d;
      }
      total += 0.5 * s;
    }
  }
  loss[0] = T(n > 0 ? total / double(n) : 0.0);
}

template <typename T>
void loss_backward_cpu(LossKind kind, const T* logits, const int64_t* labels, int64_t n, int64_t k,
                       const T* dloss, T* dlogits) {
  const double scale = double(dloss[0]) / double(n);
  for (int64_t i = 0; i < n; ++i) {
    const T* z = logits + i * k;
    T* dz = dlogits + i * k;
    if (kind == LossKind::CrossEntropy) {
      double m;
      const double lse = log_sum_exp(z, k, &m);
      for (int64_t j = 0; j < k; ++j)
        dz[j] = T(scale * (std::exp(double(z[j]) - lse) - (j == labels[i] ? 1.0 : 0.0)));
    } else {
      for (int64_t j = 0; j < k; ++j)
        dz[j] = T(scale * (double(z[j]) - (j == labels[i] ? 1.0 : 0.0)));
    }
  }
}

#define ND_INSTANTIATE(T)                                                                      \
  template void loss_forward_cpu<T>(LossKind, const T*, const int64_t*, int64_t, int64_t, T*); \
  template void loss_backward_cpu<T>(LossKind, const T*, const int64_t*, int64_t, int64_t,     \
                                     const T*, T*);
ND_INSTANTIATE(float)
ND_INSTANTIATE(double)
#undef ND_INSTANTIATE

}  // namespace nd::kernels
