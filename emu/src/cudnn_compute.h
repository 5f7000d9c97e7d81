// The cuDNN stand-in's arithmetic (emu/src/cudnn_compute.cpp): direct convolution loops on packed
// NCHW float buffers, accumulating in double, written independently of the project's kernels so
// that they check them. Called from the work the API functions queue (emu/src/cudnn.cpp).
#pragma once
#include <cstdint>

namespace nd_emu::dnn {

// One grouped 2-D cross-correlation (or convolution, with flip): x (n, c, h, w), w (k, c / groups,
// r, s), y (n, k, oh, ow).
struct ConvGeometry {
  int64_t n, c, h, w;
  int64_t k, r, s;
  int64_t groups;
  int64_t oh, ow;
  int64_t pad_h, pad_w, stride_h, stride_w, dil_h, dil_w;
  bool flip;  // CUDNN_CONVOLUTION: the filter is applied rotated by 180 degrees
  int64_t c_per_group() const { return c / groups; }
  int64_t k_per_group() const { return k / groups; }
};

// out = alpha * result + beta * out; beta == 0 leaves out unread (NaNs there are overwritten).
struct Blend {
  double alpha = 1.0, beta = 0.0;
};

void conv_forward(const ConvGeometry& g, const float* x, const float* w, float* y, Blend b);
void conv_backward_data(const ConvGeometry& g, const float* w, const float* dy, float* dx, Blend b);
void conv_backward_filter(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                          Blend b);
// db[k] = sum over (n, h, w) of dy (n, k, hw); db is k floats.
void bias_backward(int64_t n, int64_t k, int64_t hw, const float* dy, float* db, Blend b);

// Rounds to TF32 (10 explicit mantissa bits, nearest even), as tensor cores read FP32 operands.
float round_tf32(float v);
void round_tf32(float* p, int64_t count);

}  // namespace nd_emu::dnn
