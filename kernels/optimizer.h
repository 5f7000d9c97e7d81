// Optimizer family: in-place parameter updates with PyTorch's semantics.
// SGD:  g = grad + wd * p;  buf = first ? g : momentum * buf + g;  p -= lr * buf
//       (momentum == 0: p -= lr * g, buf untouched)
// Adam: g = grad + wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//       p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
#pragma once
#include "core/optimizer_config.h"
#include "kernels/common.h"

namespace nd::kernels {

template <typename T>
void sgd_step_cpu(const SgdConfig& c, T* p, const T* grad, T* buf, int64_t n);
template <typename T>
void adam_step_cpu(const AdamConfig& c, T* p, const T* grad, T* m, T* v, int64_t n);

void sgd_step_cuda(const SgdConfig& c, float* p, const float* grad, float* buf, int64_t n,
                   cudaStream_t s);
void adam_step_cuda(const AdamConfig& c, float* p, const float* grad, float* m, float* v, int64_t n,
                    cudaStream_t s);

}  // namespace nd::kernels
