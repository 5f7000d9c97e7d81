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

std::vector<int64_t> Dropout::extra_state() const {
  std::vector<int64_t> out;
  for (uint64_t w : gen_.state()) out.push_back(int64_t(w));
  return out;
}

void Dropout::set_extra_state(const std::vector<int64_t>& s) {
  ND_CHECK(s.size() == 4, "Dropout: bad saved generator state");
  gen_.set_state({uint64_t(s[0]), uint64_t(s[1]), uint64_t(s[2]), uint64_t(s[3])});
}

std::string Dropout::describe() const {
  std::ostringstream s;
  s << "p " << p_;
  return s.str();
}

}  // namespace nd
