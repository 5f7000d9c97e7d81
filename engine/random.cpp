// The engine's random generator (see random.h).
#include "engine/random.h"

#include <cmath>

namespace nd {

namespace {
uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}
}  // namespace

void Generator::seed_with(uint64_t seed) {
  uint64_t x = seed;  // the splitmix64 sequence from seed
  for (auto& w : s_) {
    w = splitmix64(x);
    x += kSplitmix64Gamma;
  }
}

uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Generator::uniform() {
  return double(next_u64() >> 11) * 0x1.0p-53;
}

double Generator::uniform(double lo, double hi) {
  return lo + (hi - lo) * uniform();
}

double Generator::normal() {
  // Box-Muller with one value per call keeps the state a plain function of the draw count.
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t Generator::below(uint64_t n) {
  // Rejection sampling: no modulo bias.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t r;
  do r = next_u64();
  while (r >= limit);
  return r % n;
}

std::vector<int64_t> Generator::permutation(int64_t n) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[i], p[below(uint64_t(i + 1))]);
  return p;
}

namespace {
// Draws in double, stored in `dtype` (float: rounded once, as a double tensor converted to
// float). Written in place: ImageNet VGG-11's 103M-element classifier weight would otherwise go
// through two double copies.
template <typename F>
Tensor host_filled(const Shape& shape, DType dtype, Device device, F draw) {
  if (dtype == DType::F32 || dtype == DType::F64) {
    Tensor t = Tensor::empty(shape, dtype);
    const int64_t n = t.numel();
    if (dtype == DType::F32) {
      float* p = t.data<float>();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(draw());
    } else {
      double* p = t.data<double>();
      for (int64_t i = 0; i < n; ++i) p[i] = draw();
    }
    return t.to(device);
  }
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = draw();
  return Tensor::from_vector(v, shape).to(dtype).to(device);
}
}  // namespace

Tensor uniform_tensor(const Shape& shape, double lo, double hi, Generator& gen, DType dtype,
                      Device device) {
  return host_filled(shape, dtype, device, [&] { return gen.uniform(lo, hi); });
}

Tensor normal_tensor(const Shape& shape, double mean, double stddev, Generator& gen, DType dtype,
                     Device device) {
  return host_filled(shape, dtype, device, [&] { return mean + stddev * gen.normal(); });
}

}  // namespace nd
