// 2-D convolution layer (square kernels; PyTorch's default initialisation and names).
#pragma once
#include "layers/module.h"

namespace nd {

// Multiply-adds x2 per image of a convolution with output shape out (N, O, Ho, Wo).
double conv2d_flops(int64_t in, int64_t kernel, int64_t groups, const Shape& out);

class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, const ops::Conv2dParams& p, bool bias,
         Generator& gen);
  Tensor forward(const Tensor& x) override;  // (N, in, H, W) -> (N, out, Ho, Wo)
  std::string type_name() const override { return "Conv2d"; }
  std::string describe() const override;
  double flops(const Shape& in, const Shape& out) const override;
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int64_t kernel() const { return kernel_; }
  const ops::Conv2dParams& params() const { return p_; }

 private:
  int64_t in_, out_, kernel_;
  ops::Conv2dParams p_;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
};

}  // namespace nd
