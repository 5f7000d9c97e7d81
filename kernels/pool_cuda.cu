// CUDA pooling family (see pool.h). Forwards: one thread per output element, grid-stride.
// Backwards: one thread per input pixel that gathers the gradients of every output window covering
// it, in row-major output order (the CPU scatter's order), so no atomics, no memset and
// deterministic results; max pooling's gather reads the saved argmax (an int32 index within the
// plane). Global average pooling (adaptive to 1x1) reduces each (n, c) plane with a group of lanes:
// a power-of-two group of up to 32 lanes (several small planes share a warp, e.g. 16 lanes for 4x4)
// combined by xor shuffles, or a whole block for planes of kBlockPlaneMin pixels or more; its
// backward is a broadcast. Index arithmetic uses 32-bit division whenever the element count allows.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/pool.h"

namespace nd::kernels {

namespace {

constexpr int kBlock = 256;
// Planes at least this large get a block of kBlock threads each in global pooling.
constexpr int kBlockPlaneMin = 2048;

// Plane geometry as ints (the launchers check that a plane has at most INT_MAX pixels).
struct PoolGeom {
  int h, w, oh, ow, kh, kw, sh, sw, ph, pw;
};

PoolGeom geom_of(const Pool2dShape& s) {
  return {static_cast<int>(s.h),        static_cast<int>(s.w),        static_cast<int>(s.out_h()),
          static_cast<int>(s.out_w()),  static_cast<int>(s.kh),       static_cast<int>(s.kw),
          static_cast<int>(s.stride_h), static_cast<int>(s.stride_w), static_cast<int>(s.pad_h),
          static_cast<int>(s.pad_w)};
}

// Outputs along one axis whose window [o*stride - pad, o*stride - pad + k) covers input i:
// [lo, hi] (empty when lo > hi).
__device__ __forceinline__ void covering(int i, int k, int stride, int pad, int out, int& lo,
                                         int& hi) {
  const int t = i + pad;
  lo = t < k ? 0 : (t - k) / stride + 1;
  hi = min(t / stride, out - 1);
}

// ---- max pooling ------------------------------------------------------------------------------

template <typename Idx>
__global__ void max_pool2d_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                          int32_t* __restrict__ argmax, PoolGeom g, int64_t total) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const int ox = static_cast<int>(r % static_cast<Idx>(g.ow));
    r /= static_cast<Idx>(g.ow);
    const int oy = static_cast<int>(r % static_cast<Idx>(g.oh));
    const int64_t nc = static_cast<int64_t>(r / static_cast<Idx>(g.oh));
    const float* plane = x + nc * g.h * g.w;
    const int ys = oy * g.sh - g.ph, xs = ox * g.sw - g.pw;
    const int y0 = max(ys, 0), y1 = min(ys + g.kh, g.h);
    const int x0 = max(xs, 0), x1 = min(xs + g.kw, g.w);
    // Padding never wins; strict > keeps the first maximum; NaN wins (as on the CPU).
    float best = -INFINITY;
    int best_i = y0 * g.w + x0;
    for (int iy = y0; iy < y1; ++iy)
      for (int ix = x0; ix < x1; ++ix) {
        const float v = plane[iy * g.w + ix];
        if (v > best || isnan(v)) {
          best = v;
          best_i = iy * g.w + ix;
        }
      }
    y[t] = best;
    if (argmax) argmax[t] = best_i;
  }
}

template <typename Idx>
__global__ void max_pool2d_backward_kernel(const float* __restrict__ dy,
                                           const int32_t* __restrict__ argmax,
                                           float* __restrict__ dx, PoolGeom g, int64_t total) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const int ix = static_cast<int>(r % static_cast<Idx>(g.w));
    r /= static_cast<Idx>(g.w);
    const int iy = static_cast<int>(r % static_cast<Idx>(g.h));
    const int64_t nc = static_cast<int64_t>(r / static_cast<Idx>(g.h));
    int oy0, oy1, ox0, ox1;
    covering(iy, g.kh, g.sh, g.ph, g.oh, oy0, oy1);
    covering(ix, g.kw, g.sw, g.pw, g.ow, ox0, ox1);
    const int me = iy * g.w + ix;
    const int64_t base = nc * g.oh * g.ow;
    float acc = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy)
      for (int ox = ox0; ox <= ox1; ++ox) {
        const int64_t o = base + oy * g.ow + ox;
        if (argmax[o] == me) acc += dy[o];
      }
    dx[t] = acc;
  }
}

// ---- average pooling (count_include_pad: always divide by kh * kw)
// -------------------------------

template <typename Idx>
__global__ void avg_pool2d_forward_kernel(const float* __restrict__ x, float* __restrict__ y,
                                          PoolGeom g, int64_t total) {
  const float area = static_cast<float>(g.kh) * static_cast<float>(g.kw);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const int ox = static_cast<int>(r % static_cast<Idx>(g.ow));
    r /= static_cast<Idx>(g.ow);
    const int oy = static_cast<int>(r % static_cast<Idx>(g.oh));
    const int64_t nc = static_cast<int64_t>(r / static_cast<Idx>(g.oh));
    const float* plane = x + nc * g.h * g.w;
    const int ys = oy * g.sh - g.ph, xs = ox * g.sw - g.pw;
    const int y0 = max(ys, 0), y1 = min(ys + g.kh, g.h);
    const int x0 = max(xs, 0), x1 = min(xs + g.kw, g.w);
    float acc = 0.0f;
    for (int iy = y0; iy < y1; ++iy)
      for (int ix = x0; ix < x1; ++ix) acc += plane[iy * g.w + ix];
    y[t] = acc / area;
  }
}

template <typename Idx>
__global__ void avg_pool2d_backward_kernel(const float* __restrict__ dy, float* __restrict__ dx,
                                           PoolGeom g, int64_t total) {
  const float area = static_cast<float>(g.kh) * static_cast<float>(g.kw);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const int ix = static_cast<int>(r % static_cast<Idx>(g.w));
    r /= static_cast<Idx>(g.w);
    const int iy = static_cast<int>(r % static_cast<Idx>(g.h));
    const int64_t nc = static_cast<int64_t>(r / static_cast<Idx>(g.h));
    int oy0, oy1, ox0, ox1;
    covering(iy, g.kh, g.sh, g.ph, g.oh, oy0, oy1);
    covering(ix, g.kw, g.sw, g.pw, g.ow, ox0, ox1);
    const float* dyp = dy + nc * g.oh * g.ow;
    float acc = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy)
      for (int ox = ox0; ox <= ox1; ++ox) acc += dyp[oy * g.ow + ox] / area;
    dx[t] = acc;
  }
}

// ---- adaptive average pooling -----------------------------------------------------------------

struct AdaptiveGeom {
  int h, w, oh, ow;
};

template <typename Idx>
__global__ void adaptive_avg_pool2d_forward_kernel(const float* __restrict__ x,
                                                   float* __restrict__ y, AdaptiveGeom g,
                                                   int64_t total) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const int ox = static_cast<int>(r % static_cast<Idx>(g.ow));
    r /= static_cast<Idx>(g.ow);
    const int oy = static_cast<int>(r % static_cast<Idx>(g.oh));
    const int64_t nc = static_cast<int64_t>(r / static_cast<Idx>(g.oh));
    const float* plane = x + nc * g.h * g.w;
    const int y0 = static_cast<int>(pool_bin_start(oy, g.h, g.oh));
    const int y1 = static_cast<int>(pool_bin_end(oy, g.h, g.oh));
    const int x0 = static_cast<int>(pool_bin_start(ox, g.w, g.ow));
    const int x1 = static_cast<int>(pool_bin_end(ox, g.w, g.ow));
    float acc = 0.0f;
    for (int iy = y0; iy < y1; ++iy)
      for (int ix = x0; ix < x1; ++ix) acc += plane[iy * g.w + ix];
    y[t] = acc / static_cast<float>((y1 - y0) * (x1 - x0));
  }
}

// Bins along one axis that contain input i: candidates [floor(i*out/size),
// ceil((i+1)*out/size) - 1], each confirmed against its exact bounds by the caller.
__device__ __forceinline__ void bins_covering(int i, int size, int out, int& lo, int& hi) {
  lo = static_cast<int>(static_cast<int64_t>(i) * out / size);
  hi = min(static_cast<int>(((static_cast<int64_t>(i) + 1) * out + size - 1) / size) - 1, out - 1);
}

template <typename Idx>
__global__ void adaptive_avg_pool2d_backward_kernel(const float* __restrict__ dy,
                                                    float* __restrict__ dx, AdaptiveGeom g,
                                                    int64_t total) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const int ix = static_cast<int>(r % static_cast<Idx>(g.w));
    r /= static_cast<Idx>(g.w);
    const int iy = static_cast<int>(r % static_cast<Idx>(g.h));
    const int64_t nc = static_cast<int64_t>(r / static_cast<Idx>(g.h));
    int oy0, oy1, ox0, ox1;
    bins_covering(iy, g.h, g.oh, oy0, oy1);
    bins_covering(ix, g.w, g.ow, ox0, ox1);
    const float* dyp = dy + nc * g.oh * g.ow;
    float acc = 0.0f;
    for (int oy = oy0; oy <= oy1; ++oy) {
      const int y0 = static_cast<int>(pool_bin_start(oy, g.h, g.oh));
      const int y1 = static_cast<int>(pool_bin_end(oy, g.h, g.oh));
      if (iy < y0 || iy >= y1) continue;
      for (int ox = ox0; ox <= ox1; ++ox) {
        const int x0 = static_cast<int>(pool_bin_start(ox, g.w, g.ow));
        const int x1 = static_cast<int>(pool_bin_end(ox, g.w, g.ow));
        if (ix < x0 || ix >= x1) continue;
        acc += dyp[oy * g.ow + ox] / static_cast<float>((y1 - y0) * (x1 - x0));
      }
    }
    dx[t] = acc;
  }
}

// Global average pooling, small planes: each warp owns 32 / group planes per step, `group` lanes
// (a power of two <= 32) per plane. The loop bound is the same for every lane of a warp, so the
// full-mask shuffles always see the whole warp; xor offsets below `group` stay inside a group.
__global__ void global_avg_pool_group_kernel(const float* __restrict__ x, float* __restrict__ y,
                                             int64_t planes, int hw, int group) {
  const int lane = threadIdx.x & 31;
  const int per_warp = 32 / group;
  const int sub = lane / group, gl = lane & (group - 1);
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t base = warp * per_warp; base < planes; base += warps * per_warp) {
    const int64_t p = base + sub;
    float acc = 0.0f;
    if (p < planes) {
      const float* src = x + p * hw;
      for (int i = gl; i < hw; i += group) acc += src[i];
    }
    for (int offset = group >> 1; offset > 0; offset >>= 1)
      acc += __shfl_xor_sync(kFullMask, acc, offset);
    if (gl == 0 && p < planes) y[p] = acc / static_cast<float>(hw);
  }
}

// Global average pooling, large planes: one block per plane (grid-stride over planes), four
// independent partial sums per thread, then block_sum.
__global__ void global_avg_pool_block_kernel(const float* __restrict__ x, float* __restrict__ y,
                                             int64_t planes, int hw) {
  ND_SHARED(float, scratch, [32]);
  const int stride = blockDim.x;
  for (int64_t p = blockIdx.x; p < planes; p += gridDim.x) {
    const float* src = x + p * hw;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int i = threadIdx.x;
    for (; i + 3 * stride < hw; i += 4 * stride) {
      a0 += src[i];
      a1 += src[i + stride];
      a2 += src[i + 2 * stride];
      a3 += src[i + 3 * stride];
    }
    for (; i < hw; i += stride) a0 += src[i];
    const float total = block_sum((a0 + a1) + (a2 + a3), scratch);
    if (threadIdx.x == 0) y[p] = total / static_cast<float>(hw);
  }
}

// Backward of global pooling: dx (planes, hw) = dy (planes) / hw.
template <typename Idx>
__global__ void global_avg_pool_backward_kernel(const float* __restrict__ dy,
                                                float* __restrict__ dx, int hw, int64_t total) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t p = static_cast<int64_t>(static_cast<Idx>(t) / static_cast<Idx>(hw));
    dx[t] = dy[p] / static_cast<float>(hw);
  }
}

// ---- launch helpers ---------------------------------------------------------------------------

void check_shape(const Pool2dShape& s, const char* who) {
  ND_CHECK(s.n >= 0 && s.c >= 0 && s.h > 0 && s.w > 0 && s.kh > 0 && s.kw > 0, who,
           ": bad shape (n ", s.n, ", c ", s.c, ", h ", s.h, ", w ", s.w, ", kh ", s.kh, ", kw ",
           s.kw, ")");
  ND_CHECK(s.stride_h > 0 && s.stride_w > 0 && s.pad_h >= 0 && s.pad_w >= 0 &&
               2 * s.pad_h <= s.kh && 2 * s.pad_w <= s.kw,
           who, ": stride must be positive and padding in [0, kernel/2]");
  ND_CHECK(s.out_h() > 0 && s.out_w() > 0, who, ": the ", s.kh, "x", s.kw,
           " window does not fit the padded ", s.h, "x", s.w, " input");
  ND_CHECK(s.h * s.w <= INT_MAX, who, ": a plane of ", s.h, "x", s.w,
           " pixels exceeds the int32 index range");
}

void check_shape(const AdaptivePool2dShape& s, const char* who) {
  ND_CHECK(s.n >= 0 && s.c >= 0 && s.h > 0 && s.w > 0 && s.out_h > 0 && s.out_w > 0, who,
           ": bad shape (n ", s.n, ", c ", s.c, ", h ", s.h, ", w ", s.w, ", out ", s.out_h, "x",
           s.out_w, ")");
  ND_CHECK(s.h * s.w <= INT_MAX && s.out_h * s.out_w <= INT_MAX, who, ": a plane of ", s.h, "x",
           s.w, " -> ", s.out_h, "x", s.out_w, " exceeds the int32 index range");
}

// Launches kernel<int32_t> when every flat index fits in int (cheaper division), else <int64_t>.
template <typename K32, typename K64, typename... Args>
void launch_flat(K32 kernel32, K64 kernel64, int64_t total, cudaStream_t st, Args... args) {
  if (total == 0) return;
  if (total <= INT_MAX)
    ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, st, kernel32)(args..., total);
  else
    ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, st, kernel64)(args..., total);
}

}  // namespace

void max_pool2d_forward_cuda(const Pool2dShape& s, const float* x, float* y, int32_t* argmax,
                             cudaStream_t st) {
  check_shape(s, "max_pool2d_forward_cuda");
  launch_flat(&max_pool2d_forward_kernel<int32_t>, &max_pool2d_forward_kernel<int64_t>,
              s.n * s.c * s.out_h() * s.out_w(), st, x, y, argmax, geom_of(s));
}

void max_pool2d_backward_cuda(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                              float* dx, cudaStream_t st) {
  check_shape(s, "max_pool2d_backward_cuda");
  launch_flat(&max_pool2d_backward_kernel<int32_t>, &max_pool2d_backward_kernel<int64_t>,
              s.n * s.c * s.h * s.w, st, dy, argmax, dx, geom_of(s));
}

void avg_pool2d_forward_cuda(const Pool2dShape& s, const float* x, float* y, cudaStream_t st) {
  check_shape(s, "avg_pool2d_forward_cuda");
  launch_flat(&avg_pool2d_forward_kernel<int32_t>, &avg_pool2d_forward_kernel<int64_t>,
              s.n * s.c * s.out_h() * s.out_w(), st, x, y, geom_of(s));
}

void avg_pool2d_backward_cuda(const Pool2dShape& s, const float* dy, float* dx, cudaStream_t st) {
  check_shape(s, "avg_pool2d_backward_cuda");
  launch_flat(&avg_pool2d_backward_kernel<int32_t>, &avg_pool2d_backward_kernel<int64_t>,
              s.n * s.c * s.h * s.w, st, dy, dx, geom_of(s));
}

void adaptive_avg_pool2d_forward_cuda(const AdaptivePool2dShape& s, const float* x, float* y,
                                      cudaStream_t st) {
  check_shape(s, "adaptive_avg_pool2d_forward_cuda");
  const int64_t planes = s.n * s.c;
  if (planes == 0) return;
  if (s.out_h == 1 && s.out_w == 1) {  // global average pooling
    const int hw = static_cast<int>(s.h * s.w);
    if (hw >= kBlockPlaneMin) {
      const int blocks = static_cast<int>(std::min<int64_t>(planes, 65535));
      ND_LAUNCH(blocks, kBlock, 0, st, global_avg_pool_block_kernel)(x, y, planes, hw);
    } else {
      int group = 1;
      while (group < hw && group < 32) group <<= 1;
      const int64_t warps = (planes + (32 / group) - 1) / (32 / group);
      ND_LAUNCH(grid_for(warps * 32, kBlock), kBlock, 0, st, global_avg_pool_group_kernel)
      (x, y, planes, hw, group);
    }
    return;
  }
  const AdaptiveGeom g{static_cast<int>(s.h), static_cast<int>(s.w), static_cast<int>(s.out_h),
                       static_cast<int>(s.out_w)};
  launch_flat(&adaptive_avg_pool2d_forward_kernel<int32_t>,
              &adaptive_avg_pool2d_forward_kernel<int64_t>, planes * s.out_h * s.out_w, st, x, y,
              g);
}

void adaptive_avg_pool2d_backward_cuda(const AdaptivePool2dShape& s, const float* dy, float* dx,
                                       cudaStream_t st) {
  check_shape(s, "adaptive_avg_pool2d_backward_cuda");
  const int64_t total = s.n * s.c * s.h * s.w;
  if (s.out_h == 1 && s.out_w == 1) {
    launch_flat(&global_avg_pool_backward_kernel<int32_t>,
                &global_avg_pool_backward_kernel<int64_t>, total, st, dy, dx,
                static_cast<int>(s.h * s.w));
    return;
  }
  const AdaptiveGeom g{static_cast<int>(s.h), static_cast<int>(s.w), static_cast<int>(s.out_h),
                       static_cast<int>(s.out_w)};
  launch_flat(&adaptive_avg_pool2d_backward_kernel<int32_t>,
              &adaptive_avg_pool2d_backward_kernel<int64_t>, total, st, dy, dx, g);
}

}  // namespace nd::kernels
