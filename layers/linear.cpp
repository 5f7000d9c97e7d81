// Linear layer (see linear.h).
#include "layers/linear.h"

#include <cmath>

namespace nd {

Linear::Linear(int64_t in, int64_t out, bool bias, Generator& gen) : in_(in), out_(out) {
  ND_CHECK(in > 0 && out > 0, "Linear(", in, ", ", out, "): sizes must be positive");
  const double bound = 1.0 / std::sqrt(double(in));
  weight_ = &register_parameter("weight", uniform_tensor({out, in}, -bound, bound, gen));
  if (bias) bias_ = &register_parameter("bias", uniform_tensor({out}, -bound, bound, gen));
}

Tensor Linear::forward(const Tensor& x) {
  ND_CHECK(x.dim() == 2 && x.shape()[1] == in_, "Linear(", in_, " -> ", out_,
           ") got input of shape ", shape_str(x.shape()), "; expected (N, ", in_, ")");
  return ops::linear(x, *weight_, bias_ ? *bias_ : Tensor());
}

std::string Linear::describe() const {
  return std::to_string(in_) + " -> " + std::to_string(out_) + (bias_ ? ", bias" : ", no bias");
}

}  // namespace nd
