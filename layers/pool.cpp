// Pooling layers (see pool.h): settings checked at construction with PyTorch's rules, forward
// through ops::.
#include "layers/pool.h"

#include <string>

namespace nd {

namespace {

// Resolves stride 0 to the kernel size and checks what ops:: would reject for any input.
int64_t checked_stride(const char* layer, int64_t kernel, int64_t stride, int64_t padding) {
  ND_CHECK(kernel >= 1, layer, "(kernel ", kernel, "): kernel size must be at least 1");
  ND_CHECK(stride >= 0, layer, "(kernel ", kernel, ", stride ", stride,
           "): stride must be at least 1 (or 0 for the kernel size)");
  ND_CHECK(padding >= 0 && 2 * padding <= kernel, layer, "(kernel ", kernel, ", padding ", padding,
           "): padding must be between 0 and half the kernel size (", kernel / 2, ")");
  return stride == 0 ? kernel : stride;
}

std::string window_str(int64_t kernel, int64_t stride, int64_t padding) {
  return std::to_string(kernel) + "x" + std::to_string(kernel) + ", stride " +
         std::to_string(stride) + ", padding " + std::to_string(padding);
}

}  // namespace

MaxPool2d::MaxPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : kernel_(kernel),
      stride_(checked_stride("MaxPool2d", kernel, stride, padding)),
      padding_(padding) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  return ops::max_pool2d(x, kernel_, stride_, padding_);
}

std::string MaxPool2d::describe() const {
  return window_str(kernel_, stride_, padding_);
}

AvgPool2d::AvgPool2d(int64_t kernel, int64_t stride, int64_t padding)
    : kernel_(kernel),
      stride_(checked_stride("AvgPool2d", kernel, stride, padding)),
      padding_(padding) {}

Tensor AvgPool2d::forward(const Tensor& x) {
  return ops::avg_pool2d(x, kernel_, stride_, padding_);
}

std::string AvgPool2d::describe() const {
  return window_str(kernel_, stride_, padding_);
}

AdaptiveAvgPool2d::AdaptiveAvgPool2d(int64_t out_h, int64_t out_w) : out_h_(out_h), out_w_(out_w) {
  ND_CHECK(out_h >= 1 && out_w >= 1, "AdaptiveAvgPool2d(", out_h, ", ", out_w,
           "): output size must be at least 1x1");
}

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) {
  return ops::adaptive_avg_pool2d(x, out_h_, out_w_);
}

std::string AdaptiveAvgPool2d::describe() const {
  return "output " + std::to_string(out_h_) + "x" + std::to_string(out_w_);
}

}  // namespace nd
