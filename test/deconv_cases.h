// Shared by the CPU and CUDA tests of the deconvolution covariance (test/cpu/test_deconv_covariance
// and test/cuda/test_deconv_covariance_cuda): a sampled-covariance case as the layer's arguments,
// the block rule that turns it into a SampledCovShape, its description for failure messages, the
// table of shapes both tests run, and small helpers on host vectors (random values exact in
// float, casts, the largest magnitude). Header-only.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/deconv.h"

namespace nd::test {

// One case: the layer's arguments, with the block resolved as FastDeconv does.
// {n, c, h, w, k, pad, dil, stride, block argument, groups}
struct CovCase {
  int64_t n, c, h, w, k, pad, dil, stride, block_arg, groups;
};

// Block size rule of section 1: start from `block`; B = C if B > C, else gcd(B, C) if B does not
// divide C; groups > 1 overrides it with C / groups.
inline int64_t resolve_block(int64_t c, int64_t block, int64_t groups) {
  if (groups > 1) return c / groups;
  if (block > c) return c;
  if (c % block != 0) return std::gcd(block, c);
  return block;
}

inline nd::kernels::SampledCovShape make_shape(const CovCase& cc) {
  nd::kernels::SampledCovShape s;
  s.n = cc.n, s.c = cc.c, s.h = cc.h, s.w = cc.w, s.k = cc.k, s.pad = cc.pad, s.dil = cc.dil;
  s.stride = cc.stride, s.groups = cc.groups;
  s.block = resolve_block(cc.c, cc.block_arg, cc.groups);
  return s;
}

inline std::string describe(const nd::kernels::SampledCovShape& s) {
  std::ostringstream os;
  os << "N=" << s.n << " C=" << s.c << " H=" << s.h << " W=" << s.w << " k=" << s.k
     << " pad=" << s.pad << " dil=" << s.dil << " s=" << s.stride << " B=" << s.block
     << " groups=" << s.groups << " (nf=" << s.nf() << ", R=" << s.rows() << ")";
  return os.str();
}

// The table of forward shapes: interleaves of 2 and 3 blocks, the gcd rule, k = 1 with sampling
// strides 3 and 6, groups = 2 and depthwise, padding 0/1/2, dilation 2, batch 1, odd sizes.
// {n, c, h, w, k, pad, dil, stride, block argument, groups}
inline const std::vector<CovCase> kCovTableCases = {
    {2, 128, 7, 7, 3, 1, 1, 3, 64, 1},  // interleave of 2 blocks, nf 576
    {2, 96, 7, 9, 3, 1, 1, 3, 64, 1},   // gcd rule: B 32, 3 blocks
    {1, 96, 7, 9, 3, 1, 1, 3, 64, 1},   // batch 1
    {2, 3, 11, 13, 3, 1, 1, 3, 64, 1},  // first layer: B = C = 3, nf 27
    {2, 65, 6, 5, 3, 1, 1, 2, 64, 1},   // gcd 1: 65 blocks of nf 9
    {3, 8, 7, 9, 3, 0, 1, 3, 4, 1},     // pad 0
    {2, 8, 7, 9, 3, 2, 1, 3, 4, 1},     // pad 2
    {2, 6, 9, 8, 3, 2, 2, 2, 2, 1},     // dilation 2
    {2, 4, 6, 7, 3, 1, 1, 1, 2, 1},     // sampling stride 1 (overlapping patches)
    {1, 5, 9, 9, 5, 2, 1, 3, 64, 1},    // k 5
    {2, 16, 7, 9, 1, 0, 1, 3, 8, 1},    // k 1, s 3
    {4, 16, 8, 8, 1, 0, 1, 6, 8, 1},    // k 1, s 6
    {1, 12, 7, 9, 1, 0, 1, 1, 64, 1},   // k 1, s 1, B = C
    {2, 8, 6, 6, 3, 1, 1, 2, 64, 2},    // groups 2
    {2, 12, 7, 5, 1, 0, 1, 3, 64, 3},   // groups 3, k 1
    {2, 6, 7, 9, 3, 1, 1, 3, 64, 6},    // depthwise: nf 9 per channel
    {2, 4, 9, 8, 7, 3, 1, 3, 64, 4},    // depthwise 7x7: nf 49
    {1, 32, 9, 7, 3, 1, 2, 3, 64, 32},  // depthwise, dilation 2, batch 1
};

// Values that are exact in float, with a nonzero mean so centring matters.
inline std::vector<double> random_values(int64_t count, uint64_t seed, double lo, double hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(count));
  for (double& e : v) e = static_cast<double>(static_cast<float>(dist(gen)));
  return v;
}

template <typename T>
std::vector<T> cast_to(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Largest |v| (0 for an empty vector); NaNs are ignored.
template <typename T>
double max_abs(const std::vector<T>& v) {
  double m = 0;
  for (T e : v) m = std::max(m, std::abs(static_cast<double>(e)));
  return m;
}

}  // namespace nd::test
