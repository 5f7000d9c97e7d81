// Parameter-free layers: activations and flatten.
#pragma once
#include "layers/module.h"

namespace nd {

class Activation : public Module {
 public:
  explicit Activation(kernels::UnaryOp op) : op_(op) {}
  Tensor forward(const Tensor& x) override { return ops::unary(op_, x); }
  std::string type_name() const override;

 private:
  kernels::UnaryOp op_;
};

inline std::shared_ptr<Activation> make_relu() {
  return std::make_shared<Activation>(kernels::UnaryOp::Relu);
}
inline std::shared_ptr<Activation> make_sigmoid() {
  return std::make_shared<Activation>(kernels::UnaryOp::Sigmoid);
}

// Swish / SiLU: x * sigmoid(x) (EfficientNet).
inline std::shared_ptr<Activation> make_swish() {
  return std::make_shared<Activation>(kernels::UnaryOp::Silu);
}

// (N, ...) -> (N, prod(...))
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.flatten(1); }
  std::string type_name() const override { return "Flatten"; }
};

}  // namespace nd
