// Parameter-free layers: activations and flatten.
#pragma once
#include "layers/module.h"

namespace nd {

class Activation : public Module {
 public:
  explicit Activation(ops::UnaryOp op) : op_(op) {}
  Tensor forward(const Tensor& x) override { return ops::unary(op_, x); }
  std::string type_name() const override;

 private:
  ops::UnaryOp op_;
};

inline std::shared_ptr<Activation> make_relu() {
  return std::make_shared<Activation>(ops::UnaryOp::Relu);
}
inline std::shared_ptr<Activation> make_sigmoid() {
  return std::make_shared<Activation>(ops::UnaryOp::Sigmoid);
}

// Swish / SiLU: x * sigmoid(x) (EfficientNet).
inline std::shared_ptr<Activation> make_swish() {
  return std::make_shared<Activation>(ops::UnaryOp::Silu);
}

// (N, ...) -> (N, prod(...))
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.flatten(1); }
  std::string type_name() const override { return "Flatten"; }
};

}  // namespace nd
