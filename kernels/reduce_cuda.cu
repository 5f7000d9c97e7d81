// CUDA reduction family (see reduce.h): sum over the middle axis of (outer, n, inner) and the
// first argmax of each row. The sum accumulates in float: each thread sums a strided slice of n
// with four independent partials, then a shared-memory tree combines the slices, which keeps the
// error far below a single running float sum for n in the millions.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/reduce.h"

namespace nd::kernels {

namespace {

int next_pow2(int64_t v, int cap) {
  int p = 1;
  while (p < v && p < cap) p <<= 1;
  return p;
}

// Block shape (TX, BY, TZ): TX adjacent columns i of one outer index o form a "tile"; BY threads
// split n for each column; TZ tiles share a block when tiles are small. BY is a power of two.
// The warp's threads are consecutive in (tx, ty), so reads along i (or along n when inner == 1)
// are coalesced.
__global__ void sum_axis_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n,
                                int64_t inner, int64_t tiles_per_outer, int64_t tiles) {
  ND_DYNAMIC_SHARED(float, partial);  // [TZ][BY][TX]
  const int tx = threadIdx.x, ty = threadIdx.y, tz = threadIdx.z;
  const int width = blockDim.x, by = blockDim.y, tz_count = blockDim.z;
  float* slab = partial + static_cast<int64_t>(tz) * by * width;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * tz_count; base < tiles;
       base += static_cast<int64_t>(gridDim.x) * tz_count) {
    const int64_t tile = base + tz;
    int64_t o = 0, i = 0;
    bool valid = false;
    float acc = 0.0f;
    if (tile < tiles) {
      o = tile / tiles_per_outer;
      i = (tile - o * tiles_per_outer) * width + tx;
      valid = i < inner;
    }
    if (valid) {
      const float* col = x + o * n * inner + i;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      int64_t j = ty;
      for (; j + 3 * by < n; j += 4 * by) {
        a0 += col[j * inner];
        a1 += col[(j + by) * inner];
        a2 += col[(j + 2 * by) * inner];
        a3 += col[(j + 3 * by) * inner];
      }
      for (; j < n; j += by) a0 += col[j * inner];
      acc = (a0 + a1) + (a2 + a3);
    }
    slab[ty * width + tx] = acc;
    __syncthreads();
    for (int half = by / 2; half > 0; half >>= 1) {
      if (ty < half) slab[ty * width + tx] += slab[(ty + half) * width + tx];
      __syncthreads();
    }
    // No barrier before the next tile: each thread first writes only its own cell, and the last
    // read of another's cell came before the halving loop's last barrier.
    if (valid && ty == 0) y[o * inner + i] = slab[tx];
  }
}

// "a at index ia ranks before b at index ib" for the first maximum with NaN above every number
// (argmax_rows_cpu's rule); an index of `cols` means "nothing seen yet" and ranks last. The rule
// is a total order, so lanes may merge in any order and still agree with the CPU's scan.
__device__ bool ranks_before(float a, int64_t ia, float b, int64_t ib, int64_t cols) {
  if (ia == cols) return false;
  if (ib == cols) return true;
  const bool an = isnan(a), bn = isnan(b);
  if (an != bn) return an;
  if (!an && a != b) return a > b;
  return ia < ib;
}

// One warp per row. Each lane keeps the best of its strided slice; a butterfly merge of
// (value, index) pairs by ranks_before gives the row's first maximum.
__global__ void argmax_rows_kernel(const float* __restrict__ x, int64_t* __restrict__ idx,
                                   int64_t rows, int64_t cols) {
  const int lane = threadIdx.x & 31;
  const int warps_per_block = blockDim.x / 32;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * warps_per_block + threadIdx.x / 32;
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * warps_per_block;
  for (int64_t r = warp; r < rows; r += warp_stride) {  // uniform within the warp
    const float* row = x + r * cols;
    float best = -INFINITY;
    int64_t best_i = cols;
    for (int64_t c = lane; c < cols; c += 32) {
      const float v = row[c];
      if (ranks_before(v, c, best, best_i, cols)) {
        best = v;
        best_i = c;
      }
    }
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other = __shfl_down_sync(kFullMask, best, offset);
      const int64_t other_i = __shfl_down_sync(kFullMask, best_i, offset);
      if (ranks_before(other, other_i, best, best_i, cols)) {
        best = other;
        best_i = other_i;
      }
    }
    if (lane == 0) idx[r] = best_i < cols ? best_i : 0;
  }
}

}  // namespace

void sum_axis_cuda(const float* x, float* y, int64_t outer, int64_t n, int64_t inner,
                   cudaStream_t s) {
  ND_CHECK(outer >= 0 && n >= 0 && inner >= 0, "sum_axis_cuda: negative size (outer ", outer,
           ", n ", n, ", inner ", inner, ")");
  if (outer == 0 || inner == 0) return;
  const int width = inner == 1 ? 1 : next_pow2(inner, 32);
  const int64_t tiles_per_outer = (inner + width - 1) / width;
  const int64_t tiles = outer * tiles_per_outer;
  // Few tiles: give each one a whole 1024-thread block so long sums still spread over many
  // threads; many tiles: smaller blocks, the grid supplies the parallelism.
  const int threads = tiles < 512 ? 1024 : 256;
  const int by = next_pow2(n, threads / width);
  const int tz = std::max(1, std::min(64, 256 / (width * by)));
  const dim3 block(width, by, tz);
  const size_t shared = sizeof(float) * width * by * tz;
  ND_LAUNCH(grid_for(tiles, tz), block, shared, s, sum_axis_kernel)
  (x, y, n, inner, tiles_per_outer, tiles);
}

void argmax_rows_cuda(const float* x, int64_t* idx, int64_t rows, int64_t cols, cudaStream_t s) {
  ND_CHECK(rows >= 0 && cols >= 0, "argmax_rows_cuda: negative size (rows ", rows, ", cols ", cols,
           ")");
  if (rows == 0) return;
  constexpr int kBlock = 256, kWarps = kBlock / 32;
  ND_LAUNCH(grid_for(rows, kWarps), kBlock, 0, s, argmax_rows_kernel)(x, idx, rows, cols);
}

}  // namespace nd::kernels
