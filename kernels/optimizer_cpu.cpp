// CPU reference of the optimizer family (see optimizer.h for the update rules); elements are
// independent, so threads share them by ranges (cpu_parallel.h).
#include <cmath>

#include "kernels/cpu_parallel.h"
#include "kernels/optimizer.h"

namespace nd::kernels {

template <typename T>
void sgd_step_cpu(const SgdConfig& c, T* p, const T* grad, T* buf, int64_t n) {
  const T lr = T(c.lr), wd = T(c.weight_decay), mom = T(c.momentum);
  parallel_ranges(n, 3, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T g = grad[i] + wd * p[i];
      if (c.momentum != 0) {
        buf[i] = c.first_step ? g : mom * buf[i] + g;
        g = buf[i];
      }
      p[i] -= lr * g;
    }
  });
}

template <typename T>
void adam_step_cpu(const AdamConfig& c, T* p, const T* grad, T* m, T* v, int64_t n) {
  const T b1 = T(c.beta1), b2 = T(c.beta2), wd = T(c.weight_decay), eps = T(c.eps);
  const T bc1 = T(1.0 - std::pow(c.beta1, double(c.step)));
  const T bc2_sqrt = T(std::sqrt(1.0 - std::pow(c.beta2, double(c.step))));
  const T step_size = T(c.lr) / bc1;
  parallel_ranges(n, 4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T g = grad[i] + wd * p[i];
      m[i] = b1 * m[i] + (T(1) - b1) * g;
      v[i] = b2 * v[i] + (T(1) - b2) * g * g;
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
    }
  });
}

template void sgd_step_cpu<float>(const SgdConfig&, float*, const float*, float*, int64_t);
template void sgd_step_cpu<double>(const SgdConfig&, double*, const double*, double*, int64_t);
template void adam_step_cpu<float>(const AdamConfig&, float*, const float*, float*, float*,
                                   int64_t);
template void adam_step_cpu<double>(const AdamConfig&, double*, const double*, double*, double*,
                                    int64_t);

}  // namespace nd::kernels
