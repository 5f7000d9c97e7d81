// CUDA loss family (see loss.h): cross entropy (stable log-sum-exp per row) and L2 against the
// one-hot label, both averaged over the batch. The forward is one block that walks the rows a warp
// at a time and reduces the batch in-block, so it needs no temporary buffer and no atomics (the
// result is deterministic); the backward spreads rows over many blocks. dloss is read on the
// device so nothing waits for the host.
#include <cmath>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/loss.h"

namespace nd::kernels {

namespace {

// log(sum_j exp(z_j)) for one row, computed by a whole warp; every lane gets the result.
__device__ __forceinline__ float warp_log_sum_exp(const float* z, int64_t k, int lane) {
  float m = -INFINITY;
  for (int64_t j = lane; j < k; j += 32) m = fmaxf(m, z[j]);
  m = warp_max(m);
  float s = 0.0f;
  for (int64_t j = lane; j < k; j += 32) s += expf(z[j] - m);
  s = warp_sum(s);
  return m + logf(s);
}

// One block; warp w handles rows w, w + warps, ...; lane 0 of each warp keeps its rows' sum.
template <LossKind Kind>
__global__ void loss_forward_kernel(const float* __restrict__ logits,
                                    const int64_t* __restrict__ labels, int64_t n, int64_t k,
                                    float* __restrict__ loss) {
  ND_SHARED(float, warp_totals, [32]);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  float total = 0.0f;
  for (int64_t r = warp; r < n; r += warps) {
    const float* z = logits + r * k;
    const int64_t label = labels[r];
    const bool valid = label >= 0 && label < k;  // engine/ checks; NaN flags a bad label anyway
    float row_loss;
    if constexpr (Kind == LossKind::CrossEntropy) {
      const float lse = warp_log_sum_exp(z, k, lane);
      row_loss = valid ? lse - z[label] : NAN;
    } else {
      float s = 0.0f;
      for (int64_t j = lane; j < k; j += 32) {
        const float d = z[j] - (j == label ? 1.0f : 0.0f);
        s += d * d;
      }
      s = warp_sum(s);  // outside the condition: every lane must join the shuffle
      row_loss = valid ? 0.5f * s : NAN;
    }
    total += row_loss;
  }
  if (lane == 0) warp_totals[warp] = total;
  __syncthreads();
  if (warp == 0) {
    float v = lane < warps ? warp_totals[lane] : 0.0f;
    v = warp_sum(v);
    if (lane == 0) loss[0] = n > 0 ? v / static_cast<float>(n) : 0.0f;
  }
}

// dlogits = dloss / N * (softmax(z) - onehot), one warp per row.
__global__ void cross_entropy_backward_kernel(const float* __restrict__ logits,
                                              const int64_t* __restrict__ labels, int64_t n,
                                              int64_t k, const float* __restrict__ dloss,
                                              float* __restrict__ dlogits) {
  const int lane = threadIdx.x & 31;
  const int warps_per_block = blockDim.x >> 5;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * warps_per_block + (threadIdx.x >> 5);
  const int64_t step = static_cast<int64_t>(gridDim.x) * warps_per_block;
  const float scale = dloss[0] / static_cast<float>(n);
  for (int64_t r = first; r < n; r += step) {  // uniform within the warp
    const float* z = logits + r * k;
    float* dz = dlogits + r * k;
    const int64_t label = labels[r];
    const float lse = warp_log_sum_exp(z, k, lane);
    for (int64_t j = lane; j < k; j += 32) {
      dz[j] = scale * (expf(z[j] - lse) - (j == label ? 1.0f : 0.0f));
    }
  }
}

// dlogits = dloss / N * (z - onehot), elementwise.
__global__ void l2_backward_kernel(const float* __restrict__ logits,
                                   const int64_t* __restrict__ labels, int64_t n, int64_t k,
                                   const float* __restrict__ dloss, float* __restrict__ dlogits) {
  const float scale = dloss[0] / static_cast<float>(n);
  const int64_t total = n * k;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / k, j = i - r * k;
    dlogits[i] = scale * (logits[i] - (j == labels[r] ? 1.0f : 0.0f));
  }
}

}  // namespace

void loss_forward_cuda(LossKind kind, const float* logits, const int64_t* labels, int64_t n,
                       int64_t k, float* loss, cudaStream_t s) {
  ND_CHECK(n >= 0 && k > 0, "loss_forward_cuda: need n >= 0 and k > 0 (n ", n, ", k ", k, ")");
  constexpr int kBlock = 1024;  // 32 warps: one block covers tens of thousands of rows quickly
  switch (kind) {
    case LossKind::CrossEntropy:
      ND_LAUNCH(1, kBlock, 0, s, loss_forward_kernel<LossKind::CrossEntropy>)
      (logits, labels, n, k, loss);
      break;
    case LossKind::L2:
      ND_LAUNCH(1, kBlock, 0, s, loss_forward_kernel<LossKind::L2>)(logits, labels, n, k, loss);
      break;
    default:
      ND_FAIL("loss_forward_cuda: unknown loss kind ", static_cast<int>(kind));
  }
}

void loss_backward_cuda(LossKind kind, const float* logits, const int64_t* labels, int64_t n,
                        int64_t k, const float* dloss, float* dlogits, cudaStream_t s) {
  ND_CHECK(n >= 0 && k > 0, "loss_backward_cuda: need n >= 0 and k > 0 (n ", n, ", k ", k, ")");
  if (n == 0) return;
  constexpr int kBlock = 256;
  switch (kind) {
    case LossKind::CrossEntropy:
      ND_LAUNCH(grid_for(n, kBlock / 32), kBlock, 0, s, cross_entropy_backward_kernel)
      (logits, labels, n, k, dloss, dlogits);
      break;
    case LossKind::L2:
      ND_LAUNCH(grid_for(n * k, kBlock), kBlock, 0, s, l2_backward_kernel)
      (logits, labels, n, k, dloss, dlogits);
      break;
    default:
      ND_FAIL("loss_backward_cuda: unknown loss kind ", static_cast<int>(kind));
  }
}

}  // namespace nd::kernels
