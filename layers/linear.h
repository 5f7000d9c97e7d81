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
  Tensor& weight() { return *weight_; }

 private:
  int64_t in_, out_;
  Tensor* weight_;
  Tensor* bias_ = nullptr;
};

}  // namespace nd
