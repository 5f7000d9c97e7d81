// Pooling family with PyTorch's semantics: 2-D max pooling (padded positions never win; the first
// maximum in row-major window order wins ties; NaN propagates), 2-D average pooling that divides
// by the full window area including padded zeros (count_include_pad=True), and adaptive average
// pooling with PyTorch's bins (start = floor(i*H/out), end = ceil((i+1)*H/out)); global average
// pooling is the adaptive 1x1 case. No ceil_mode. CPU: plain loops (the reference); CUDA: one
// thread per output for the forwards, one thread per input pixel gathering its gradient for the
// backwards (no atomics, deterministic), and a warp-per-plane reduction for global pooling.
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

struct Pool2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input (N, C, H, W)
  int64_t kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  int64_t out_h() const { return (h + 2 * pad_h - kh) / stride_h + 1; }
  int64_t out_w() const { return (w + 2 * pad_w - kw) / stride_w + 1; }
};

struct AdaptivePool2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input (N, C, H, W)
  int64_t out_h = 1, out_w = 1;
};

// Bin i of `out` bins over `size` input positions covers [pool_bin_start, pool_bin_end).
// constexpr so CUDA kernels can call them too (the build passes --expt-relaxed-constexpr).
constexpr int64_t pool_bin_start(int64_t i, int64_t size, int64_t out) {
  return i * size / out;
}
constexpr int64_t pool_bin_end(int64_t i, int64_t size, int64_t out) {
  return ((i + 1) * size + out - 1) / out;
}

// ---- CPU reference (T = float or double). Backward results are overwritten, not accumulated.

// x (N, C, H, W) -> y (N, C, out_h, out_w); argmax (N, C, out_h, out_w) gets the winner's index
// iy * W + ix within its (H, W) plane, or may be null (inference: no backward to come).
template <typename T>
void max_pool2d_forward_cpu(const Pool2dShape& s, const T* x, T* y, int32_t* argmax);
// dy, argmax (N, C, out_h, out_w) -> dx (N, C, H, W): each dy goes to its argmax, summed where
// overlapping windows share a winner.
template <typename T>
void max_pool2d_backward_cpu(const Pool2dShape& s, const T* dy, const int32_t* argmax, T* dx);

// x (N, C, H, W) -> y (N, C, out_h, out_w): window sum / (kh * kw).
template <typename T>
void avg_pool2d_forward_cpu(const Pool2dShape& s, const T* x, T* y);
// dy (N, C, out_h, out_w) -> dx (N, C, H, W)
template <typename T>
void avg_pool2d_backward_cpu(const Pool2dShape& s, const T* dy, T* dx);

// x (N, C, H, W) -> y (N, C, out_h, out_w): mean over each bin.
template <typename T>
void adaptive_avg_pool2d_forward_cpu(const AdaptivePool2dShape& s, const T* x, T* y);
// dy (N, C, out_h, out_w) -> dx (N, C, H, W)
template <typename T>
void adaptive_avg_pool2d_backward_cpu(const AdaptivePool2dShape& s, const T* dy, T* dx);

// ---- CUDA (float32), same contracts; argmax may be null in the forward. The adaptive pair
// switches to a warp-per-(n, c)-plane reduction (forward) and a broadcast (backward) when the
// output is 1x1.
void max_pool2d_forward_cuda(const Pool2dShape& s, const float* x, float* y, int32_t* argmax,
                             cudaStream_t st);
void max_pool2d_backward_cuda(const Pool2dShape& s, const float* dy, const int32_t* argmax,
                              float* dx, cudaStream_t st);
void avg_pool2d_forward_cuda(const Pool2dShape& s, const float* x, float* y, cudaStream_t st);
void avg_pool2d_backward_cuda(const Pool2dShape& s, const float* dy, float* dx, cudaStream_t st);
void adaptive_avg_pool2d_forward_cuda(const AdaptivePool2dShape& s, const float* x, float* y,
                                      cudaStream_t st);
void adaptive_avg_pool2d_backward_cuda(const AdaptivePool2dShape& s, const float* dy, float* dx,
                                       cudaStream_t st);

}  // namespace nd::kernels
