// Names of the activation layers (see activation.h).
#include "layers/activation.h"

namespace nd {

std::string Activation::type_name() const {
  switch (op_) {
    case kernels::UnaryOp::Relu:
      return "ReLU";
    case kernels::UnaryOp::Sigmoid:
      return "Sigmoid";
    case kernels::UnaryOp::Tanh:
      return "Tanh";
    case kernels::UnaryOp::Silu:
      return "SiLU";
    default:
      return "Activation";
  }
}

}  // namespace nd
