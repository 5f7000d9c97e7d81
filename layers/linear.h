// Linear layer y = x W^T + b with PyTorch's default initialisation (uniform in +-1/sqrt(in)).
#pragma once
#include "layers/module.h"

namespace nd {

class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) override;  // (N, in) -> (N, out)
  std::string type_name() const override { return "Linear"; }
  std::string describe() const override;
  double flops(const Shape&, const Shape&) const override { return 2.0 * double(in_ * out_); }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Tensor& weight() { return *weight_; }

 private:
  int64_t in_, out_;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
};

}  // namespace nd
