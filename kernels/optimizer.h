// Optimizer family: in-place parameter updates with PyTorch's semantics.
// SGD:  g = grad + wd * p;  buf = first ? g : momentum * buf + g;  p -= lr * buf
//       (momentum == 0: p -= lr * g, buf untouched)
// Adam: g = grad + wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//       p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

struct SgdConfig {
  double lr = 0.1, momentum = 0.9, weight_decay = 0;
  bool first_step = false;  // buf = g instead of momentum * buf + g
};
struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  int64_t step = 1;  // 1-based step count for bias correction
};

template <typename T>
void sgd_step_cpu(const SgdConfig& c, T* p, const T* grad, T* buf, int64_t n);
template <typename T>
void adam_step_cpu(const AdamConfig& c, T* p, const T* grad, T* m, T* v, int64_t n);

void sgd_step_cuda(const SgdConfig& c, float* p, const float* grad, float* buf, int64_t n,
                   cudaStream_t s);
void adam_step_cuda(const AdamConfig& c, float* p, const float* grad, float* m, float* v, int64_t n,
                    cudaStream_t s);

}  // namespace nd::kernels
