// Loss family. Both losses average over the batch:
//   cross entropy  = mean_n( logsumexp(z_n) - z_n[label_n] )
//   L2             = mean_n( 0.5 * sum_k (z_nk - onehot(label_n)_k)^2 )
// Backward takes dloss as a pointer (device memory for CUDA) so no host sync is needed.
// Labels must lie in [0, K); engine/ checks them before the call.
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

enum class LossKind { CrossEntropy, L2 };

// logits (N, K), labels (N) -> loss (1)
template <typename T>
void loss_forward_cpu(LossKind kind, const T* logits, const int64_t* labels, int64_t n, int64_t k,
                      T* loss);
// dlogits (N, K) = dloss * d(loss)/d(logits)
template <typename T>
void loss_backward_cpu(LossKind kind, const T* logits, const int64_t* labels, int64_t n, int64_t k,
                       const T* dloss, T* dlogits);

void loss_forward_cuda(LossKind kind, const float* logits, const int64_t* labels, int64_t n,
                       int64_t k, float* loss, cudaStream_t s);
void loss_backward_cuda(LossKind kind, const float* logits, const int64_t* labels, int64_t n,
                        int64_t k, const float* dloss, float* dlogits, cudaStream_t s);

}  // namespace nd::kernels
