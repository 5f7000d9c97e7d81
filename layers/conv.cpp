// Conv2d layer (see conv.h).
#include "layers/conv.h"

#include <cmath>

namespace nd {

Conv2d::Conv2d(int64_t in, int64_t out, int64_t kernel, const ops::Conv2dParams& p, bool bias,
               Generator& gen)
    : in_(in), out_(out), kernel_(kernel), p_(p) {
  ND_CHECK(in > 0 && out > 0 && kernel > 0, "Conv2d(", in, ", ", out, ", kernel ", kernel,
           "): sizes must be positive");
  ND_CHECK(p.groups >= 1 && in % p.groups == 0 && out % p.groups == 0, "Conv2d(", in, ", ", out,
           "): channels not divisible by groups=", p.groups);
  const int64_t fan_in = in / p.groups * kernel * kernel;
  const double bound = 1.0 / std::sqrt(double(fan_in));
  weight_ = &register_parameter(
      "weight", uniform_tensor({out, in / p.groups, kernel, kernel}, -bound, bound, gen));
  if (bias) bias_ = &register_parameter("bias", uniform_tensor({out}, -bound, bound, gen));
}

Tensor Conv2d::forward(const Tensor& x) {
  ND_CHECK(x.dim() == 4 && x.shape()[1] == in_, "Conv2d(", in_, " -> ", out_,
           ") got input of shape ", shape_str(x.shape()), "; expected (N, ", in_, ", H, W)");
  return ops::conv2d(x, *weight_, bias_ ? *bias_ : Tensor(), p_);
}

double conv2d_flops(int64_t in, int64_t kernel, int64_t groups, const Shape& out) {
  return 2.0 * double(out[1]) * double(out[2]) * double(out[3]) * double(in / groups) *
         double(kernel * kernel);
}

double Conv2d::flops(const Shape&, const Shape& out) const {
  return conv2d_flops(in_, kernel_, p_.groups, out);
}

std::string Conv2d::describe() const {
  return std::to_string(in_) + " -> " + std::to_string(out_) + ", " + std::to_string(kernel_) +
         "x" + std::to_string(kernel_) + ", stride " + std::to_string(p_.stride) + ", padding " +
         std::to_string(p_.padding) +
         (p_.groups > 1 ? ", groups " + std::to_string(p_.groups) : "") + (bias_ ? ", bias" : "");
}

}  // namespace nd
