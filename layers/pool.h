// Pooling layers (parameter-free), thin wrappers over ops::max_pool2d, ops::avg_pool2d and
// ops::adaptive_avg_pool2d with PyTorch's names and defaults (stride = kernel, padding 0,
// count_include_pad=True, no ceil_mode). Settings are checked when the layer is built.
#pragma once
#include "layers/module.h"

namespace nd {

// (N, C, H, W) -> (N, C, Ho, Wo), Ho = (H + 2 * padding - kernel) / stride + 1
class MaxPool2d : public Module {
 public:
  // stride 0 means stride = kernel (PyTorch's default).
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "MaxPool2d"; }
  std::string describe() const override;  // e.g. "3x3, stride 2, padding 1"
  int64_t kernel() const { return kernel_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }

 private:
  int64_t kernel_, stride_, padding_;
};

// (N, C, H, W) -> (N, C, Ho, Wo); each output is its window's sum / (kernel * kernel).
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AvgPool2d"; }
  std::string describe() const override;
  int64_t kernel() const { return kernel_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return padding_; }

 private:
  int64_t kernel_, stride_, padding_;
};

// (N, C, H, W) -> (N, C, out_h, out_w); AdaptiveAvgPool2d(1) is global average pooling.
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(int64_t out) : AdaptiveAvgPool2d(out, out) {}
  AdaptiveAvgPool2d(int64_t out_h, int64_t out_w);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string describe() const override;  // e.g. "output 1x1"
  int64_t out_h() const { return out_h_; }
  int64_t out_w() const { return out_w_; }

 private:
  int64_t out_h_, out_w_;
};

}  // namespace nd
