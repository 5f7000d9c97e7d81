// Tests of the CPU reference of the deconvolution covariance (kernels/deconv_covariance_cpu.cpp):
// (a) the forward against an independent construction written here from the algorithm's text
//     (docs/deconvolution.md, "The algorithm", section 1, steps 1-4): explicit sampled patches,
//     the interleaved sub-rows or group chunks stacked into X, and the mean and centred
//     covariance computed directly, over a table of shapes (interleaves of 2 and 3 blocks, the
//     gcd rule, k = 1 with sampling strides 3 and 6, groups = 2 and depthwise, padding 0/1/2,
//     dilation 2, batch 1, odd sizes), plus two cases small enough to check by hand;
// (b) the backward against double-precision central differences of
//     loss = sum(R1 * cov) + sum(R2 * mean) for random R1 (not symmetric) and R2, with respect
//     to every input pixel, also with dmean null; the loss is quadratic in x, so central
//     differences are exact up to rounding;
// (c) that pixels no patch reads get exactly zero gradient (and that dx is overwritten);
// (d) the same for covariance_rows.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

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

// Central differences (loss(x0 + h e_i) - loss(x0 - h e_i)) / 2h for every element i of x0.
template <typename Loss>
std::vector<double> central_differences(const std::vector<double>& x0, double h, Loss&& loss) {
  std::vector<double> num(x0.size());
  std::vector<double> x = x0;
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = x0[i] + h;
    const double lp = loss(x);
    x[i] = x0[i] - h;
    const double lm = loss(x);
    x[i] = x0[i];
    num[i] = (lp - lm) / (2 * h);
  }
  return num;
}

// ---- the independent construction --------------------------------------------------------------

// Step 1: the sampled patches, rows of length C*k*k with f = c*k*k + ky*k + kx. `src` receives
// the flat input index each entry was read from (-1 for a padded zero).
std::vector<std::vector<double>> explicit_patches(const SampledCovShape& s,
                                                  const std::vector<double>& x,
                                                  std::vector<std::vector<int64_t>>* src) {
  std::vector<std::vector<double>> patches;
  auto at = [&](int64_t n, int64_t c, int64_t y, int64_t xx) {
    return ((n * s.c + c) * s.h + y) * s.w + xx;
  };
  if (s.k == 1) {
    // NHWC rows in (n, h, w) order; keep every (s*s)-th.
    int64_t raster = 0;
    for (int64_t n = 0; n < s.n; ++n)
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t xx = 0; xx < s.w; ++xx, ++raster) {
          if (raster % (s.stride * s.stride) != 0) continue;
          std::vector<double> row;
          std::vector<int64_t> from;
          for (int64_t c = 0; c < s.c; ++c) {
            row.push_back(x[at(n, c, y, xx)]);
            from.push_back(at(n, c, y, xx));
          }
          patches.push_back(row);
          if (src) src->push_back(from);
        }
    return patches;
  }
  const int64_t span = s.dil * (s.k - 1) + 1;
  const int64_t ph = (s.h + 2 * s.pad - span) / s.stride + 1;
  const int64_t pw = (s.w + 2 * s.pad - span) / s.stride + 1;
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t py = 0; py < ph; ++py)
      for (int64_t px = 0; px < pw; ++px) {
        // Top-left corner of the patch in the zero-padded image, then back to image coordinates.
        const int64_t top = py * s.stride, left = px * s.stride;
        std::vector<double> row;
        std::vector<int64_t> from;
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t ky = 0; ky < s.k; ++ky)
            for (int64_t kx = 0; kx < s.k; ++kx) {
              const int64_t y = top + ky * s.dil - s.pad, xx = left + kx * s.dil - s.pad;
              const bool inside = y >= 0 && y < s.h && xx >= 0 && xx < s.w;
              row.push_back(inside ? x[at(n, c, y, xx)] : 0.0);
              from.push_back(inside ? at(n, c, y, xx) : -1);
            }
        patches.push_back(row);
        if (src) src->push_back(from);
      }
  return patches;
}

// Step 2: the sub-row matrices X_g (R x nf), one per matrix.
std::vector<std::vector<std::vector<double>>> explicit_subrows(
    const SampledCovShape& s, const std::vector<std::vector<double>>& patches) {
  std::vector<std::vector<std::vector<double>>> mats(static_cast<size_t>(s.groups));
  const int64_t len = s.c * s.k * s.k;
  if (s.groups == 1) {
    const int64_t blocks = s.c / s.block;
    for (const auto& p : patches)
      for (int64_t j = 0; j < blocks; ++j) {
        std::vector<double> sub;
        for (int64_t f = 0; f < len; ++f)
          if (f % blocks == j) sub.push_back(p[f]);
        mats[0].push_back(sub);
      }
  } else {
    const int64_t chunk = len / s.groups;
    for (const auto& p : patches)
      for (int64_t g = 0; g < s.groups; ++g)
        mats[g].push_back(std::vector<double>(p.begin() + g * chunk, p.begin() + (g + 1) * chunk));
  }
  return mats;
}

// Steps 3-4 for each matrix: mean and Xc^T Xc / R + eps I, in long double.
void explicit_stats(const std::vector<std::vector<std::vector<double>>>& mats, double eps,
                    std::vector<double>& mean, std::vector<double>& cov) {
  mean.clear();
  cov.clear();
  for (const auto& xm : mats) {
    const size_t rows = xm.size(), nf = xm[0].size();
    std::vector<long double> mu(nf, 0.0L);
    for (const auto& r : xm)
      for (size_t q = 0; q < nf; ++q) mu[q] += r[q];
    for (auto& m : mu) m /= static_cast<long double>(rows);
    for (size_t a = 0; a < nf; ++a) mean.push_back(static_cast<double>(mu[a]));
    for (size_t a = 0; a < nf; ++a)
      for (size_t b = 0; b < nf; ++b) {
        long double acc = 0;
        for (const auto& r : xm) acc += (r[a] - mu[a]) * (r[b] - mu[b]);
        cov.push_back(
            static_cast<double>(acc / static_cast<long double>(rows) + (a == b ? eps : 0)));
      }
  }
}

// Flat input indices some patch reads.
std::vector<bool> sampled_pixels(const SampledCovShape& s) {
  std::vector<double> x(static_cast<size_t>(s.n * s.c * s.h * s.w), 1.0);
  std::vector<std::vector<int64_t>> src;
  explicit_patches(s, x, &src);
  std::vector<bool> read(x.size(), false);
  for (const auto& row : src)
    for (int64_t i : row)
      if (i >= 0) read[static_cast<size_t>(i)] = true;
  return read;
}

// ---- the case table -----------------------------------------------------------------------------
// The forward runs over nd::test::kCovTableCases (test/deconv_cases.h), shared with the CUDA test.

// Small shapes for the gradient checks (every pixel is perturbed).
const std::vector<CovCase> kGradCases = {
    {2, 4, 5, 6, 3, 1, 1, 2, 2, 1},   // interleave of 2
    {1, 6, 5, 7, 3, 1, 1, 3, 4, 1},   // gcd: B 2, 3 blocks
    {2, 4, 6, 6, 3, 2, 2, 1, 2, 1},   // dilation 2, pad 2, overlapping patches
    {2, 3, 7, 9, 3, 0, 1, 3, 64, 1},  // pad 0, B = C, odd sizes
    {2, 6, 5, 5, 1, 0, 1, 2, 2, 1},   // k 1, s 2
    {3, 4, 4, 5, 1, 0, 1, 3, 4, 1},   // k 1, s 3
    {2, 4, 6, 5, 3, 1, 1, 2, 64, 2},  // groups 2
    {2, 3, 6, 6, 3, 1, 1, 1, 64, 3},  // depthwise, overlapping
    {1, 2, 8, 8, 3, 1, 1, 3, 64, 1},  // 8x8, k 3, s 3, pad 1
};

// ---- tests --------------------------------------------------------------------------------------

TEST_CASE("covariance_sampled forward matches an explicit construction", "[deconv_cov]") {
  const double eps = 1e-5;
  uint64_t seed = 1;
  for (const CovCase& cc : nd::test::kCovTableCases) {
    const SampledCovShape s = make_shape(cc);
    INFO(describe(s));
    const std::vector<double> x = random_values(s.n * s.c * s.h * s.w, seed++, -1.0, 2.0);
    const auto patches = explicit_patches(s, x, nullptr);
    const auto mats = explicit_subrows(s, patches);
    REQUIRE(static_cast<int64_t>(mats.size()) == s.matrices());
    REQUIRE(static_cast<int64_t>(mats[0].size()) == s.rows());
    REQUIRE(static_cast<int64_t>(mats[0][0].size()) == s.nf());
    std::vector<double> want_mean, want_cov;
    explicit_stats(mats, eps, want_mean, want_cov);

    const size_t nm = static_cast<size_t>(s.matrices() * s.nf());
    std::vector<double> mean(nm), cov(nm * static_cast<size_t>(s.nf()));
    nd::kernels::covariance_sampled_forward_cpu<double>(s, eps, x.data(), mean.data(), cov.data());
    CHECK_ALL_CLOSE(mean, want_mean, 1e-12, 1e-13 * max_abs(want_mean), "mean");
    CHECK_ALL_CLOSE(cov, want_cov, 1e-11, 1e-12 * max_abs(want_cov), "cov");
    // Exactly symmetric.
    bool symmetric = true;
    const int64_t nf = s.nf();
    for (int64_t g = 0; g < s.matrices(); ++g)
      for (int64_t a = 0; a < nf; ++a)
        for (int64_t b = 0; b < nf; ++b)
          symmetric = symmetric && cov[(g * nf + a) * nf + b] == cov[(g * nf + b) * nf + a];
    CHECK(symmetric);

    // float: inputs are exact in float and the reference accumulates in double, so only the
    // final rounding to float (relative 6e-8) separates it from the double result.
    const std::vector<float> xf = cast_to<float>(x);
    std::vector<float> meanf(nm), covf(cov.size());
    nd::kernels::covariance_sampled_forward_cpu<float>(s, eps, xf.data(), meanf.data(),
                                                       covf.data());
    CHECK_ALL_CLOSE(to_double(meanf), want_mean, 1e-6, 1e-7 * max_abs(want_mean), "float mean");
    CHECK_ALL_CLOSE(to_double(covf), want_cov, 1e-6, 1e-7 * max_abs(want_cov), "float cov");
  }
}

TEST_CASE("covariance_sampled forward on cases checked by hand", "[deconv_cov]") {
  SECTION("k 1, C 4, B 2: sub-row 0 holds channels 0 and 2, sub-row 1 channels 1 and 3") {
    SampledCovShape s;
    s.n = 1, s.c = 4, s.h = 1, s.w = 1, s.k = 1, s.stride = 1, s.block = 2;
    INFO(describe(s));
    const std::vector<double> x = {1, 2, 3, 4};  // X = [[1, 3], [2, 4]]
    std::vector<double> mean(2), cov(4);
    nd::kernels::covariance_sampled_forward_cpu<double>(s, 0.5, x.data(), mean.data(), cov.data());
    CHECK(mean == std::vector<double>{1.5, 3.5});
    CHECK(cov == std::vector<double>{0.25 + 0.5, 0.25, 0.25, 0.25 + 0.5});
  }
  SECTION("k 1, C 2, B 1, two images: four sub-rows of one value") {
    SampledCovShape s;
    s.n = 2, s.c = 2, s.h = 1, s.w = 1, s.k = 1, s.stride = 1, s.block = 1;
    INFO(describe(s));
    const std::vector<double> x = {1, 2, 3, 4};  // X = [1; 2; 3; 4]
    std::vector<double> mean(1), cov(1);
    nd::kernels::covariance_sampled_forward_cpu<double>(s, 0.0, x.data(), mean.data(), cov.data());
    CHECK(mean[0] == 2.5);
    CHECK(cov[0] == 1.25);
  }
  SECTION("k 3, pad 1, one 1x1 image, C 1: the patch is the pixel at the centre tap") {
    SampledCovShape s;
    s.n = 2, s.c = 1, s.h = 1, s.w = 1, s.k = 3, s.pad = 1, s.stride = 3, s.block = 1;
    INFO(describe(s));
    REQUIRE(s.rows() == 2);
    const std::vector<double> x = {2, 6};  // columns 0..8 are 0 except column 4 (ky 1, kx 1)
    std::vector<double> mean(9), cov(81);
    nd::kernels::covariance_sampled_forward_cpu<double>(s, 0.0, x.data(), mean.data(), cov.data());
    for (int q = 0; q < 9; ++q) CHECK(mean[q] == (q == 4 ? 4.0 : 0.0));
    for (int a = 0; a < 9; ++a)
      for (int b = 0; b < 9; ++b) CHECK(cov[a * 9 + b] == (a == 4 && b == 4 ? 4.0 : 0.0));
  }
}

// Central differences of loss = sum(R1 * cov) + sum(R2 * mean) against the backward.
void gradient_check(const SampledCovShape& s, bool with_dmean, uint64_t seed) {
  const int64_t nf = s.nf(), m = s.matrices();
  const std::vector<double> x0 = random_values(s.n * s.c * s.h * s.w, seed, -1.0, 2.0);
  const std::vector<double> r1 = random_values(m * nf * nf, seed + 1000, -1.0, 1.0);
  const std::vector<double> r2 =
      with_dmean ? random_values(m * nf, seed + 2000, -1.0, 1.0) : std::vector<double>(m * nf, 0.0);
  std::vector<double> mean(static_cast<size_t>(m * nf)), cov(static_cast<size_t>(m * nf * nf));
  auto loss = [&](const std::vector<double>& x) {
    nd::kernels::covariance_sampled_forward_cpu<double>(s, 1e-5, x.data(), mean.data(), cov.data());
    double l = 0;
    for (size_t i = 0; i < cov.size(); ++i) l += r1[i] * cov[i];
    for (size_t i = 0; i < mean.size(); ++i) l += r2[i] * mean[i];
    return l;
  };
  loss(x0);
  const std::vector<double> mean0 = mean;
  std::vector<double> dx(x0.size(), std::numeric_limits<double>::quiet_NaN());  // overwritten
  nd::kernels::covariance_sampled_backward_cpu<double>(
      s, x0.data(), mean0.data(), with_dmean ? r2.data() : nullptr, r1.data(), dx.data());
  // The loss is quadratic in x, so the central difference is exact but for rounding; a large
  // step keeps that rounding (~1e-16 |loss| / h) far below the tolerance.
  const std::vector<double> num = central_differences(x0, 1e-2, loss);
  CHECK_ALL_CLOSE(dx, num, 1e-7, 1e-9 * std::max(1.0, max_abs(num)), "dx");
  CHECK(max_abs(num) > 0);

  // The float instantiation on the same (float-exact) values.
  const std::vector<float> xf = cast_to<float>(x0), meanf = cast_to<float>(mean0);
  const std::vector<float> r1f = cast_to<float>(r1), r2f = cast_to<float>(r2);
  std::vector<float> dxf(x0.size(), std::numeric_limits<float>::quiet_NaN());
  nd::kernels::covariance_sampled_backward_cpu<float>(
      s, xf.data(), meanf.data(), with_dmean ? r2f.data() : nullptr, r1f.data(), dxf.data());
  CHECK_ALL_CLOSE(to_double(dxf), dx, 1e-5, 1e-6 * max_abs(dx), "float dx");
}

TEST_CASE("covariance_sampled backward matches central differences", "[deconv_cov]") {
  uint64_t seed = 100;
  for (const CovCase& cc : kGradCases) {
    const SampledCovShape s = make_shape(cc);
    for (bool with_dmean : {true, false}) {
      INFO(describe(s) << (with_dmean ? ", with dmean" : ", dmean null"));
      gradient_check(s, with_dmean, seed++);
    }
  }
}

TEST_CASE("covariance_sampled backward: unsampled pixels get exactly zero", "[deconv_cov]") {
  // {n, c, h, w, k, pad, dil, stride, block argument, groups}
  const std::vector<CovCase> cases = {
      {2, 2, 8, 8, 3, 1, 1, 3, 64, 1},  // the brief's case: patches at -1, 2, 5 cover 0..7
      {2, 2, 8, 8, 3, 0, 1, 3, 64, 1},  // rows/columns 6 and 7 never read
      {1, 4, 8, 8, 3, 1, 1, 4, 2, 1},   // s 4: gaps between patches
      {1, 2, 9, 9, 3, 1, 2, 3, 64, 1},  // dilation 2: every other pixel of a patch
      {2, 4, 8, 8, 3, 1, 1, 4, 64, 2},  // groups 2, s 4
      {2, 3, 5, 7, 1, 0, 1, 3, 64, 1},  // k 1: raster indices that are multiples of 9
  };
  uint64_t seed = 500;
  for (const CovCase& cc : cases) {
    const SampledCovShape s = make_shape(cc);
    INFO(describe(s));
    const int64_t nf = s.nf(), m = s.matrices();
    const std::vector<double> x = random_values(s.n * s.c * s.h * s.w, seed, -1.0, 2.0);
    const std::vector<double> r1 = random_values(m * nf * nf, seed + 1, -1.0, 1.0);
    const std::vector<double> r2 = random_values(m * nf, seed + 2, -1.0, 1.0);
    seed += 3;
    std::vector<double> mean(static_cast<size_t>(m * nf)), cov(static_cast<size_t>(m * nf * nf));
    nd::kernels::covariance_sampled_forward_cpu<double>(s, 1e-5, x.data(), mean.data(), cov.data());
    std::vector<double> dx(x.size(), std::numeric_limits<double>::quiet_NaN());
    nd::kernels::covariance_sampled_backward_cpu<double>(s, x.data(), mean.data(), r2.data(),
                                                         r1.data(), dx.data());
    const std::vector<bool> read = sampled_pixels(s);
    int64_t unread = 0, wrong_zero = 0, wrong_nonzero = 0;
    for (size_t i = 0; i < dx.size(); ++i) {
      if (!read[i]) {
        ++unread;
        if (!(dx[i] == 0.0)) ++wrong_nonzero;  // also catches NaN left in place
      } else if (!(dx[i] != 0.0 && std::isfinite(dx[i]))) {
        ++wrong_zero;
      }
    }
    INFO(unread << " of " << dx.size() << " pixels are never sampled");
    CHECK(wrong_nonzero == 0);
    CHECK(wrong_zero == 0);
    if (cc.pad == 1 && cc.stride == 3 && cc.dil == 1 && cc.k == 3) CHECK(unread == 0);
    if (cc.pad == 0 && cc.k == 3) CHECK(unread == 2 * 2 * (8 * 8 - 6 * 6));
  }
}

TEST_CASE("covariance_rows forward and backward", "[deconv_cov]") {
  // {rows, n}
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1},  {2, 3},   {7, 5},
                                                           {64, 9}, {13, 32}, {100, 17}};
  uint64_t seed = 900;
  for (const auto& [rows, n] : shapes) {
    INFO("rows=" << rows << " n=" << n);
    const std::vector<double> x = random_values(rows * n, seed++, -1.0, 2.0);
    // Forward against the direct formula.
    std::vector<long double> mu(static_cast<size_t>(n), 0.0L);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < n; ++q) mu[q] += x[r * n + q];
    for (auto& v : mu) v /= rows;
    std::vector<double> want_mean(mu.begin(), mu.end()), want_cov;
    for (int64_t a = 0; a < n; ++a)
      for (int64_t b = 0; b < n; ++b) {
        long double acc = 0;
        for (int64_t r = 0; r < rows; ++r) acc += (x[r * n + a] - mu[a]) * (x[r * n + b] - mu[b]);
        want_cov.push_back(static_cast<double>(acc / rows + (a == b ? 1e-3 : 0.0)));
      }
    std::vector<double> mean(static_cast<size_t>(n)), cov(static_cast<size_t>(n * n));
    nd::kernels::covariance_rows_forward_cpu<double>(rows, n, 1e-3, x.data(), mean.data(),
                                                     cov.data());
    CHECK_ALL_CLOSE(mean, want_mean, 1e-12, 1e-13 * max_abs(want_mean), "mean");
    CHECK_ALL_CLOSE(cov, want_cov, 1e-11, 1e-12 * max_abs(want_cov), "cov");
    std::vector<float> meanf(mean.size()), covf(cov.size());
    const std::vector<float> xf = cast_to<float>(x);
    nd::kernels::covariance_rows_forward_cpu<float>(rows, n, 1e-3, xf.data(), meanf.data(),
                                                    covf.data());
    CHECK_ALL_CLOSE(to_double(covf), want_cov, 1e-6, 1e-7 * max_abs(want_cov), "float cov");

    // Backward against central differences, with and without dmean.
    const std::vector<double> r1 = random_values(n * n, seed + 50, -1.0, 1.0);
    const std::vector<double> r2 = random_values(n, seed + 60, -1.0, 1.0);
    for (bool with_dmean : {true, false}) {
      INFO((with_dmean ? "with dmean" : "dmean null"));
      auto loss = [&](const std::vector<double>& xx) {
        std::vector<double> mm(static_cast<size_t>(n)), cc(static_cast<size_t>(n * n));
        nd::kernels::covariance_rows_forward_cpu<double>(rows, n, 1e-3, xx.data(), mm.data(),
                                                         cc.data());
        double l = 0;
        for (size_t i = 0; i < cc.size(); ++i) l += r1[i] * cc[i];
        if (with_dmean)
          for (size_t i = 0; i < mm.size(); ++i) l += r2[i] * mm[i];
        return l;
      };
      std::vector<double> dx(x.size(), std::numeric_limits<double>::quiet_NaN());
      nd::kernels::covariance_rows_backward_cpu<double>(
          rows, n, x.data(), mean.data(), with_dmean ? r2.data() : nullptr, r1.data(), dx.data());
      const std::vector<double> num = central_differences(x, 1e-2, loss);
      CHECK_ALL_CLOSE(dx, num, 1e-7, 1e-9 * std::max(1.0, max_abs(num)), "dx");
    }
  }
}

}  // namespace
