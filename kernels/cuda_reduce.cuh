// Warp and block reductions shared by the CUDA kernels. CUDA-only: include it from .cu files,
// never from a header a .cpp file sees. warp_sum and warp_max combine a value over the 32 lanes
// of a warp with an xor butterfly (offsets 16, 8, 4, 2, 1), so every lane gets the same result;
// block_sum adds one value per thread over the whole block (each warp's sum, then warp 0 adds the
// per-warp sums in warp order) and returns it to every thread. The order of the additions depends
// only on the block size, so the results are deterministic.
#pragma once

namespace nd::kernels {

constexpr unsigned kFullMask = 0xffffffffu;  // every lane of the warp takes part in a shuffle

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum of v over the block, returned to every thread; every thread of the block must call it.
// `scratch` holds 32 floats (shared memory) and is free again when this returns.
__device__ inline float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? scratch[lane] : 0.0f;
    t = warp_sum(t);
    if (lane == 0) scratch[0] = t;
  }
  __syncthreads();
  const float total = scratch[0];
  __syncthreads();
  return total;
}

}  // namespace nd::kernels
