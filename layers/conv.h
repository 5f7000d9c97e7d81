// 2-D convolution layer (square kernels; PyTorch's default initialisation and names).
#pragma once
#include "layers/module.h"

namespace nd {

class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, const ops::Conv2dParams& p, bool bias,
         Generator& gen);
  Tensor forward(const Tensor& x) override;  // (N, in, H, W) -> (N, out, Ho, Wo)
  std::string type_name() const override { return "Conv2d"; }
  std::string describe() const override;

 private:
  int64_t in_, out_, kernel_;
  ops::Conv2dParams p_;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
};

}  // namespace nd
