// CPU tests of the pooling family (tag [pool]): max_pool2d, avg_pool2d and adaptive_avg_pool2d
// forward and backward against a naive implementation written here (explicitly padded planes,
// bins from floating-point floor/ceil) over a sweep of shapes, kernels, strides and paddings;
// max-pool ties (the first maximum in row-major window order gets the gradient), padding that
// never wins, -inf and NaN inputs; central-difference gradient checks in double precision (max
// pooling on tie-free inputs whose gaps dwarf the perturbation); error messages; and the layers.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "layers/pool.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/gradcheck.h"

using namespace nd;
using nd::test::gradcheck;
using nd::test::leaf;
using V = std::vector<Tensor>;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string shape_name(const Shape& s) {
  return shape_str(s);
}

// ---- naive reference: pad each plane explicitly, then slide the window over the padded plane.

struct NaiveResult {
  std::vector<double> y;   // (N, C, Ho, Wo)
  std::vector<double> dx;  // (N, C, H, W): gradient of sum(y * r)
};

int64_t pooled_size(int64_t size, int64_t k, int64_t s, int64_t p) {
  return (size + 2 * p - k) / s + 1;
}

// Max pooling: padding is -inf; the first strictly larger value wins, so ties keep the earliest
// position in row-major window order. A window of only -inf picks its first real position.
NaiveResult naive_max_pool(const std::vector<double>& x, const Shape& sh, int64_t k, int64_t s,
                           int64_t p, const std::vector<double>& r) {
  const int64_t n = sh[0], c = sh[1], h = sh[2], w = sh[3];
  const int64_t ho = pooled_size(h, k, s, p), wo = pooled_size(w, k, s, p);
  const int64_t hp = h + 2 * p, wp = w + 2 * p;
  NaiveResult out{std::vector<double>(size_t(n * c * ho * wo)),
                  std::vector<double>(size_t(n * c * h * w), 0.0)};
  for (int64_t plane = 0; plane < n * c; ++plane) {
    std::vector<double> padded(size_t(hp * wp), -kInf);
    std::vector<int64_t> source(size_t(hp * wp), -1);  // flat index into x, -1 for padding
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        padded[size_t((i + p) * wp + j + p)] = x[size_t((plane * h + i) * w + j)];
        source[size_t((i + p) * wp + j + p)] = (plane * h + i) * w + j;
      }
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox) {
        double best = -kInf;
        int64_t arg = -1, first_real = -1;
        for (int64_t ky = 0; ky < k; ++ky)
          for (int64_t kx = 0; kx < k; ++kx) {
            const size_t q = size_t((oy * s + ky) * wp + ox * s + kx);
            if (source[q] >= 0 && first_real < 0) first_real = source[q];
            if (source[q] >= 0 && padded[q] > best) {
              best = padded[q];
              arg = source[q];
            }
          }
        if (arg < 0) arg = first_real;
        const size_t o = size_t((plane * ho + oy) * wo + ox);
        out.y[o] = best;
        out.dx[size_t(arg)] += r[o];
      }
  }
  return out;
}

// Average pooling with count_include_pad: padding is 0 and every window divides by k * k.
NaiveResult naive_avg_pool(const std::vector<double>& x, const Shape& sh, int64_t k, int64_t s,
                           int64_t p, const std::vector<double>& r) {
  const int64_t n = sh[0], c = sh[1], h = sh[2], w = sh[3];
  const int64_t ho = pooled_size(h, k, s, p), wo = pooled_size(w, k, s, p);
  const int64_t hp = h + 2 * p, wp = w + 2 * p;
  NaiveResult out{std::vector<double>(size_t(n * c * ho * wo)),
                  std::vector<double>(size_t(n * c * h * w), 0.0)};
  for (int64_t plane = 0; plane < n * c; ++plane) {
    std::vector<double> padded(size_t(hp * wp), 0.0);
    std::vector<int64_t> source(size_t(hp * wp), -1);
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        padded[size_t((i + p) * wp + j + p)] = x[size_t((plane * h + i) * w + j)];
        source[size_t((i + p) * wp + j + p)] = (plane * h + i) * w + j;
      }
    for (int64_t oy = 0; oy < ho; ++oy)
      for (int64_t ox = 0; ox < wo; ++ox) {
        const size_t o = size_t((plane * ho + oy) * wo + ox);
        double sum = 0;
        for (int64_t ky = 0; ky < k; ++ky)
          for (int64_t kx = 0; kx < k; ++kx) {
            const size_t q = size_t((oy * s + ky) * wp + ox * s + kx);
            sum += padded[q];
            if (source[q] >= 0) out.dx[size_t(source[q])] += r[o] / double(k * k);
          }
        out.y[o] = sum / double(k * k);
      }
  }
  return out;
}

// Adaptive average pooling: bin i covers [floor(i * size / out), ceil((i + 1) * size / out)).
NaiveResult naive_adaptive_avg_pool(const std::vector<double>& x, const Shape& sh, int64_t oh,
                                    int64_t ow, const std::vector<double>& r) {
  const int64_t n = sh[0], c = sh[1], h = sh[2], w = sh[3];
  NaiveResult out{std::vector<double>(size_t(n * c * oh * ow)),
                  std::vector<double>(size_t(n * c * h * w), 0.0)};
  auto lo = [](int64_t i, int64_t size, int64_t bins) {
    return int64_t(std::floor(double(i) * double(size) / double(bins)));
  };
  auto hi = [](int64_t i, int64_t size, int64_t bins) {
    return int64_t(std::ceil(double(i + 1) * double(size) / double(bins)));
  };
  for (int64_t plane = 0; plane < n * c; ++plane)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const int64_t y0 = lo(oy, h, oh), y1 = hi(oy, h, oh);
        const int64_t x0 = lo(ox, w, ow), x1 = hi(ox, w, ow);
        const double count = double((y1 - y0) * (x1 - x0));
        const size_t o = size_t((plane * oh + oy) * ow + ox);
        double sum = 0;
        for (int64_t i = y0; i < y1; ++i)
          for (int64_t j = x0; j < x1; ++j) {
            sum += x[size_t((plane * h + i) * w + j)];
            out.dx[size_t((plane * h + i) * w + j)] += r[o] / count;
          }
        out.y[o] = sum / count;
      }
  return out;
}

// Runs `op` on a double leaf made from `x`, backpropagates sum(y * r) and returns y and dx.
template <typename Op>
NaiveResult run_op(const std::vector<double>& x, const Shape& shape, Op op, Generator& gen,
                   std::vector<double>& r_out) {
  Tensor xt = Tensor::from_vector<double>(x, shape);
  xt.set_requires_grad(true);
  Tensor y = op(xt);
  Tensor r = uniform_tensor(y.shape(), -1.0, 1.0, gen, DType::F64);
  r_out = r.to_vector<double>();
  ops::sum(ops::mul(y, r)).backward();
  return {y.to_vector<double>(), xt.grad().to_vector<double>()};
}

std::vector<double> random_values(const Shape& shape, Generator& gen) {
  return uniform_tensor(shape, -2.0, 2.0, gen, DType::F64).to_vector<double>();
}

struct WindowCase {
  int64_t k, s, p;
};

// Every (kernel, stride, padding) that PyTorch accepts for this input.
std::vector<WindowCase> window_cases(const Shape& shape) {
  std::vector<WindowCase> out;
  for (int64_t k : {1, 2, 3})
    for (int64_t s : {1, 2, 3})
      for (int64_t p : {0, 1})
        if (2 * p <= k && shape[2] + 2 * p >= k && shape[3] + 2 * p >= k) out.push_back({k, s, p});
  return out;
}

const std::vector<Shape> kShapes = {{1, 1, 1, 1}, {1, 1, 2, 3}, {2, 3, 5, 5},
                                    {1, 2, 7, 6}, {2, 1, 4, 9}, {1, 3, 8, 8}};

std::string case_name(const char* op, const Shape& shape, const WindowCase& c) {
  return std::string(op) + " x" + shape_name(shape) + " k" + std::to_string(c.k) + " s" +
         std::to_string(c.s) + " p" + std::to_string(c.p);
}

// Message of the nd::Error that f throws ("(no error)" when it returns).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("max_pool2d matches a naive padded implementation forward and backward", "[pool]") {
  Generator gen(11);
  for (const Shape& shape : kShapes)
    for (const WindowCase& c : window_cases(shape)) {
      const std::string name = case_name("max_pool2d", shape, c);
      INFO(name);
      const std::vector<double> x = random_values(shape, gen);
      std::vector<double> r;
      const NaiveResult got = run_op(
          x, shape, [&](const Tensor& t) { return ops::max_pool2d(t, c.k, c.s, c.p); }, gen, r);
      const NaiveResult want = naive_max_pool(x, shape, c.k, c.s, c.p, r);
      CHECK_ALL_CLOSE(got.y, want.y, 0.0, 0.0, name + " forward");
      CHECK_ALL_CLOSE(got.dx, want.dx, 0.0, 1e-14, name + " dx");
    }
}

TEST_CASE("avg_pool2d matches a naive padded implementation forward and backward", "[pool]") {
  Generator gen(12);
  for (const Shape& shape : kShapes)
    for (const WindowCase& c : window_cases(shape)) {
      const std::string name = case_name("avg_pool2d", shape, c);
      INFO(name);
      const std::vector<double> x = random_values(shape, gen);
      std::vector<double> r;
      const NaiveResult got = run_op(
          x, shape, [&](const Tensor& t) { return ops::avg_pool2d(t, c.k, c.s, c.p); }, gen, r);
      const NaiveResult want = naive_avg_pool(x, shape, c.k, c.s, c.p, r);
      CHECK_ALL_CLOSE(got.y, want.y, 1e-13, 1e-14, name + " forward");
      CHECK_ALL_CLOSE(got.dx, want.dx, 1e-13, 1e-14, name + " dx");
    }
}

TEST_CASE("adaptive_avg_pool2d matches naive floor/ceil bins forward and backward", "[pool]") {
  struct Case {
    Shape shape;
    int64_t oh, ow;
  };
  const std::vector<Case> cases = {
      {{1, 1, 1, 1}, 1, 1},  // 1x1 input
      {{2, 3, 1, 1}, 2, 3},  // 1x1 input, larger output: every bin is the one pixel
      {{2, 3, 7, 7}, 3, 3},  // non-divisible: overlapping bins 7 -> 3
      {{1, 2, 7, 5}, 3, 2},  {{2, 2, 8, 8}, 4, 4},  // divisible: plain 2x2 average
      {{1, 1, 5, 9}, 2, 4},  {{2, 2, 6, 6}, 1, 1},  // global
      {{1, 2, 3, 4}, 5, 7},                         // output larger than input
      {{3, 2, 10, 3}, 6, 1}, {{1, 1, 13, 11}, 4, 5},
  };
  Generator gen(13);
  for (const Case& c : cases) {
    const std::string name = "adaptive_avg_pool2d x" + shape_name(c.shape) + " -> " +
                             std::to_string(c.oh) + "x" + std::to_string(c.ow);
    INFO(name);
    const std::vector<double> x = random_values(c.shape, gen);
    std::vector<double> r;
    const NaiveResult got = run_op(
        x, c.shape, [&](const Tensor& t) { return ops::adaptive_avg_pool2d(t, c.oh, c.ow); }, gen,
        r);
    const NaiveResult want = naive_adaptive_avg_pool(x, c.shape, c.oh, c.ow, r);
    CHECK_ALL_CLOSE(got.y, want.y, 1e-13, 1e-14, name + " forward");
    CHECK_ALL_CLOSE(got.dx, want.dx, 1e-13, 1e-14, name + " dx");
  }
}

TEST_CASE("pooling in float32 agrees with the double results", "[pool]") {
  Generator gen(14);
  const Shape shape{2, 3, 9, 7};
  Tensor x64 = uniform_tensor(shape, -2.0, 2.0, gen, DType::F64);
  Tensor x32 = x64.to(DType::F32);
  auto check = [](const Tensor& got, const Tensor& want, const std::string& what) {
    REQUIRE(got.dtype() == DType::F32);
    nd::test::require_close(got, want, 1e-6, 1e-6, what);
  };
  check(ops::max_pool2d(x32, 3, 2, 1), ops::max_pool2d(x64, 3, 2, 1), "max_pool2d f32");
  check(ops::avg_pool2d(x32, 3, 2, 1), ops::avg_pool2d(x64, 3, 2, 1), "avg_pool2d f32");
  check(ops::adaptive_avg_pool2d(x32, 4, 3), ops::adaptive_avg_pool2d(x64, 4, 3),
        "adaptive_avg_pool2d f32");
}

TEST_CASE("pooling of a non-contiguous view equals pooling of its contiguous copy", "[pool]") {
  Generator gen(15);
  Tensor base = uniform_tensor({2, 6, 5, 3}, -1.0, 1.0, gen, DType::F64);
  Tensor view = base.permute({0, 3, 2, 1});  // (2, 3, 5, 6), not contiguous
  REQUIRE_FALSE(view.is_contiguous());
  Tensor copy = view.contiguous();
  nd::test::require_equal(ops::max_pool2d(view, 2, 1, 1), ops::max_pool2d(copy, 2, 1, 1),
                          "max_pool2d view");
  nd::test::require_equal(ops::avg_pool2d(view, 3, 2, 1), ops::avg_pool2d(copy, 3, 2, 1),
                          "avg_pool2d view");
  nd::test::require_equal(ops::adaptive_avg_pool2d(view, 2, 4),
                          ops::adaptive_avg_pool2d(copy, 2, 4), "adaptive_avg_pool2d view");
}

TEST_CASE("max_pool2d ties: the first maximum in row-major window order gets the gradient",
          "[pool]") {
  SECTION("constant input, 2x2 stride 2: the top-left of each window") {
    Tensor x = Tensor::full({1, 1, 4, 4}, 3.0, DType::F64);
    x.set_requires_grad(true);
    Tensor y = ops::max_pool2d(x, 2);
    CHECK(y.shape() == Shape{1, 1, 2, 2});
    CHECK(y.to_vector<double>() == std::vector<double>(4, 3.0));
    ops::sum(y).backward();
    const std::vector<double> want = {1, 0, 1, 0,  //
                                      0, 0, 0, 0,  //
                                      1, 0, 1, 0,  //
                                      0, 0, 0, 0};
    CHECK(x.grad().to_vector<double>() == want);
  }
  SECTION("a tie between (0, 1) and (1, 0): (0, 1) comes first in row-major order") {
    Tensor x = Tensor::from_vector<double>({1, 5, 5, 2}, {1, 1, 2, 2});
    x.set_requires_grad(true);
    Tensor y = ops::max_pool2d(x, 2);
    CHECK(y.item() == 5.0);
    ops::sum(y).backward();
    CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 0});
  }
  SECTION("overlapping windows on a constant input accumulate at each window's first position") {
    // 3x3 stride 1 on 4x4: outputs (oy, ox) in {0, 1}^2 each pick (oy, ox).
    Tensor x = Tensor::zeros({1, 1, 4, 4}, DType::F64);
    x.set_requires_grad(true);
    ops::sum(ops::max_pool2d(x, 3, 1, 0)).backward();
    const std::vector<double> want = {1, 1, 0, 0,  //
                                      1, 1, 0, 0,  //
                                      0, 0, 0, 0,  //
                                      0, 0, 0, 0};
    CHECK(x.grad().to_vector<double>() == want);
  }
  SECTION("overlapping windows sharing one maximum add their gradients") {
    std::vector<double> v(25, 0.0);
    v[12] = 9.0;  // the centre of 5x5: inside all nine 3x3 stride-1 windows
    Tensor x = Tensor::from_vector<double>(v, {1, 1, 5, 5});
    x.set_requires_grad(true);
    ops::sum(ops::max_pool2d(x, 3, 1, 0)).backward();
    const std::vector<double> g = x.grad().to_vector<double>();
    CHECK(g[12] == 9.0);
    CHECK(std::accumulate(g.begin(), g.end(), 0.0) == 9.0);
  }
  SECTION("padding never wins, even over negative inputs") {
    Tensor x = Tensor::full({1, 1, 3, 3}, -5.0, DType::F64);
    x.set_requires_grad(true);
    Tensor y = ops::max_pool2d(x, 3, 1, 1);  // every window hangs over the padding
    CHECK(y.to_vector<double>() == std::vector<double>(9, -5.0));
    ops::sum(y).backward();
    // Output (oy, ox)'s window starts at (oy - 1, ox - 1); its first real position is
    // (max(oy - 1, 0), max(ox - 1, 0)).
    const std::vector<double> want = {4, 2, 0,  //
                                      2, 1, 0,  //
                                      0, 0, 0};
    CHECK(x.grad().to_vector<double>() == want);
  }
  SECTION("a window of -inf outputs -inf and routes the gradient to its first real position") {
    Tensor x = Tensor::full({1, 1, 2, 2}, -kInf, DType::F64);
    x.set_requires_grad(true);
    Tensor y = ops::max_pool2d(x, 2, 1, 1);  // (1, 1, 3, 3)
    CHECK(y.to_vector<double>() == std::vector<double>(9, -kInf));
    ops::sum(y).backward();
    CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 2, 2, 1});
  }
  SECTION("NaN propagates to the output and takes the gradient") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor x = Tensor::from_vector<double>({1, nan, 7, 2}, {1, 1, 2, 2});
    x.set_requires_grad(true);
    Tensor y = ops::max_pool2d(x, 2);
    CHECK(std::isnan(y.item()));
    ops::sum(y).backward();
    CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 0});
  }
}

TEST_CASE("avg_pool2d counts padded zeros in the divisor (count_include_pad)", "[pool]") {
  Tensor x = Tensor::ones({1, 1, 2, 2}, DType::F64);
  // 3x3 windows with padding 1 over a 2x2 plane of ones: each window holds 4 ones of 9 cells.
  Tensor y = ops::avg_pool2d(x, 3, 1, 1);
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  for (double v : y.to_vector<double>()) CHECK(std::abs(v - 4.0 / 9.0) < 1e-15);
}

TEST_CASE("pooling output shapes and defaults", "[pool]") {
  Tensor x = Tensor::zeros({2, 3, 7, 8});
  CHECK(ops::max_pool2d(x, 2).shape() == Shape{2, 3, 3, 4});  // stride defaults to the kernel
  CHECK(ops::max_pool2d(x, 3, 2, 1).shape() == Shape{2, 3, 4, 4});
  CHECK(ops::avg_pool2d(x, 3, 1, 1).shape() == Shape{2, 3, 7, 8});
  CHECK(ops::avg_pool2d(x, 2, 3).shape() == Shape{2, 3, 2, 3});
  CHECK(ops::adaptive_avg_pool2d(x, 1, 1).shape() == Shape{2, 3, 1, 1});
  CHECK(ops::adaptive_avg_pool2d(x, 3, 5).shape() == Shape{2, 3, 3, 5});
  Tensor empty = Tensor::zeros({0, 3, 4, 4});
  CHECK(ops::max_pool2d(empty, 2).shape() == Shape{0, 3, 2, 2});
  CHECK(ops::adaptive_avg_pool2d(empty, 1, 1).shape() == Shape{0, 3, 1, 1});
  SECTION("no graph is recorded without gradients") {
    Tensor leaf_x = Tensor::zeros({1, 1, 4, 4}, DType::F64);
    leaf_x.set_requires_grad(true);
    NoGradGuard no_grad;
    CHECK_FALSE(ops::max_pool2d(leaf_x, 2).requires_grad());
    CHECK_FALSE(ops::avg_pool2d(leaf_x, 2).requires_grad());
    CHECK_FALSE(ops::adaptive_avg_pool2d(leaf_x, 1, 1).requires_grad());
  }
}

TEST_CASE("gradcheck: max_pool2d on tie-free inputs", "[pool][gradcheck]") {
  Generator gen(16);
  // Distinct values 0.05 apart in random order: a perturbation of h = 1e-6 never changes a
  // window's maximum, so max pooling is smooth around these inputs.
  auto tie_free = [&](const Shape& shape) {
    const int64_t n = shape_numel(shape);
    const std::vector<int64_t> order = gen.permutation(n);
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = 0.05 * double(order[size_t(i)] - n / 2);
    Tensor t = Tensor::from_vector<double>(v, shape);
    t.set_requires_grad(true);
    return t;
  };
  const struct {
    Shape shape;
    WindowCase c;
  } cases[] = {
      {{2, 2, 4, 4}, {2, 2, 0}},  // the usual 2x2 stride 2
      {{1, 2, 5, 6}, {3, 1, 1}},  // overlapping windows with padding
      {{2, 1, 7, 5}, {3, 2, 1}},  // ResNet's stem pool on odd sizes
      {{1, 3, 5, 5}, {2, 1, 1}},  // even kernel, padding 1
      {{1, 1, 6, 7}, {3, 3, 0}},  // stride 3
  };
  for (const auto& k : cases) {
    const WindowCase c = k.c;
    gradcheck(case_name("max_pool2d", k.shape, c),
              [c](const V& v) { return ops::max_pool2d(v[0], c.k, c.s, c.p); },
              {tie_free(k.shape)});
  }
}

TEST_CASE("gradcheck: avg_pool2d and adaptive_avg_pool2d", "[pool][gradcheck]") {
  Generator gen(17);
  const struct {
    Shape shape;
    WindowCase c;
  } avg_cases[] = {
      {{2, 2, 4, 4}, {2, 2, 0}},
      {{1, 2, 5, 6}, {3, 1, 1}},
      {{2, 1, 7, 5}, {3, 2, 1}},
      {{1, 1, 6, 7}, {2, 3, 1}},
  };
  for (const auto& k : avg_cases) {
    const WindowCase c = k.c;
    gradcheck(case_name("avg_pool2d", k.shape, c),
              [c](const V& v) { return ops::avg_pool2d(v[0], c.k, c.s, c.p); },
              {leaf(k.shape, gen)});
  }
  const struct {
    Shape shape;
    int64_t oh, ow;
  } adaptive_cases[] = {
      {{2, 2, 7, 7}, 3, 3}, {{1, 2, 5, 4}, 2, 3}, {{2, 3, 1, 1}, 1, 1},
      {{2, 2, 6, 5}, 1, 1}, {{1, 1, 3, 2}, 5, 4},
  };
  for (const auto& k : adaptive_cases) {
    const int64_t oh = k.oh, ow = k.ow;
    gradcheck("adaptive_avg_pool2d x" + shape_name(k.shape) + " -> " + std::to_string(oh) + "x" +
                  std::to_string(ow),
              [oh, ow](const V& v) { return ops::adaptive_avg_pool2d(v[0], oh, ow); },
              {leaf(k.shape, gen)});
  }
}

TEST_CASE("pooling rejects bad settings with clear messages", "[pool]") {
  const Tensor x = Tensor::zeros({2, 3, 5, 5});
  struct Case {
    std::string what, expect;
    std::function<void()> f;
  };
  const std::vector<Case> cases = {
      {"3-D input", "input must be (N, C, H, W)",
       [] {
         ops::max_pool2d(Tensor::zeros({3, 5, 5}), 2);
       }},
      {"padding over half the kernel", "padding 2 is more than half the kernel size 3",
       [&] { ops::max_pool2d(x, 3, 1, 2); }},
      {"padding over half the kernel (avg)", "padding 2 is more than half the kernel size 3",
       [&] { ops::avg_pool2d(x, 3, 1, 2); }},
      {"window larger than the padded input", "window is larger than the input 5x5 padded by 0",
       [&] { ops::max_pool2d(x, 6); }},
      {"window larger than the padded input (avg)", "(7x7)", [&] { ops::avg_pool2d(x, 8, 1, 1); }},
      {"kernel 0", "kernel size must be at least 1", [&] { ops::max_pool2d(x, 0); }},
      {"negative stride", "stride must be at least 1", [&] { ops::avg_pool2d(x, 2, -1); }},
      {"negative padding", "padding must be non-negative", [&] { ops::max_pool2d(x, 2, 2, -1); }},
      {"empty spatial dimension", "has an empty spatial dimension",
       [] {
         ops::adaptive_avg_pool2d(Tensor::zeros({1, 1, 0, 4}), 1, 1);
       }},
      {"adaptive output 0", "output size must be at least 1x1",
       [&] { ops::adaptive_avg_pool2d(x, 0, 2); }},
      {"adaptive 2-D input", "input must be (N, C, H, W)",
       [] {
         ops::adaptive_avg_pool2d(Tensor::zeros({4, 4}), 1, 1);
       }},
      {"integer input", "needs a floating-point tensor",
       [] {
         ops::max_pool2d(Tensor::zeros({1, 1, 4, 4}, DType::I64), 2);
       }},
      {"MaxPool2d layer padding", "padding must be between 0 and half the kernel size",
       [] { MaxPool2d(2, 2, 2); }},
      {"AvgPool2d layer kernel", "kernel size must be at least 1", [] { AvgPool2d(0); }},
      {"AdaptiveAvgPool2d layer size", "output size must be at least 1x1",
       [] { AdaptiveAvgPool2d(0, 3); }},
  };
  for (const Case& c : cases) {
    const std::string msg = error_of(c.f);
    INFO(c.what << ": " << msg);
    CHECK(contains(msg, c.expect));
  }
}

TEST_CASE("pooling layers: names, settings and forward", "[pool][layers]") {
  Generator gen(18);
  Tensor x = uniform_tensor({2, 4, 9, 9}, -1.0, 1.0, gen);
  MaxPool2d mp(3, 2, 1);
  CHECK(mp.type_name() == "MaxPool2d");
  CHECK(mp.describe() == "3x3, stride 2, padding 1");
  CHECK(mp.parameters().empty());
  nd::test::require_equal(mp(x), ops::max_pool2d(x, 3, 2, 1), "MaxPool2d forward");
  MaxPool2d mp_default(2);
  CHECK(mp_default.stride() == 2);
  CHECK(mp_default.describe() == "2x2, stride 2, padding 0");
  AvgPool2d ap(2);
  CHECK(ap.type_name() == "AvgPool2d");
  CHECK(ap.describe() == "2x2, stride 2, padding 0");
  nd::test::require_equal(ap(x), ops::avg_pool2d(x, 2, 2, 0), "AvgPool2d forward");
  AdaptiveAvgPool2d gap(1);
  CHECK(gap.type_name() == "AdaptiveAvgPool2d");
  CHECK(gap.describe() == "output 1x1");
  CHECK(gap(x).shape() == Shape{2, 4, 1, 1});
  nd::test::require_close(gap(x), ops::mean(x, {2, 3}, true), 1e-6, 1e-7,
                          "global average pooling = mean over H and W");
  AdaptiveAvgPool2d ap23(2, 3);
  CHECK(ap23.describe() == "output 2x3");
  CHECK(ap23(x).shape() == Shape{2, 4, 2, 3});
  Sequential seq;
  seq.push_back(std::make_shared<MaxPool2d>(2));
  seq.push_back(std::make_shared<AdaptiveAvgPool2d>(1));
  CHECK(seq(x).shape() == Shape{2, 4, 1, 1});
  CHECK(seq.state_dict().empty());
}
