// The fast CPU convolution (oneDNN, kernels/conv_onednn_cpu.cpp) against the im2col + GEMM
// reference (conv_cpu.cpp), forward, backward-data, backward-weights and bias, over the shapes the
// networks use: 3x3 with padding, stride 2, 1x1 (stride 1 and 2: unused last rows), dilation,
// groups, depthwise 3x3/5x5/7x7, the 3-channel stems, channel counts that are not a multiple of
// the SIMD width, a batch of one, with and without bias. Both float paths are held to the
// double-precision reference; the oneDNN results must also repeat bitwise, and ops::conv2d must
// follow the path selected (ND_CPU_CONV).
#include <cstring>
#include <sstream>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "kernels/conv.h"
#include "test/catch.h"
#include "test/compare.h"

using namespace nd;

namespace {

struct ConvCase {
  int64_t n, c, h, w, o, k, stride, pad, dil, groups;
  bool bias;
};

// Network shapes (CIFAR 32x32 scaled down where the size does not matter).
const ConvCase kCases[] = {
    {2, 16, 8, 8, 16, 3, 1, 1, 1, 1, true},    // ResNet body 3x3
    {2, 3, 9, 9, 16, 3, 1, 1, 1, 1, false},    // CIFAR stem (3 channels)
    {1, 3, 19, 17, 8, 7, 2, 3, 1, 1, true},    // ImageNet stem 7x7/2
    {2, 16, 9, 9, 32, 3, 2, 1, 1, 1, true},    // downsampling 3x3/2, odd input
    {2, 16, 8, 8, 32, 1, 2, 0, 1, 1, false},   // 1x1/2 shortcut: the last row is unused
    {2, 24, 5, 5, 40, 1, 1, 0, 1, 1, true},    // 1x1, channels not a multiple of 16
    {1, 8, 9, 9, 8, 3, 1, 2, 2, 1, true},      // dilation 2
    {2, 32, 6, 6, 32, 3, 1, 1, 1, 8, true},    // grouped (ResNeXt, 4 channels per group)
    {2, 24, 8, 8, 24, 3, 1, 1, 1, 24, true},   // depthwise 3x3 (MobileNetV2)
    {2, 24, 9, 9, 24, 3, 2, 1, 1, 24, false},  // depthwise 3x3/2
    {1, 16, 7, 7, 16, 5, 1, 2, 1, 16, true},   // depthwise 5x5 (EfficientNet)
    {2, 12, 8, 8, 12, 7, 1, 3, 1, 12, true},   // depthwise 7x7 (PNASNet)
    {2, 8, 6, 6, 16, 3, 1, 1, 1, 8, true},     // depthwise with multiplier 2
    {1, 64, 4, 4, 128, 3, 1, 1, 1, 1, true},   // deep, small map
};

std::string describe(const ConvCase& c) {
  std::ostringstream s;
  s << "x(" << c.n << ", " << c.c << ", " << c.h << ", " << c.w << ") o " << c.o << " k " << c.k
    << " stride " << c.stride << " pad " << c.pad << " dil " << c.dil << " groups " << c.groups
    << (c.bias ? " bias" : " no bias");
  return s.str();
}

kernels::Conv2dShape shape_of(const ConvCase& c) {
  kernels::Conv2dShape s;
  s.n = c.n, s.c = c.c, s.h = c.h, s.w = c.w, s.o = c.o, s.kh = s.kw = c.k;
  s.stride_h = s.stride_w = c.stride, s.pad_h = s.pad_w = c.pad, s.dil_h = s.dil_w = c.dil;
  s.groups = c.groups;
  return s;
}

std::vector<float> random_floats(size_t n, Generator& gen) {
  return normal_tensor({int64_t(n)}, 0, 1, gen).to_vector<float>();
}

std::vector<double> widen(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Forward and backward of one convolution; `onednn` picks the float path, `wide` runs the double
// reference on the same (float) values.
struct ConvResults {
  std::vector<double> y, dx, dw, db;
};

template <typename T>
ConvResults run(const kernels::Conv2dShape& s, bool bias, bool onednn, const std::vector<float>& xf,
                const std::vector<float>& wf, const std::vector<float>& bf,
                const std::vector<float>& dyf) {
  auto as = [](const std::vector<float>& v) { return std::vector<T>(v.begin(), v.end()); };
  const std::vector<T> x = as(xf), w = as(wf), b = as(bf), dy = as(dyf);
  std::vector<T> y(dyf.size()), dx(xf.size()), dw(wf.size()), db(size_t(s.o));
  const T* bp = bias ? b.data() : nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (onednn) {
      kernels::conv2d_forward_onednn(s, x.data(), w.data(), bp, y.data());
      kernels::conv2d_backward_onednn(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                                      bias ? db.data() : nullptr);
    }
  }
  if (!onednn) {
    kernels::conv2d_forward_cpu<T>(s, x.data(), w.data(), bp, y.data());
    kernels::conv2d_backward_cpu<T>(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                                    bias ? db.data() : nullptr);
  }
  auto wide = [](const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); };
  return {wide(y), wide(dx), wide(dw), bias ? wide(db) : std::vector<double>()};
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

// float results against the double reference: float rounding of sums of up to a few thousand
// terms, relative to the largest magnitude of each result.
void check_against(const ConvResults& got, const ConvResults& want, const std::string& what) {
  const auto near = [&](const std::vector<double>& g, const std::vector<double>& w,
                        const char* part) {
    CHECK_ALL_CLOSE(g, w, 1e-4, 2e-5 * std::max(1.0, max_abs(w)), what << ": " << part);
  };
  near(got.y, want.y, "forward");
  near(got.dx, want.dx, "backward data");
  near(got.dw, want.dw, "backward weights");
  near(got.db, want.db, "bias gradient");
}

}  // namespace

TEST_CASE("oneDNN convolutions equal the im2col + GEMM reference", "[conv][onednn]") {
  if (!onednn_available()) {
    WARN("built without oneDNN: only the reference convolution exists");
    return;
  }
  Generator gen(21);
  for (const ConvCase& c : kCases) {
    const kernels::Conv2dShape s = shape_of(c);
    const size_t xs = size_t(c.n * c.c * c.h * c.w), ws = size_t(c.o * c.c / c.groups * c.k * c.k);
    const size_t ys = size_t(c.n * c.o * s.out_h() * s.out_w());
    const auto x = random_floats(xs, gen), w = random_floats(ws, gen);
    const auto b = random_floats(size_t(c.o), gen), dy = random_floats(ys, gen);
    const ConvResults exact = run<double>(s, c.bias, false, x, w, b, dy);
    const ConvResults onednn = run<float>(s, c.bias, true, x, w, b, dy);
    check_against(run<float>(s, c.bias, false, x, w, b, dy), exact, "reference " + describe(c));
    check_against(onednn, exact, "oneDNN " + describe(c));
    // The same call again gives the same bits (cached primitives and buffers, fixed threads).
    const ConvResults again = run<float>(s, c.bias, true, x, w, b, dy);
    INFO("oneDNN repeat " << describe(c));
    CHECK(again.y == onednn.y);
    CHECK(again.dx == onednn.dx);
    CHECK(again.dw == onednn.dw);
    CHECK(again.db == onednn.db);
  }
}

TEST_CASE("oneDNN convolution: only the gradients asked for are written", "[conv][onednn]") {
  if (!onednn_available()) return;
  const ConvCase c{2, 8, 6, 6, 8, 3, 1, 1, 1, 1, true};
  const kernels::Conv2dShape s = shape_of(c);
  Generator gen(22);
  const auto x = random_floats(size_t(2 * 8 * 36), gen), w = random_floats(size_t(8 * 8 * 9), gen);
  const auto dy = random_floats(size_t(2 * 8 * 36), gen);
  const ConvResults want = run<double>(s, true, false, x, w, x, dy);
  // Bias gradient alone, then weights alone, then data alone.
  std::vector<float> db(8, -1.0f), dw(w.size(), -1.0f), dx(x.size(), -1.0f);
  kernels::conv2d_backward_onednn(s, x.data(), w.data(), dy.data(), nullptr, nullptr, db.data());
  CHECK_ALL_CLOSE(widen(db), want.db, 1e-5, 1e-5, "bias gradient alone");
  kernels::conv2d_backward_onednn(s, x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr);
  CHECK_ALL_CLOSE(widen(dw), want.dw, 1e-4, 2e-5 * max_abs(want.dw), "weight gradient alone");
  kernels::conv2d_backward_onednn(s, x.data(), w.data(), dy.data(), dx.data(), nullptr, nullptr);
  CHECK_ALL_CLOSE(widen(dx), want.dx, 1e-4, 2e-5 * max_abs(want.dx), "data gradient alone");
}

TEST_CASE("ops::conv2d runs the CPU path selected by ND_CPU_CONV", "[conv][onednn]") {
  if (!onednn_available()) {
    CHECK_THROWS(set_cpu_conv_path(CpuConvPath::OneDnn));
    CHECK(cpu_conv_path() == CpuConvPath::Reference);
    return;
  }
  const CpuConvPath before = cpu_conv_path();
  Generator gen(23);
  Tensor x = normal_tensor({2, 16, 8, 8}, 0, 1, gen).set_requires_grad(true);
  Tensor w = normal_tensor({16, 16, 3, 3}, 0, 1, gen).set_requires_grad(true);
  ops::Conv2dParams p;
  p.padding = 1;
  auto run_path = [&](CpuConvPath path) {
    set_cpu_conv_path(path);
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    Tensor y = ops::conv2d(x, w, Tensor(), p);
    ops::sum(ops::square(y)).backward();
    return std::vector<Tensor>{y.detach(), x.grad(), w.grad()};
  };
  const auto ref = run_path(CpuConvPath::Reference);
  const auto fast = run_path(CpuConvPath::OneDnn);
  set_cpu_conv_path(before);
  // The kernels are the same up to rounding, and they are not the same bits: a path that was
  // silently not switched would give identical results.
  bool identical = true;
  for (size_t i = 0; i < ref.size(); ++i) {
    nd::test::require_close(fast[i], ref[i], 1e-4, 1e-4 * nd::test::max_abs(ref[i]),
                            "oneDNN against reference, output " + std::to_string(i));
    identical = identical && fast[i].to_vector<float>() == ref[i].to_vector<float>();
  }
  CHECK_FALSE(identical);
}
