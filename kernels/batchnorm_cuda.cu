// CUDA batch normalisation (see batchnorm.h) over x viewed as (N, C, S), element (n, c, s) at
// (n * C + c) * S + s. One block per channel (grid-stride over channels): training statistics take
// two passes in float (the mean, then the sum of squared deviations), which avoids the
// cancellation of E[x^2] - E[x]^2; the backward reduces sum(dy) and sum(dy * xhat) per channel the
// same way and then writes dx. Each thread walks its channel's elements with an incrementally
// updated (n, s) pair, so the inner loop has no 64-bit division.
#include <cmath>
#include <cstdint>

#include "kernels/batchnorm.h"
#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"

namespace nd::kernels {

namespace {

// Calls f(offset) for every element of channel c that this thread owns: flat indices
// m = threadIdx.x, threadIdx.x + blockDim.x, ... over the M = N * S elements.
template <typename F>
__device__ __forceinline__ void for_channel(int64_t c, int64_t n_count, int64_t channels,
                                            int64_t spatial, F f) {
  const int64_t step = blockDim.x;
  const int64_t dn = step / spatial, ds = step % spatial;
  int64_t n = threadIdx.x / spatial, s = threadIdx.x % spatial;
  while (n < n_count) {
    f((n * channels + c) * spatial + s);
    n += dn;
    s += ds;
    if (s >= spatial) {
      s -= spatial;
      ++n;
    }
  }
}

// No __restrict__ on x/y (or dy/dx below): callers may normalise in place.
__global__ void batch_norm_forward_kernel(const float* x, const float* __restrict__ gamma,
                                          const float* __restrict__ beta, float* running_mean,
                                          float* running_var, float* __restrict__ save_mean,
                                          float* __restrict__ save_invstd, float* y,
                                          int64_t n_count, int64_t channels, int64_t spatial,
                                          float eps, float momentum, bool training) {
  ND_SHARED(float, scratch, [32]);
  const int64_t m = n_count * spatial;
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    float mean, invstd;
    if (training) {
      float sum = 0.0f;
      for_channel(c, n_count, channels, spatial, [&](int64_t at) { sum += x[at]; });
      mean = block_sum(sum, scratch) / static_cast<float>(m);
      float sq = 0.0f;
      for_channel(c, n_count, channels, spatial, [&](int64_t at) {
        const float d = x[at] - mean;
        sq += d * d;
      });
      const float var = block_sum(sq, scratch) / static_cast<float>(m);
      invstd = 1.0f / sqrtf(var + eps);
      if (threadIdx.x == 0) {
        if (running_mean) {
          running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
        }
        if (running_var) {
          const float unbiased =
              m > 1 ? static_cast<float>(static_cast<double>(var) * m / (m - 1)) : var;
          running_var[c] = (1.0f - momentum) * running_var[c] + momentum * unbiased;
        }
      }
    } else {
      mean = running_mean[c];
      invstd = 1.0f / sqrtf(running_var[c] + eps);
    }
    if (threadIdx.x == 0) {
      save_mean[c] = mean;
      save_invstd[c] = invstd;
    }
    const float scale = invstd * (gamma ? gamma[c] : 1.0f);
    const float shift = beta ? beta[c] : 0.0f;
    for_channel(c, n_count, channels, spatial,
                [&](int64_t at) { y[at] = (x[at] - mean) * scale + shift; });
  }
}

__global__ void batch_norm_backward_kernel(const float* __restrict__ x,
                                           const float* __restrict__ gamma,
                                           const float* __restrict__ save_mean,
                                           const float* __restrict__ save_invstd, const float* dy,
                                           float* dx, float* __restrict__ dgamma,
                                           float* __restrict__ dbeta, int64_t n_count,
                                           int64_t channels, int64_t spatial, bool training) {
  ND_SHARED(float, scratch, [32]);
  const int64_t m = n_count * spatial;
  // Eval mode with no parameter gradients needs no per-channel sums (uniform over the block).
  const bool need_sums = training || dgamma != nullptr || dbeta != nullptr;
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    const float mean = save_mean[c], invstd = save_invstd[c];
    float sum_dy = 0.0f, sum_dy_xhat = 0.0f;  // dbeta_c, dgamma_c
    if (need_sums) {
      float a = 0.0f, b = 0.0f;
      for_channel(c, n_count, channels, spatial, [&](int64_t at) {
        const float g = dy[at];
        a += g;
        b += g * (x[at] - mean) * invstd;
      });
      sum_dy = block_sum(a, scratch);
      sum_dy_xhat = block_sum(b, scratch);
      if (threadIdx.x == 0) {
        if (dgamma) dgamma[c] = sum_dy_xhat;
        if (dbeta) dbeta[c] = sum_dy;
      }
    }
    if (!dx) continue;
    const float k = (gamma ? gamma[c] : 1.0f) * invstd;
    if (training) {
      // dx = gamma * invstd / M * (M dy - sum_dy - xhat sum_dy_xhat), with the 1/M folded in.
      const float mean_dy = sum_dy / static_cast<float>(m);
      const float mean_dy_xhat = sum_dy_xhat / static_cast<float>(m);
      for_channel(c, n_count, channels, spatial, [&](int64_t at) {
        const float xhat = (x[at] - mean) * invstd;
        dx[at] = k * (dy[at] - mean_dy - xhat * mean_dy_xhat);
      });
    } else {
      for_channel(c, n_count, channels, spatial, [&](int64_t at) { dx[at] = dy[at] * k; });
    }
  }
}

// Threads per block: enough for the channel's M elements, at least a warp, at most 512.
int block_for(int64_t m) {
  int b = 32;
  while (b < m && b < 512) b <<= 1;
  return b;
}

void check_shape(const BatchNormShape& sh, const char* who) {
  ND_CHECK(sh.n >= 0 && sh.c >= 0 && sh.s > 0, who, ": bad shape (n ", sh.n, ", c ", sh.c, ", s ",
           sh.s, ")");
}

}  // namespace

void batch_norm_forward_cuda(const BatchNormShape& sh, bool training, const float* x,
                             const float* gamma, const float* beta, float* running_mean,
                             float* running_var, float* save_mean, float* save_invstd, float* y,
                             cudaStream_t s) {
  check_shape(sh, "batch_norm_forward_cuda");
  ND_CHECK(training || (running_mean && running_var),
           "batch_norm_forward_cuda: eval mode needs running_mean and running_var");
  if (sh.c == 0) return;
  const int64_t m = sh.n * sh.s;
  const int block = block_for(m);
  const int grid = grid_for(sh.c, 1);  // one block per channel
  ND_LAUNCH(grid, block, 0, s, batch_norm_forward_kernel)
  (x, gamma, beta, running_mean, running_var, save_mean, save_invstd, y, sh.n, sh.c, sh.s,
   static_cast<float>(sh.eps), static_cast<float>(sh.momentum), training);
}

void batch_norm_backward_cuda(const BatchNormShape& sh, bool training, const float* x,
                              const float* gamma, const float* save_mean, const float* save_invstd,
                              const float* dy, float* dx, float* dgamma, float* dbeta,
                              cudaStream_t s) {
  check_shape(sh, "batch_norm_backward_cuda");
  if (sh.c == 0) return;
  const int64_t m = sh.n * sh.s;
  const int block = block_for(m);
  const int grid = grid_for(sh.c, 1);
  ND_LAUNCH(grid, block, 0, s, batch_norm_backward_kernel)
  (x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta, sh.n, sh.c, sh.s, training);
}

}  // namespace nd::kernels
