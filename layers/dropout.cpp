// Dropout layer (see dropout.h).
#include "layers/dropout.h"

#include <sstream>

namespace nd {

Dropout::Dropout(double p, Generator& gen) : p_(p), gen_(gen.next_u64()) {
  ND_CHECK(p >= 0 && p < 1, "Dropout: probability must be in [0, 1), got ", p);
}

Tensor Dropout::forward(const Tensor& x) {
  if (!is_training() || p_ == 0) return x;
  const float keep_scale = float(1.0 / (1.0 - p_));
  std::vector<float> mask(size_t(x.numel()));
  for (float& m : mask) m = gen_.uniform() < p_ ? 0.0f : keep_scale;
  Tensor m = Tensor::from_vector(mask, x.shape()).to(x.dtype()).to(x.device());
  return ops::mul(x, m);
}

std::string Dropout::describe() const {
  std::ostringstream s;
  s << "p " << p_;
  return s.str();
}

}  // namespace nd
