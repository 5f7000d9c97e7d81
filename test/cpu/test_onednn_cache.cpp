// The oneDNN convolution's primitive cache (kernels/conv_onednn_cpu.cpp) keyed by the whole
// shape: convolutions that differ only in `groups`, or only in the batch size, run interleaved in
// one process and must each match the double-precision reference (conv_cpu.cpp). Every buffer has
// a guard tail (NaN after inputs, a sentinel after outputs), so a primitive cached for the other
// shape reads NaN or writes the sentinel, and fails here rather than overrunning the heap.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/random.h"
#include "kernels/conv.h"
#include "test/catch.h"
#include "test/compare.h"

using namespace nd;

namespace {

constexpr float kSentinel = -12345.0f;

kernels::Conv2dShape conv_shape(int64_t n, int64_t c, int64_t hw, int64_t o, int64_t groups) {
  kernels::Conv2dShape s;
  s.n = n, s.c = c, s.h = s.w = hw, s.o = o, s.kh = s.kw = 3;
  s.pad_h = s.pad_w = 1, s.groups = groups;
  return s;
}

std::string describe(const kernels::Conv2dShape& s) {
  std::ostringstream os;
  os << "x(" << s.n << ", " << s.c << ", " << s.h << ", " << s.w << ") o " << s.o << " 3x3 groups "
     << s.groups;
  return os.str();
}

size_t x_size(const kernels::Conv2dShape& s) {
  return size_t(s.n * s.c * s.h * s.w);
}
size_t w_size(const kernels::Conv2dShape& s) {
  return size_t(s.o * (s.c / s.groups) * s.kh * s.kw);
}
size_t y_size(const kernels::Conv2dShape& s) {
  return size_t(s.n * s.o * s.out_h() * s.out_w());
}

// `values` followed by `guard` copies of `tail`.
std::vector<float> guarded(const std::vector<float>& values, size_t guard, float tail) {
  std::vector<float> v(values);
  v.resize(values.size() + guard, tail);
  return v;
}

std::vector<double> head(const std::vector<float>& v, size_t n) {
  return std::vector<double>(v.begin(), v.begin() + std::ptrdiff_t(n));
}

// Elements of the guard tail (from `n` on) that are no longer the sentinel.
size_t tail_written(const std::vector<float>& v, size_t n) {
  size_t bad = 0;
  for (size_t i = n; i < v.size(); ++i) bad += v[i] != kSentinel;
  return bad;
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

// One convolution's inputs, drawn once so that every repetition is compared with the same values.
struct ConvData {
  kernels::Conv2dShape s;
  std::vector<float> x, w, b, dy;
};

ConvData draw(const kernels::Conv2dShape& s, Generator& gen) {
  auto floats = [&](size_t n) { return normal_tensor({int64_t(n)}, 0, 1, gen).to_vector<float>(); };
  return {s, floats(x_size(s)), floats(w_size(s)), floats(size_t(s.o)), floats(y_size(s))};
}

// Forward (with bias) and backward (data, weights, bias) on oneDNN, every buffer with `guard`
// elements after it, against the double reference.
void check_onednn(const ConvData& d, size_t guard) {
  const kernels::Conv2dShape& s = d.s;
  const size_t xs = x_size(s), ws = w_size(s), ys = y_size(s), os = size_t(s.o);
  auto wide = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  const std::vector<double> xd = wide(d.x), wd = wide(d.w), bd = wide(d.b), dyd = wide(d.dy);
  std::vector<double> y(ys), dx(xs), dw(ws), db(os);
  kernels::conv2d_forward_cpu<double>(s, xd.data(), wd.data(), bd.data(), y.data());
  kernels::conv2d_backward_cpu<double>(s, xd.data(), wd.data(), dyd.data(), dx.data(), dw.data(),
                                       db.data());

  const float nan = std::nanf("");
  const std::vector<float> x = guarded(d.x, guard, nan), w = guarded(d.w, guard, nan);
  const std::vector<float> b = guarded(d.b, guard, nan), dy = guarded(d.dy, guard, nan);
  std::vector<float> yo(ys + guard, kSentinel), dxo(xs + guard, kSentinel);
  std::vector<float> dwo(ws + guard, kSentinel), dbo(os + guard, kSentinel);
  kernels::conv2d_forward_onednn(s, x.data(), w.data(), b.data(), yo.data());
  kernels::conv2d_backward_onednn(s, x.data(), w.data(), dy.data(), dxo.data(), dwo.data(),
                                  dbo.data());

  // Tolerances of test_conv_onednn.cpp: float sums against double ones.
  const std::string what = describe(s);
  auto near = [&](const std::vector<float>& got, const std::vector<double>& want,
                  const char* part) {
    CHECK_ALL_CLOSE(head(got, want.size()), want, 1e-4, 2e-5 * std::max(1.0, max_abs(want)),
                    what << ": " << part);
    INFO(what << ": " << part << " written past its end");
    CHECK(tail_written(got, want.size()) == 0);
  };
  near(yo, y, "forward");
  near(dxo, dx, "backward data");
  near(dwo, dw, "backward weights");
  near(dbo, db, "bias gradient");
}

}  // namespace

TEST_CASE("oneDNN cache: convolutions equal but for groups run interleaved", "[conv][onednn]") {
  if (!onednn_available()) {
    WARN("built without oneDNN: no primitive cache to test");
    return;
  }
  Generator gen(31);
  const ConvData dense = draw(conv_shape(2, 24, 8, 24, 1), gen);
  const ConvData depthwise = draw(conv_shape(2, 24, 8, 24, 24), gen);
  // Room for the dense weights behind the depthwise ones, should one run the other's primitive.
  const size_t guard = w_size(dense.s);
  for (int round = 0; round < 2; ++round) {
    INFO("round " << round);
    check_onednn(dense, guard);
    check_onednn(depthwise, guard);
  }
}

TEST_CASE("oneDNN cache: one geometry at batch 2 then 1 then 2", "[conv][onednn]") {
  if (!onednn_available()) {
    WARN("built without oneDNN: no primitive cache to test");
    return;
  }
  Generator gen(32);
  const ConvData two = draw(conv_shape(2, 12, 7, 20, 1), gen);
  const ConvData one = draw(conv_shape(1, 12, 7, 20, 1), gen);
  // Room for a second image behind the batch of one, should it run the batch-2 primitive.
  const size_t guard = x_size(two.s) + y_size(two.s);
  for (const ConvData* d : {&two, &one, &two}) check_onednn(*d, guard);
}
