// CUDA against the CPU reference (float32 on both sides) for the deconvolution covariance
// (kernels/deconv_covariance_cuda.cu): covariance_sampled forward (mean, cov) and backward (dx,
// with and without dmean) over the CPU test's shape table plus large cases (C 64 at 32x32 and
// C 512 at 4x4, batch 128; left out under ND_TEST_SMALL=1), and covariance_rows forward and
// backward, each case in its own SECTION. Inputs are made on the
// host, copied to the device through the engine's tensors, and the kernels are called directly
// with raw pointers, a DeviceScratch and the engine's stream. Built only with CUDA.
#ifdef ND_WITH_CUDA
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/device_scratch.h"
#include "engine/tensor.h"
#include "kernels/cuda_runtime_api.h"
#include "kernels/deconv.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/cuda_cases.h"
#include "test/deconv_cases.h"

namespace {

using nd::Device;
using nd::DType;
using nd::Tensor;
using nd::kernels::SampledCovShape;
using nd::test::CovCase;
using nd::test::describe;
using nd::test::make_shape;

const Device kCuda = Device::cuda(0);

// ---- tolerances
// The CPU reference accumulates in double; the GPU accumulates products in float registers over
// a split of the rows (hundreds to a few thousand terms, s), adds splits in double, and the
// backward uses an FP32 cuBLAS GEMM (no TF32) of length nf (<= 576). A float sum of s terms errs
// by at most s u sum|terms| and typically by sqrt(s) u sum|terms| (u = 2^-24 ~ 6e-8). For a
// covariance entry sum|x_a x_b| / R <= sqrt(cov_aa cov_bb) <= max|cov| (Cauchy-Schwarz), so the
// error is typically sqrt(s) u ~ 3e-6 of max|cov| (worst case s u ~ 2e-4, which needs every
// rounding of a split to fall the same way: not seen with random data). The mean and dx are
// sums of the same kind. Hence 1e-3 relative plus 1e-4 of the result's largest magnitude
// (entries can be near zero through cancellation, so a purely relative bound would be
// meaningless for them): 30x the typical error, while any indexing error (a wrong pixel, a
// dropped block, a missed split) moves entries by O(1) of the scale and fails.
constexpr double kRtol = 1e-3;
constexpr double kAtolScale = 1e-4;

std::vector<float> random_values(int64_t count, uint64_t seed, float lo, float hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& e : v) e = dist(gen);
  return v;
}

// CHECK |got - want| <= kRtol |want| + kAtolScale max|want| element-wise (float vectors).
#define CHECK_CLOSE(got, want, what)                                          \
  CHECK_ALL_CLOSE(nd::test::to_double(got), nd::test::to_double(want), kRtol, \
                  (kAtolScale * nd::test::max_abs(want)), what)

Tensor device_tensor(const std::vector<float>& v) {
  return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}).to(kCuda);
}

Tensor device_nan(int64_t count) {
  return Tensor::full({count}, std::numeric_limits<double>::quiet_NaN(), DType::F32, kCuda);
}

std::vector<float> host(const Tensor& t) {
  return t.to_vector<float>();
}

// Cases beyond the CPU test's table.
const std::vector<CovCase> kExtraCases = {
    // two of the CPU test's unsampled-pixel cases
    {2, 2, 8, 8, 3, 1, 1, 3, 64, 1},
    {2, 2, 8, 8, 3, 0, 1, 3, 64, 1},
    // primes and sizes that are not multiples of the tiles, more rows than one split
    {7, 37, 13, 11, 3, 1, 1, 3, 64, 1},   // B 37 (> C rule), nf 333: 6 x 6 tiles of 64
    {5, 24, 17, 19, 3, 1, 1, 1, 64, 1},   // gcd: B 8, 3 blocks, nf 72, s 1
    {16, 3, 32, 32, 3, 1, 1, 3, 64, 1},   // first layer: nf 27, many splits
    {8, 96, 16, 16, 3, 1, 1, 3, 64, 96},  // depthwise over many groups
    {9, 40, 10, 10, 1, 0, 1, 3, 16, 1},   // k 1, gcd: B 8, nf 8
    // large cases (batch 128: left out under ND_TEST_SMALL=1)
    {128, 64, 32, 32, 3, 1, 1, 3, 64, 1},  // ResNet stage 1: nf 576, R 15488
    {128, 512, 4, 4, 3, 1, 1, 3, 64, 1},   // deep stage: 8 blocks of nf 576
    {128, 512, 4, 4, 1, 0, 1, 3, 64, 1},   // 1x1 on the deep stage
};

// The CPU test's table (test/deconv_cases.h), then the cases above.
std::vector<CovCase> cuda_cases() {
  std::vector<CovCase> cases = nd::test::kCovTableCases;
  cases.insert(cases.end(), kExtraCases.begin(), kExtraCases.end());
  return cases;
}

void compare_sampled(const SampledCovShape& s, uint64_t seed) {
  cudaStream_t st = nd::kernels::cuda_stream(0);
  const double eps = 1e-5;
  const int64_t nf = s.nf(), m = s.matrices();
  const int64_t nx = s.n * s.c * s.h * s.w;
  // Values around 0.5 so centring matters (like post-activation features).
  const std::vector<float> x = random_values(nx, seed, -1.0f, 2.0f);
  const std::vector<float> r1 = random_values(m * nf * nf, seed + 1, -1.0f, 1.0f);
  const std::vector<float> r2 = random_values(m * nf, seed + 2, -1.0f, 1.0f);

  // CPU reference.
  std::vector<float> mean(static_cast<size_t>(m * nf)), cov(static_cast<size_t>(m * nf * nf));
  std::vector<float> dx(static_cast<size_t>(nx)), dx_nomean(static_cast<size_t>(nx));
  nd::kernels::covariance_sampled_forward_cpu<float>(s, eps, x.data(), mean.data(), cov.data());
  nd::kernels::covariance_sampled_backward_cpu<float>(s, x.data(), mean.data(), r2.data(),
                                                      r1.data(), dx.data());
  nd::kernels::covariance_sampled_backward_cpu<float>(s, x.data(), mean.data(), nullptr, r1.data(),
                                                      dx_nomean.data());

  // CUDA; outputs start as NaN so anything left unwritten fails.
  const Tensor xd = device_tensor(x), r1d = device_tensor(r1), r2d = device_tensor(r2);
  const Tensor meand = device_nan(m * nf), covd = device_nan(m * nf * nf);
  const Tensor dxd = device_nan(nx), dxd_nomean = device_nan(nx);
  {
    nd::DeviceScratch scratch(kCuda);
    nd::kernels::covariance_sampled_forward_cuda(s, eps, xd.data<float>(), meand.data<float>(),
                                                 covd.data<float>(), scratch, st);
  }
  {
    nd::DeviceScratch scratch(kCuda);
    nd::kernels::covariance_sampled_backward_cuda(s, xd.data<float>(), meand.data<float>(),
                                                  r2d.data<float>(), r1d.data<float>(),
                                                  dxd.data<float>(), scratch, st);
    nd::kernels::covariance_sampled_backward_cuda(s, xd.data<float>(), meand.data<float>(), nullptr,
                                                  r1d.data<float>(), dxd_nomean.data<float>(),
                                                  scratch, st);
  }
  const std::vector<float> gmean = host(meand), gcov = host(covd);
  CHECK_CLOSE(gmean, mean, "mean");
  CHECK_CLOSE(gcov, cov, "cov");
  bool symmetric = true;
  for (int64_t g = 0; g < m; ++g)
    for (int64_t a = 0; a < nf; ++a)
      for (int64_t b = 0; b < nf; ++b)
        symmetric = symmetric && gcov[(g * nf + a) * nf + b] == gcov[(g * nf + b) * nf + a];
  CHECK(symmetric);
  CHECK_CLOSE(host(dxd), dx, "dx");
  CHECK_CLOSE(host(dxd_nomean), dx_nomean, "dx (dmean null)");
  // Pixels no patch reads are exactly zero on both sides.
  const std::vector<float> gdx = host(dxd);
  int64_t zero_mismatch = 0;
  for (size_t i = 0; i < dx.size(); ++i)
    if ((dx[i] == 0.0f) != (gdx[i] == 0.0f)) ++zero_mismatch;
  CHECK(zero_mismatch == 0);
}

void compare_rows(int64_t rows, int64_t n, uint64_t seed) {
  cudaStream_t st = nd::kernels::cuda_stream(0);
  const double eps = 1e-3;
  const std::vector<float> x = random_values(rows * n, seed, -1.0f, 2.0f);
  const std::vector<float> r1 = random_values(n * n, seed + 1, -1.0f, 1.0f);
  const std::vector<float> r2 = random_values(n, seed + 2, -1.0f, 1.0f);
  std::vector<float> mean(static_cast<size_t>(n)), cov(static_cast<size_t>(n * n));
  std::vector<float> dx(static_cast<size_t>(rows * n)), dx_nomean(dx.size());
  nd::kernels::covariance_rows_forward_cpu<float>(rows, n, eps, x.data(), mean.data(), cov.data());
  nd::kernels::covariance_rows_backward_cpu<float>(rows, n, x.data(), mean.data(), r2.data(),
                                                   r1.data(), dx.data());
  nd::kernels::covariance_rows_backward_cpu<float>(rows, n, x.data(), mean.data(), nullptr,
                                                   r1.data(), dx_nomean.data());
  const Tensor xd = device_tensor(x), r1d = device_tensor(r1), r2d = device_tensor(r2);
  const Tensor meand = device_nan(n), covd = device_nan(n * n);
  const Tensor dxd = device_nan(rows * n), dxd_nomean = device_nan(rows * n);
  {
    nd::DeviceScratch scratch(kCuda);
    nd::kernels::covariance_rows_forward_cuda(rows, n, eps, xd.data<float>(), meand.data<float>(),
                                              covd.data<float>(), scratch, st);
    nd::kernels::covariance_rows_backward_cuda(rows, n, xd.data<float>(), meand.data<float>(),
                                               r2d.data<float>(), r1d.data<float>(),
                                               dxd.data<float>(), scratch, st);
    nd::kernels::covariance_rows_backward_cuda(rows, n, xd.data<float>(), meand.data<float>(),
                                               nullptr, r1d.data<float>(), dxd_nomean.data<float>(),
                                               scratch, st);
  }
  const std::vector<float> gcov = host(covd);
  CHECK_CLOSE(host(meand), mean, "mean");
  CHECK_CLOSE(gcov, cov, "cov");
  bool symmetric = true;
  for (int64_t a = 0; a < n; ++a)
    for (int64_t b = 0; b < n; ++b) symmetric = symmetric && gcov[a * n + b] == gcov[b * n + a];
  CHECK(symmetric);
  CHECK_CLOSE(host(dxd), dx, "dx");
  CHECK_CLOSE(host(dxd_nomean), dx_nomean, "dx (dmean null)");
}

// Each case is its own SECTION (named by its index and parameters, data made inside it from a
// seed of the index), so one failure or exception does not stop the others.
TEST_CASE("covariance_sampled CUDA matches the CPU reference",
          "[cuda][deconv_cov][memcheck][racecheck]") {
  const std::vector<CovCase> cases = cuda_cases();
  for (size_t i = 0; i < cases.size(); ++i) {
    const CovCase& cc = cases[i];
    if (nd::test::left_out_when_small(cc.n * cc.c * cc.h * cc.w, cc.n)) continue;
    const SampledCovShape s = make_shape(cc);
    const std::string name = "case " + std::to_string(i) + ": " + describe(s);
    SECTION(name) {
      INFO(name);
      compare_sampled(s, 7 + 3 * i);
    }
  }
}

TEST_CASE("covariance_rows CUDA matches the CPU reference",
          "[cuda][deconv_cov][memcheck][racecheck]") {
  // {rows, n}: 1, primes, not multiples of 32, Delinear (N*F/B, 512) and ChannelDeconv shapes;
  // the last two (a batch of 128, and 25088 rows) are left out under ND_TEST_SMALL=1.
  std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},   {2, 3},    {7, 5},    {64, 9},
                                                     {13, 32}, {100, 17}, {1000, 33}};
  if (!nd::test::small_sizes_only()) shapes.insert(shapes.end(), {{128, 512}, {25088, 32}});
  for (size_t i = 0; i < shapes.size(); ++i) {
    const auto [rows, n] = shapes[i];
    const std::string name = "rows=" + std::to_string(rows) + " n=" + std::to_string(n);
    SECTION(name) {
      INFO(name);
      compare_rows(rows, n, 300 + 3 * i);
    }
  }
}

}  // namespace
#endif  // ND_WITH_CUDA
