// A seedable random generator with a fixed algorithm (xoshiro256** seeded by splitmix64, normals
// by Box-Muller, permutations by Fisher-Yates) so CPU runs repeat bitwise on every platform,
// and its whole state can be saved in checkpoints.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace nd {

// splitmix64: a stateless 64-bit mix of x (Steele, Lea and Flood's SplittableRandom step, x plus
// the golden gamma, then the finaliser). As a sequence generator the state then advances by the
// gamma; Generator seeds xoshiro that way and the loader derives per-sample seeds with it.
constexpr uint64_t kSplitmix64Gamma = 0x9e3779b97f4a7c15ULL;
inline uint64_t splitmix64(uint64_t x) {
  x += kSplitmix64Gamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next_u64();
  double uniform();  // [0, 1)
  double uniform(double lo, double hi);
  double normal();             // standard normal
  uint64_t below(uint64_t n);  // uniform integer in [0, n)
  std::vector<int64_t> permutation(int64_t n);

  std::array<uint64_t, 4> state() const { return s_; }
  void set_state(const std::array<uint64_t, 4>& s) { s_ = s; }

 private:
  std::array<uint64_t, 4> s_{};
};

// Tensors filled on the host from `gen` (then moved to `device`), so results do not depend on
// the device.
Tensor uniform_tensor(const Shape& shape, double lo, double hi, Generator& gen,
                      DType dtype = DType::F32, Device device = Device::cpu());
Tensor normal_tensor(const Shape& shape, double mean, double stddev, Generator& gen,
                     DType dtype = DType::F32, Device device = Device::cpu());

}  // namespace nd
