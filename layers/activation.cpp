// Names of the activation layers (see activation.h).
#include "layers/activation.h"

namespace nd {

std::string Activation::type_name() const {
  switch (op_) {
    case ops::UnaryOp::Relu:
      return "ReLU";
    case ops::UnaryOp::Sigmoid:
      return "Sigmoid";
    case ops::UnaryOp::Tanh:
      return "Tanh";
    case ops::UnaryOp::Silu:
      return "SiLU";
    default:
      return "Activation";
  }
}

}  // namespace nd
