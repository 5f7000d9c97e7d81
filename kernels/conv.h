// Convolution family: im2col/col2im and 2-D convolution with stride, padding, dilation and groups.
// CPU: im2col + GEMM per image and group (the reference) and oneDNN (the fast path); CUDA:
// im2col/col2im kernels and cuDNN for the convolution itself, with FMA-only math so results track
// the CPU.
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

struct Conv2dShape {
  int64_t n = 1, c = 1, h = 1, w = 1;  // input (N, C, H, W)
  int64_t o = 1;                       // output channels
  int64_t kh = 1, kw = 1;
  int64_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int64_t groups = 1;
  int64_t out_h() const { return (h + 2 * pad_h - dil_h * (kh - 1) - 1) / stride_h + 1; }
  int64_t out_w() const { return (w + 2 * pad_w - dil_w * (kw - 1) - 1) / stride_w + 1; }
};

// One image: x (C, H, W) -> cols (C*kh*kw, out_h*out_w), row index c*kh*kw + ky*kw + kx;
// padded positions read as 0. col2im adds cols back into x (x must be zeroed by the caller).
template <typename T>
void im2col_cpu(const T* x, T* cols, const Conv2dShape& s);
template <typename T>
void col2im_cpu(const T* cols, T* x, const Conv2dShape& s);

// x (N, C, H, W), w (O, C/groups, kh, kw), bias (O) or null, y (N, O, out_h, out_w)
template <typename T>
void conv2d_forward_cpu(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y);
// Any of dx, dw, dbias may be null (not wanted). dx/dw/dbias are overwritten.
template <typename T>
void conv2d_backward_cpu(const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw,
                         T* dbias);

// The fast CPU path (float32): oneDNN, when the build found it (conv2d_onednn_available()); same
// contracts as conv2d_forward_cpu / conv2d_backward_cpu, which stay the reference it is tested
// against. Without oneDNN the calls throw nd::Error.
bool conv2d_onednn_available();
void conv2d_forward_onednn(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                           float* y);
void conv2d_backward_onednn(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                            float* dx, float* dw, float* dbias);

// Batched over N images: x (N, C, H, W) -> cols (N, C*kh*kw, out_h*out_w).
void im2col_cuda(const float* x, float* cols, const Conv2dShape& s, cudaStream_t st);
void col2im_cuda(const float* cols, float* x, const Conv2dShape& s, cudaStream_t st);
void conv2d_forward_cuda(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                         float* y, Scratch& scratch, cudaStream_t st);
void conv2d_backward_cuda(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                          float* dx, float* dw, float* dbias, Scratch& scratch, cudaStream_t st);

}  // namespace nd::kernels
