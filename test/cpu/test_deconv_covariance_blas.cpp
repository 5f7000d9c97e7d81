// The fast CPU covariance on BLAS (kernels/deconv_covariance_blas_cpu.cpp) against the
// double-precision reference loops (deconv_covariance_cpu.cpp), forward (mean, covariance) and
// backward (dx, with and without dmean), over the table of shapes the CUDA tests also run
// (test/deconv_cases.h: interleaved blocks, the gcd rule, k 1 with sampling strides, groups,
// depthwise, padding, dilation, batch 1) and network-sized cases; the same for plain rows. In
// double the two agree to rounding; in float to float rounding of the sums. The fast path repeats
// bitwise, whatever the thread count, and leaves unsampled pixels at exactly zero.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/device_scratch.h"
#include "kernels/cpu_threads.h"
#include "kernels/deconv.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/deconv_cases.h"

namespace {

using nd::kernels::SampledCovShape;
using nd::test::cast_to;
using nd::test::CovCase;
using nd::test::describe;
using nd::test::make_shape;
using nd::test::max_abs;
using nd::test::random_values;
using nd::test::to_double;

struct CovResult {
  std::vector<double> mean, cov, dx;
};

// Forward and backward of one case on the reference (blas false) or the fast path.
template <typename T>
CovResult run_sampled(const SampledCovShape& s, bool blas, const std::vector<double>& x,
                      const std::vector<double>& dcov, const std::vector<double>* dmean) {
  const int64_t m = s.matrices(), nf = s.nf();
  const std::vector<T> xt = cast_to<T>(x), dct = cast_to<T>(dcov);
  const std::vector<T> dmt = dmean ? cast_to<T>(*dmean) : std::vector<T>();
  std::vector<T> mean(size_t(m * nf)), cov(size_t(m * nf * nf));
  std::vector<T> dx(x.size(), std::numeric_limits<T>::quiet_NaN());  // must be overwritten
  const T* dm = dmean ? dmt.data() : nullptr;
  if (blas) {
    nd::DeviceScratch scratch(nd::Device::cpu());
    nd::kernels::covariance_sampled_forward_blas<T>(s, 1e-5, xt.data(), mean.data(), cov.data(),
                                                    scratch);
    nd::kernels::covariance_sampled_backward_blas<T>(s, xt.data(), mean.data(), dm, dct.data(),
                                                     dx.data(), scratch);
  } else {
    nd::kernels::covariance_sampled_forward_cpu<T>(s, 1e-5, xt.data(), mean.data(), cov.data());
    nd::kernels::covariance_sampled_backward_cpu<T>(s, xt.data(), mean.data(), dm, dct.data(),
                                                    dx.data());
  }
  return {to_double(mean), to_double(cov), to_double(dx)};
}

void check_close(const CovResult& got, const CovResult& want, double rtol, double scale,
                 const char* what) {
  CHECK_ALL_CLOSE(got.mean, want.mean, rtol, scale * max_abs(want.mean), what << " mean");
  CHECK_ALL_CLOSE(got.cov, want.cov, rtol, scale * max_abs(want.cov), what << " cov");
  CHECK_ALL_CLOSE(got.dx, want.dx, rtol, scale * max_abs(want.dx), what << " dx");
}

// Network-sized cases on top of the shared table: a ResNet body layer (two blocks of 64, nf 576)
// and a 1x1 shortcut at stride 2 (sampling stride 6).
// {n, c, h, w, k, pad, dil, stride, block argument, groups}
const std::vector<CovCase> kNetworkCases = {
    {4, 128, 8, 8, 3, 1, 1, 3, 64, 1},
    {4, 64, 8, 8, 1, 0, 1, 6, 64, 1},
    {4, 32, 8, 8, 3, 1, 1, 3, 64, 32},  // depthwise (MobileNetV2)
};

}  // namespace

TEST_CASE("covariance_sampled on BLAS equals the reference loops", "[deconv_cov][blas]") {
  uint64_t seed = 2000;
  std::vector<CovCase> cases = nd::test::kCovTableCases;
  cases.insert(cases.end(), kNetworkCases.begin(), kNetworkCases.end());
  for (const CovCase& cc : cases) {
    const SampledCovShape s = make_shape(cc);
    const int64_t m = s.matrices(), nf = s.nf();
    const std::vector<double> x = random_values(s.n * s.c * s.h * s.w, seed, -1.0, 2.0);
    const std::vector<double> dcov = random_values(m * nf * nf, seed + 1, -1.0, 1.0);
    const std::vector<double> dmean = random_values(m * nf, seed + 2, -1.0, 1.0);
    seed += 3;
    for (const std::vector<double>* dm :
         {&dmean, static_cast<const std::vector<double>*>(nullptr)}) {
      INFO(describe(s) << (dm ? ", with dmean" : ", dmean null"));
      const CovResult want = run_sampled<double>(s, false, x, dcov, dm);
      check_close(run_sampled<double>(s, true, x, dcov, dm), want, 1e-10, 1e-12, "double");
      const CovResult fast = run_sampled<float>(s, true, x, dcov, dm);
      check_close(fast, want, 1e-4, 2e-6, "float");
      // Unsampled pixels: exactly zero on both paths.
      int64_t mismatched_zeros = 0;
      for (size_t i = 0; i < want.dx.size(); ++i)
        mismatched_zeros += (want.dx[i] == 0.0) != (fast.dx[i] == 0.0);
      CHECK(mismatched_zeros == 0);
    }
  }
}

TEST_CASE(
    "covariance_sampled on BLAS: 1x1 sampling that starts inside the pattern (a rank's share)",
    "[deconv_cov][blas]") {
  // {n, c, h, w, k, pad, dil, stride, block argument, groups} and the first sampled raster row.
  const std::vector<std::pair<CovCase, int64_t>> cases = {
      {{2, 16, 7, 9, 1, 0, 1, 3, 8, 1}, 4},
      {{4, 16, 8, 8, 1, 0, 1, 6, 8, 1}, 35},
      {{3, 12, 5, 5, 1, 0, 1, 3, 64, 3}, 8},  // groups 3
  };
  uint64_t seed = 2500;
  for (const auto& [cc, first] : cases) {
    SampledCovShape s = make_shape(cc);
    s.first = first;
    INFO(describe(s) << ", first row " << first);
    const int64_t m = s.matrices(), nf = s.nf();
    const std::vector<double> x = random_values(s.n * s.c * s.h * s.w, seed, -1.0, 2.0);
    const std::vector<double> dcov = random_values(m * nf * nf, seed + 1, -1.0, 1.0);
    const std::vector<double> dmean = random_values(m * nf, seed + 2, -1.0, 1.0);
    seed += 3;
    const CovResult want = run_sampled<double>(s, false, x, dcov, &dmean);
    check_close(run_sampled<double>(s, true, x, dcov, &dmean), want, 1e-10, 1e-12, "double");
    check_close(run_sampled<float>(s, true, x, dcov, &dmean), want, 1e-4, 2e-6, "float");
  }
}

TEST_CASE("covariance_sampled on BLAS repeats bitwise whatever the thread count",
          "[deconv_cov][blas]") {
  const SampledCovShape s = make_shape({3, 128, 9, 9, 3, 1, 1, 3, 64, 1});
  const std::vector<double> x = random_values(s.n * s.c * s.h * s.w, 77, -1.0, 2.0);
  const std::vector<double> dcov = random_values(s.nf() * s.nf(), 78, -1.0, 1.0);
  const int threads = nd::kernels::cpu_threads();
  const CovResult first = run_sampled<float>(s, true, x, dcov, nullptr);
  const CovResult again = run_sampled<float>(s, true, x, dcov, nullptr);
  CHECK(first.mean == again.mean);
  CHECK(first.cov == again.cov);
  CHECK(first.dx == again.dx);
  // Our own loops split work by output, so the gather, means and scatter do not depend on the
  // thread count (BLAS's products may; one thread against the current count checks ours).
  nd::kernels::set_cpu_threads(1);
  const CovResult one = run_sampled<float>(s, true, x, dcov, nullptr);
  nd::kernels::set_cpu_threads(threads);
  CHECK(one.mean == first.mean);
  CHECK_ALL_CLOSE(one.cov, first.cov, 1e-6, 1e-7 * max_abs(first.cov), "cov with one thread");
}

TEST_CASE("covariance_rows on BLAS equals the reference loops", "[deconv_cov][blas]") {
  // {rows, n}: Delinear (classifier rows of 512), ChannelDeconv-like, small and odd sizes.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},    {2, 3},    {7, 5},    {64, 9},
                                                           {300, 32}, {100, 17}, {128, 512}};
  uint64_t seed = 3000;
  for (const auto& [rows, n] : shapes) {
    const std::vector<double> x = random_values(rows * n, seed, -1.0, 2.0);
    const std::vector<double> dcov = random_values(n * n, seed + 1, -1.0, 1.0);
    const std::vector<double> dmean = random_values(n, seed + 2, -1.0, 1.0);
    seed += 3;
    for (bool with_dmean : {true, false}) {
      INFO("rows=" << rows << " n=" << n << (with_dmean ? ", with dmean" : ", dmean null"));
      auto run = [&](auto tag, bool blas) {
        using T = decltype(tag);
        const std::vector<T> xt = cast_to<T>(x), dct = cast_to<T>(dcov), dmt = cast_to<T>(dmean);
        std::vector<T> mean(static_cast<size_t>(n)), cov(static_cast<size_t>(n * n)), dx(x.size());
        const T* dm = with_dmean ? dmt.data() : nullptr;
        if (blas) {
          nd::DeviceScratch scratch(nd::Device::cpu());
          nd::kernels::covariance_rows_forward_blas<T>(rows, n, 1e-3, xt.data(), mean.data(),
                                                       cov.data(), scratch);
          nd::kernels::covariance_rows_backward_blas<T>(rows, n, xt.data(), mean.data(), dm,
                                                        dct.data(), dx.data(), scratch);
        } else {
          nd::kernels::covariance_rows_forward_cpu<T>(rows, n, 1e-3, xt.data(), mean.data(),
                                                      cov.data());
          nd::kernels::covariance_rows_backward_cpu<T>(rows, n, xt.data(), mean.data(), dm,
                                                       dct.data(), dx.data());
        }
        return CovResult{to_double(mean), to_double(cov), to_double(dx)};
      };
      const CovResult want = run(double{}, false);
      check_close(run(double{}, true), want, 1e-10, 1e-12, "double");
      check_close(run(float{}, true), want, 1e-4, 2e-6, "float");
    }
  }
}
