// Batch normalisation family over x viewed as (N, C, S) (S = spatial size, 1 for BatchNorm1d).
// Training: batch mean and biased variance normalise; running_var is updated with the unbiased
// variance, running = (1 - momentum) running + momentum batch (PyTorch). Eval: running stats.
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

struct BatchNormShape {
  int64_t n = 1, c = 1, s = 1;
  double eps = 1e-5, momentum = 0.1;
};

// gamma/beta may be null (affine off). running_mean/running_var may be null (not tracked).
// save_mean/save_invstd (C) receive the statistics used, for the backward.
template <typename T>
void batch_norm_forward_cpu(const BatchNormShape& sh, bool training, const T* x, const T* gamma,
                            const T* beta, T* running_mean, T* running_var, T* save_mean,
                            T* save_invstd, T* y);
// training: gradient through the batch statistics; otherwise the statistics are constants.
// dgamma/dbeta may be null.
template <typename T>
void batch_norm_backward_cpu(const BatchNormShape& sh, bool training, const T* x, const T* gamma,
                             const T* save_mean, const T* save_invstd, const T* dy, T* dx,
                             T* dgamma, T* dbeta);

void batch_norm_forward_cuda(const BatchNormShape& sh, bool training, const float* x,
                             const float* gamma, const float* beta, float* running_mean,
                             float* running_var, float* save_mean, float* save_invstd, float* y,
                             cudaStream_t s);
void batch_norm_backward_cuda(const BatchNormShape& sh, bool training, const float* x,
                              const float* gamma, const float* save_mean, const float* save_invstd,
                              const float* dy, float* dx, float* dgamma, float* dbeta,
                              cudaStream_t s);

}  // namespace nd::kernels
