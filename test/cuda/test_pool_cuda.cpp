// CUDA-against-CPU tests of the pooling family (design principle 3; tags [cuda][pool]): max_pool2d,
// avg_pool2d and adaptive_avg_pool2d run on CPU float32 and CUDA float32 from the same host inputs
// over shapes of 1, primes, sizes that are not a multiple of 32, overlapping and padded windows,
// non-divisible and enlarging adaptive bins, every global-pooling path (lane groups of 1 to 32 per
// plane and a block per plane) and the large cases (N=128, C=64, 32x32 with 2x2 stride 2; global
// pooling of (128, 512, 4, 4) and (128, 1024, 7, 7)). Forward outputs are compared, then the
// gradient of loss = sum(out * r) for a fixed random r. Each case is its own SECTION named by its
// parameters.
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "layers/module.h"
#include "layers/pool.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/cuda_cases.h"

namespace {

namespace ops = nd::ops;
using nd::Device;
using nd::DType;
using nd::Generator;
using nd::Shape;
using nd::Tensor;
using nd::test::left_out_when_small;
using nd::test::require_close;
using nd::test::require_equal;

const Device kCuda = Device::cuda(0);

// ---- tolerances (float32 on both sides, inputs in [-1, 1]; u = 2^-24 ~ 6e-8)
// Max pooling selects values (the same strict > in the same row-major order on both sides), so
// the forward is exact; the backward adds the same gradients in the same order (the CPU scatters
// in row-major output order, the GPU gathers in it), so it is exact up to a safety margin (a few
// ulp of gradients of magnitude <= a few) far below any misrouted gradient (O(1)).
constexpr double kMaxGradRtol = 1e-6;
constexpr double kMaxGradAtol = 1e-7;
// Window and bin means: the CPU sums in double, the GPU in float, then both divide by the count.
// A float sum of s terms of |x| <= 1 errs by <= s u sum|x|, so the mean by <= s u mean|x|
// (mean|x| ~ 0.5 for uniform inputs): windows and bins (s <= 81 serial terms) give <= 2.4e-6,
// typically sqrt(s) u ~ 3e-7; global pooling sums a plane in lanes of <= hw / 32 terms and a
// tree (s <= ~40 levels deep: <= 1.2e-6). The backward divides dy by the count (one rounding).
// 2e-6 absolute plus 1e-5 relative keeps a margin over every case's typical error and is at
// the worst-case bound of the 9x9 window; a wrong count or a missed pixel moves a mean by
// >= 1/81 of a value.
constexpr double kMeanRtol = 1e-5;
constexpr double kMeanAtol = 2e-6;

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

// An input with identical values on the CPU and on the device; both are leaves.
struct Input {
  Tensor cpu, cuda;
};

Input uniform_input(const Shape& s, Generator& gen, bool requires_grad = true) {
  Tensor host = nd::uniform_tensor(s, -1.0, 1.0, gen);
  Input in{host.clone(), host.to(kCuda)};
  if (requires_grad) {
    in.cpu.set_requires_grad(true);
    in.cuda.set_requires_grad(true);
  }
  return in;
}

// loss = sum(out * r) with r moved to out's device; runs the backward.
void backward_sum_r(const Tensor& out, const Tensor& r_host) {
  ops::sum(ops::mul(out, r_host.to(out.device()))).backward();
}

void require_on_cuda(const Tensor& t, const std::string& what) {
  INFO(what);
  REQUIRE(t.defined());
  REQUIRE(t.device() == kCuda);
}

// Runs f on both copies of x, compares the forward (fwd_rtol, fwd_atol) and the gradient of
// sum(out * r) (grad_rtol, grad_atol).
template <typename F>
void compare_pool(const std::string& name, const Shape& shape, uint64_t seed, F f, double fwd_rtol,
                  double fwd_atol, double grad_rtol, double grad_atol) {
  INFO(name);
  Generator gen(seed);
  Input x = uniform_input(shape, gen);
  Tensor y_cpu = f(x.cpu);
  Tensor y_cuda = f(x.cuda);
  require_on_cuda(y_cuda, name);
  require_close(y_cuda, y_cpu, fwd_rtol, fwd_atol, name + " forward");
  const Tensor r = nd::uniform_tensor(y_cpu.shape(), -1.0, 1.0, gen);
  backward_sum_r(y_cpu, r);
  backward_sum_r(y_cuda, r);
  REQUIRE(x.cpu.grad().defined());
  REQUIRE(x.cuda.grad().defined());
  REQUIRE(x.cuda.grad().device() == kCuda);
  require_close(x.cuda.grad(), x.cpu.grad(), grad_rtol, grad_atol, name + " dx");
}

struct WindowCase {
  int64_t n, c, h, w, k, s, p;
};

// 1, primes, sizes off multiples of 32, overlapping (s < k), padded and strided windows.
const std::vector<WindowCase> kWindowCases = {
    {1, 1, 1, 1, 1, 1, 0},       // the smallest
    {1, 1, 2, 3, 2, 1, 1},       // padding on a tiny plane
    {2, 3, 5, 5, 2, 2, 0},       // the usual 2x2 stride 2, odd size (last row/column dropped)
    {2, 3, 7, 9, 3, 2, 1},       // ResNet's stem pool on odd sizes
    {1, 2, 7, 6, 3, 1, 1},       // overlapping, same-size output
    {2, 5, 13, 11, 3, 3, 0},     // stride 3, primes
    {3, 7, 31, 17, 2, 1, 1},     // even kernel with padding, overlapping
    {1, 3, 33, 65, 3, 2, 1},     // widths past a multiple of 32
    {2, 16, 17, 19, 5, 2, 2},    // 5x5 window, padding 2
    {1, 1, 64, 64, 4, 4, 0},     // one channel, 4x4 stride 4
    {4, 8, 9, 9, 9, 1, 0},       // window = whole plane
    {128, 64, 32, 32, 2, 2, 0},  // the large case
    {16, 64, 56, 56, 3, 2, 1},   // ImageNet ResNet stem pool
};

std::string window_name(const char* op, const WindowCase& c) {
  return str(op, " x(", c.n, ", ", c.c, ", ", c.h, ", ", c.w, ") k=", c.k, " stride=", c.s,
             " pad=", c.p);
}

}  // namespace

TEST_CASE("cuda max_pool2d matches the CPU forward (exactly) and backward",
          "[cuda][pool][memcheck]") {
  uint64_t seed = 3100;
  for (const WindowCase& c : kWindowCases) {
    ++seed;
    if (left_out_when_small(c.n * c.c * c.h * c.w, c.n)) continue;
    const std::string name = window_name("max_pool2d", c);
    SECTION(name) {
      compare_pool(
          name, {c.n, c.c, c.h, c.w}, seed,
          [&](const Tensor& x) { return ops::max_pool2d(x, c.k, c.s, c.p); }, 0.0, 0.0,
          kMaxGradRtol, kMaxGradAtol);
    }
  }
}

TEST_CASE("cuda max_pool2d on ties and constant planes routes gradients like the CPU",
          "[cuda][pool][memcheck]") {
  // Constant planes make every window a tie: both sides must pick the first position, and
  // overlapping windows (k=3, s=1) pile their gradients onto the same pixels.
  for (const WindowCase& c : std::vector<WindowCase>{
           {2, 3, 8, 8, 2, 2, 0}, {2, 3, 9, 7, 3, 1, 1}, {1, 4, 17, 33, 3, 2, 1}}) {
    const std::string name = window_name("max_pool2d constant input", c);
    SECTION(name) {
      INFO(name);
      Tensor host = Tensor::full({c.n, c.c, c.h, c.w}, -0.5);
      Tensor x_cpu = host.clone().set_requires_grad(true);
      Tensor x_cuda = host.to(kCuda).set_requires_grad(true);
      Tensor y_cpu = ops::max_pool2d(x_cpu, c.k, c.s, c.p);
      Tensor y_cuda = ops::max_pool2d(x_cuda, c.k, c.s, c.p);
      require_equal(y_cuda, y_cpu, name + " forward");
      Generator gen(3200);
      const Tensor r = nd::uniform_tensor(y_cpu.shape(), -1.0, 1.0, gen);
      backward_sum_r(y_cpu, r);
      backward_sum_r(y_cuda, r);
      require_close(x_cuda.grad(), x_cpu.grad(), kMaxGradRtol, kMaxGradAtol, name + " dx");
    }
  }
}

TEST_CASE("cuda max_pool2d without gradients (no argmax saved) matches the CPU",
          "[cuda][pool][memcheck]") {
  Generator gen(3300);
  Tensor host = nd::uniform_tensor({3, 5, 19, 23}, -1.0, 1.0, gen);
  Tensor x_cuda = host.to(kCuda).set_requires_grad(true);
  nd::NoGradGuard no_grad;
  Tensor y_cuda = ops::max_pool2d(x_cuda, 3, 2, 1);
  CHECK_FALSE(y_cuda.requires_grad());
  require_equal(y_cuda, ops::max_pool2d(host, 3, 2, 1), "max_pool2d under NoGradGuard");
}

TEST_CASE("cuda avg_pool2d matches the CPU forward and backward", "[cuda][pool][memcheck]") {
  uint64_t seed = 3400;
  for (const WindowCase& c : kWindowCases) {
    ++seed;
    if (left_out_when_small(c.n * c.c * c.h * c.w, c.n)) continue;
    const std::string name = window_name("avg_pool2d", c);
    SECTION(name) {
      compare_pool(
          name, {c.n, c.c, c.h, c.w}, seed,
          [&](const Tensor& x) { return ops::avg_pool2d(x, c.k, c.s, c.p); }, kMeanRtol, kMeanAtol,
          kMeanRtol, kMeanAtol);
    }
  }
}

// Global pooling of large planes reduces in shared memory (racecheck).
TEST_CASE("cuda adaptive_avg_pool2d matches the CPU forward and backward",
          "[cuda][pool][memcheck][racecheck]") {
  struct Case {
    int64_t n, c, h, w, oh, ow;
    const char* why;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, 1, 1, 1, "1x1 input, global"},
      {2, 3, 1, 1, 2, 3, "1x1 input, larger output"},
      {2, 3, 7, 7, 3, 3, "non-divisible, overlapping bins"},
      {1, 2, 7, 5, 3, 2, "non-divisible, rectangular"},
      {3, 5, 13, 11, 4, 5, "primes"},
      {2, 4, 8, 8, 4, 4, "divisible"},
      {2, 3, 3, 4, 5, 7, "output larger than input"},
      {3, 16, 31, 17, 7, 7, "7x7 output of odd sizes"},
      {16, 64, 32, 32, 5, 5, "larger non-divisible"},
      {3, 5, 1, 3, 1, 1, "global, 4-lane groups (hw 3)"},
      {3, 5, 2, 2, 1, 1, "global, 4-lane groups (hw 4)"},
      {5, 3, 3, 3, 1, 1, "global, 16-lane groups (hw 9)"},
      {4, 3, 4, 4, 1, 1, "global, 16-lane groups (hw 16)"},
      {4, 3, 5, 5, 1, 1, "global, 32-lane groups (hw 25)"},
      {7, 9, 33, 31, 1, 1, "global, 32-lane groups (hw 1023)"},
      {2, 8, 33, 65, 1, 1, "global, block per plane (hw 2145)"},
      {3, 5, 64, 64, 1, 1, "global, block per plane (hw 4096)"},
      {128, 512, 4, 4, 1, 1, "global, the large 4x4 case"},
      {128, 1024, 7, 7, 1, 1, "global, the large 7x7 case"},
  };
  uint64_t seed = 3500;
  for (const Case& c : cases) {
    ++seed;
    if (left_out_when_small(c.n * c.c * c.h * c.w, c.n)) continue;
    const std::string name = str("adaptive_avg_pool2d x(", c.n, ", ", c.c, ", ", c.h, ", ", c.w,
                                 ") -> ", c.oh, "x", c.ow, " (", c.why, ")");
    SECTION(name) {
      compare_pool(
          name, {c.n, c.c, c.h, c.w}, seed,
          [&](const Tensor& x) { return ops::adaptive_avg_pool2d(x, c.oh, c.ow); }, kMeanRtol,
          kMeanAtol, kMeanRtol, kMeanAtol);
    }
  }
}

TEST_CASE("cuda pooling layer stack matches the CPU end to end", "[cuda][pool][layers][memcheck]") {
  auto build = [] {
    auto seq = std::make_shared<nd::Sequential>();
    seq->push_back(std::make_shared<nd::MaxPool2d>(3, 2, 1));
    seq->push_back(std::make_shared<nd::AvgPool2d>(2));
    seq->push_back(std::make_shared<nd::AdaptiveAvgPool2d>(1));
    return seq;
  };
  auto cpu = build();
  auto gpu = build();
  gpu->to(kCuda);
  compare_pool(
      "MaxPool2d(3, 2, 1) -> AvgPool2d(2) -> AdaptiveAvgPool2d(1) on (4, 6, 29, 30)",
      {4, 6, 29, 30}, 3600,
      [&](const Tensor& x) { return x.device() == kCuda ? (*gpu)(x) : (*cpu)(x); }, kMeanRtol,
      kMeanAtol, kMeanRtol, kMeanAtol);
}

TEST_CASE("cuda pooling rejects float64 with a clear message", "[cuda][pool]") {
  Tensor x = Tensor::zeros({1, 1, 4, 4}, DType::F64).to(kCuda);
  for (int op = 0; op < 3; ++op) {
    std::string msg = "(no error)";
    try {
      if (op == 0) ops::max_pool2d(x, 2);
      if (op == 1) ops::avg_pool2d(x, 2);
      if (op == 2) ops::adaptive_avg_pool2d(x, 1, 1);
    } catch (const nd::Error& e) {
      msg = e.what();
    }
    INFO("op " << op << ": " << msg);
    CHECK(msg.find("supports float32 only") != std::string::npos);
  }
}
