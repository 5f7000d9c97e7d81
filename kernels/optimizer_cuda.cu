// CUDA optimizer family (see optimizer.h): in-place SGD (momentum, weight decay) and Adam updates
// with PyTorch's semantics, one grid-stride kernel each, float arithmetic. Adam's bias
// corrections are computed once on the host in double and passed in as floats, in the same form
// as the CPU reference (step size lr / (1 - b1^t), denominator sqrt(v) / sqrt(1 - b2^t) + eps).
#include <cmath>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/optimizer.h"

namespace nd::kernels {

namespace {

constexpr int kBlock = 256;

template <bool kMomentum>
__global__ void sgd_kernel(float* __restrict__ p, const float* __restrict__ grad,
                           float* __restrict__ buf, int64_t n, float lr, float momentum, float wd,
                           bool first_step) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float g = grad[i] + wd * p[i];
    if constexpr (kMomentum) {
      g = first_step ? g : momentum * buf[i] + g;
      buf[i] = g;
    }
    p[i] -= lr * g;
  }
}

__global__ void adam_kernel(float* __restrict__ p, const float* __restrict__ grad,
                            float* __restrict__ m, float* __restrict__ v, int64_t n, float beta1,
                            float beta2, float eps, float wd, float step_size, float bc2_sqrt) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = grad[i] + wd * p[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
  }
}

}  // namespace

void sgd_step_cuda(const SgdConfig& c, float* p, const float* grad, float* buf, int64_t n,
                   cudaStream_t s) {
  if (n <= 0) return;
  const int grid = grid_for(n, kBlock);
  const float lr = static_cast<float>(c.lr), mom = static_cast<float>(c.momentum);
  const float wd = static_cast<float>(c.weight_decay);
  if (c.momentum != 0) {
    ND_CHECK(buf != nullptr, "sgd_step_cuda: momentum ", c.momentum, " needs a momentum buffer");
    ND_LAUNCH(grid, kBlock, 0, s, sgd_kernel<true>)(p, grad, buf, n, lr, mom, wd, c.first_step);
  } else {  // momentum 0: the buffer is neither read nor written
    ND_LAUNCH(grid, kBlock, 0, s, sgd_kernel<false>)(p, grad, buf, n, lr, mom, wd, c.first_step);
  }
}

void adam_step_cuda(const AdamConfig& c, float* p, const float* grad, float* m, float* v, int64_t n,
                    cudaStream_t s) {
  if (n <= 0) return;
  ND_CHECK(c.step >= 1, "adam_step_cuda: step is 1-based, got ", c.step);
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(c.step));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(c.step));
  const float step_size = static_cast<float>(c.lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  ND_LAUNCH(grid_for(n, kBlock), kBlock, 0, s, adam_kernel)
  (p, grad, m, v, n, static_cast<float>(c.beta1), static_cast<float>(c.beta2),
   static_cast<float>(c.eps), static_cast<float>(c.weight_decay), step_size, bc2_sqrt);
}

}  // namespace nd::kernels
