// The CUDA-against-CPU table (design principle 3): every op family runs on CPU float32 and on
// CUDA float32 from the same host inputs, over shapes of 1, primes, sizes that are not a multiple
// of 32 and one large case per family. Forward outputs are compared, then the backward of
// loss = sum(out * r) (r fixed and random, of out's shape) and every input gradient. Families:
// elementwise (unary, broadcasting binary, affine, copies, casts, fill), reductions (sum, mean,
// argmax), matmul/linear, conv2d/im2col, losses, batch norm (including the running statistics),
// optimizer steps, and small layer stacks end to end. Each case is its own SECTION named by its
// parameters, so one failure does not hide the others and says which case broke.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "layers/activation.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/linear.h"
#include "layers/module.h"
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
using nd::ops::LossKind;
using nd::ops::UnaryOp;
using nd::test::left_out_when_small;
using nd::test::max_abs;
using nd::test::require_close;
using nd::test::require_equal;

const Device kCuda = Device::cuda(0);

// ---- tolerances (float32 on both sides; u = 2^-24 ~ 6e-8 is float32's unit roundoff)
// Elementwise results: add/sub/mul/div/sqrt are correctly rounded on both sides (no fast math),
// expf/logf/tanhf and the sigmoid built on expf are within 2-4 ulp in CUDA and glibc, an FMA
// contraction moves a result by <= 1 ulp, and the derivative formulas (y (1 - y), 1 - y^2,
// s (1 + x (1 - s))) add <= 3 roundings: <= ~10 ulp ~ 6e-7 relative. 1e-5 relative keeps a 16x
// margin; where a formula cancels (1 - y^2 near |y| = 1, silu' near its zero) the error is a few
// ulp of the O(1) terms, ~2.4e-7 absolute, under the 1e-5 absolute part (40x). (Was 1e-4.)
constexpr double kElemRtol = 1e-5;
constexpr double kElemAtol = 1e-5;
// Results that accumulate many terms (conv, batch norm, gradients of broadcast operands, col2im):
// the CPU (OpenBLAS blocking, im2col + GEMM, double accumulators) and the GPU (cuBLAS/cuDNN
// tiles, tree reductions) add in different orders. A dot product of K terms (K <= 576 here)
// errs by at most K u sum|terms| and typically by sqrt(K) u sum|terms| ~ 1.4e-6 of the terms'
// scale; cuDNN may pick Winograd or FFT algorithms, whose transforms amplify rounding by 10-100x
// (~1e-4 of the scale), and batch norm divides by sigma (relative errors pass through, see the
// dx scale below). So 1e-3 relative plus 1e-4 of the result's scale (kAccAtolScale * max
// |want|: a fixed number would be vacuous for tiny results and too strict for large sums); an
// indexing slip moves entries by O(1) of the scale.
constexpr double kAccRtol = 1e-3;
constexpr double kAccAtolScale = 1e-4;
// Plain sums (sum, mean): the GPU sums each slice with 4 float partials of up to n / (4 * 1024)
// terms, then a shared-memory tree of <= 10 levels; the CPU sums in double. The error is
// typically ~sqrt(depth) u sum|x| (depth = terms per partial + tree levels: ~16 u for 2^20
// terms), hence an absolute part of 1e-6 * sum|x| over each reduced group (~16 u). The
// first-order worst case, depth * u sum|x| (268 u for 2^20 terms to one value), is not covered
// by it alone: it needs every rounding of a partial to fall one way, which random data does not
// do; the 1e-3 relative part adds 1e-3 |sum| on top. A dropped or doubled block moves the sum by
// O(sum|x| / blocks), far beyond either.
constexpr double kSumAtolScale = 1e-6;
// Matrix products: TF32 is off on the GPU, so fp32 GEMMs of K <= 1024 terms err by
// ~sqrt(K) u sum|a b| ~ 2e-6 of sum|a b| (uniform [-1, 1] operands: sum|a b| ~ K / 4, max|C|
// ~ 4.5 sqrt(K / 9) ~ 48 for K = 1024): ~1e-5 of max|C| for each side's blocking at worst over
// random data, so 1e-4 relative and 1e-5 of the largest output; TF32 (10-bit mantissa, 2^-11
// relative per operand rounding: ~5e-4 of sum|a b| / sqrt(K) typically) would fail it.
constexpr double kMatmulRtol = 1e-4;
constexpr double kMatmulAtolScale = 1e-5;
// Losses (one value): the GPU sums a row's K <= 1000 exponentials as 32 lane partials of K / 32
// terms and a 5-level shuffle tree, so the row sum errs by <= (K / 32 + 5) u ~ 37 u ~ 2.2e-6
// relative, the log turns that into 2.2e-6 absolute, and max + log(sum) - z_label rounds values
// of |.| <= ~8 (~5e-7 each); the batch mean adds <= (N / 32 + 5) u relative of a sum of
// non-negative row losses (~1e-6). Worst case ~3e-6 relative plus ~1e-6 absolute: 2e-5 relative
// plus 5e-6 absolute keeps a 5x margin. (Was 1e-4 and 1e-5.)
constexpr double kLossRtol = 2e-5;
constexpr double kLossAtol = 5e-6;
// dlogits = dloss / N (softmax - onehot): softmax = exp(z - lse) inherits lse's absolute error
// (~3e-6, above) as a relative error, plus 2 ulp of expf: 1e-4 relative keeps a 30x margin;
// the absolute part, 1e-6 of |dloss| / N, covers entries that cancel. (Was 1e-3 relative.)
constexpr double kLossGradRtol = 1e-4;

double acc_atol(const Tensor& want) {
  return kAccAtolScale * max_abs(want);
}

template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

std::string bool_str(bool b) {
  return b ? "yes" : "no";
}

// The one place tensors and modules go to the device under test, and come back.
Tensor to_device(const Tensor& t) {
  return t.to(kCuda);
}
Tensor to_host(const Tensor& t) {
  return t.to(Device::cpu());
}
void move_to_device(nd::Module& m) {
  m.to(kCuda);
}

// An input with identical values on the CPU and on the device; both are leaves.
struct Input {
  Tensor cpu, cuda;
};

Input make_input(const Tensor& host, bool requires_grad = true) {
  Input in{host.detach().clone(), to_device(host.detach())};
  if (requires_grad) {
    in.cpu.set_requires_grad(true);
    in.cuda.set_requires_grad(true);
  }
  return in;
}

Input uniform_input(const Shape& s, double lo, double hi, Generator& gen, bool grad = true) {
  return make_input(nd::uniform_tensor(s, lo, hi, gen), grad);
}

// The fixed random weights r of loss = sum(out * r).
Tensor random_r(const Shape& s, Generator& gen) {
  return nd::uniform_tensor(s, -1.0, 1.0, gen);
}

// loss = sum(out * r) with r moved to out's device; runs the backward.
void backward_sum_r(const Tensor& out, const Tensor& r_host) {
  ops::sum(ops::mul(out, r_host.to(out.device()).to(out.dtype()))).backward();
}

void require_on_cuda(const Tensor& t, const std::string& what) {
  INFO(what);
  REQUIRE(t.defined());
  REQUIRE(t.device() == kCuda);
}

void require_grad_close(const Input& in, double rtol, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(in.cpu.grad().defined());
  REQUIRE(in.cuda.grad().defined());
  REQUIRE(in.cuda.grad().device() == kCuda);
  require_close(in.cuda.grad(), in.cpu.grad(), rtol, atol, what);
}

void require_acc_grad_close(const Input& in, const std::string& what) {
  INFO(what);
  REQUIRE(in.cpu.grad().defined());
  require_grad_close(in, kAccRtol, acc_atol(in.cpu.grad()), what);
}

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Relu:
      return "relu";
    case UnaryOp::Sigmoid:
      return "sigmoid";
    case UnaryOp::Tanh:
      return "tanh";
    case UnaryOp::Exp:
      return "exp";
    case UnaryOp::Log:
      return "log";
    case UnaryOp::Sqrt:
      return "sqrt";
    case UnaryOp::Neg:
      return "neg";
    case UnaryOp::Square:
      return "square";
    case UnaryOp::Silu:
      return "silu";
    case UnaryOp::Abs:
      return "abs";
  }
  return "?";
}

std::string axes_str(const std::vector<int64_t>& axes) {
  return nd::shape_str(axes);
}

// ================================================================ elementwise

TEST_CASE("cuda unary ops match the CPU forward and backward", "[cuda][elementwise][memcheck]") {
  const std::vector<UnaryOp> all_ops = {
      UnaryOp::Relu, UnaryOp::Sigmoid, UnaryOp::Tanh,   UnaryOp::Exp,  UnaryOp::Log,
      UnaryOp::Sqrt, UnaryOp::Neg,     UnaryOp::Square, UnaryOp::Silu, UnaryOp::Abs};
  const std::vector<Shape> shapes = {{1},    {7},      {13},         {31},     {257},
                                     {1000}, {33, 65}, {3, 5, 7, 1}, {1 << 20}};
  uint64_t seed = 100;
  for (UnaryOp op : all_ops) {
    for (const Shape& s : shapes) {
      ++seed;
      if (left_out_when_small(nd::shape_numel(s))) continue;
      const std::string name = str("unary ", unary_name(op), " x", nd::shape_str(s));
      SECTION(name) {
        INFO(name);
        Generator gen(seed);
        // Log and Sqrt need positive inputs; elsewhere [-3, 3] covers both branches of relu/abs
        // and the curved parts of sigmoid/tanh/silu.
        const bool positive = op == UnaryOp::Log || op == UnaryOp::Sqrt;
        Input x = uniform_input(s, positive ? 0.1 : -3.0, positive ? 2.0 : 3.0, gen);
        Tensor y_cpu = ops::unary(op, x.cpu);
        Tensor y_cuda = ops::unary(op, x.cuda);
        require_on_cuda(y_cuda, name);
        require_close(y_cuda, y_cpu, kElemRtol, kElemAtol, name + " forward");
        const Tensor r = random_r(y_cpu.shape(), gen);
        backward_sum_r(y_cpu, r);
        backward_sum_r(y_cuda, r);
        require_grad_close(x, kElemRtol, kElemAtol, name + " dx");
      }
    }
  }
}

TEST_CASE("cuda broadcasting binary ops match the CPU forward and backward",
          "[cuda][elementwise][memcheck]") {
  struct Case {
    Shape a, b;
  };
  const std::vector<Case> cases = {
      {{1}, {1}},
      {{7}, {7}},
      {{257}, {257}},
      {{31, 33}, {31, 33}},
      {{5, 7}, {7}},
      {{7}, {5, 7}},
      {{4, 1, 6}, {1, 3, 1}},
      {{2, 3, 4}, {1}},
      {{1}, {2, 3, 4}},
      {{13, 1}, {1, 31}},
      {{3, 1, 5, 1}, {1, 7, 1, 9}},
      {{1 << 20}, {1 << 20}},
      {{1024, 1024}, {1024}},
      {{1024, 1024}, {1024, 1}},
  };
  const char* names[] = {"add", "sub", "mul", "div"};
  uint64_t seed = 200;
  for (int op = 0; op < 4; ++op) {
    for (const Case& c : cases) {
      ++seed;
      if (left_out_when_small(std::max(nd::shape_numel(c.a), nd::shape_numel(c.b)))) continue;
      const std::string name = str(names[op], " a", nd::shape_str(c.a), " b", nd::shape_str(c.b));
      SECTION(name) {
        INFO(name);
        Generator gen(seed);
        Input a = uniform_input(c.a, -2.0, 2.0, gen);
        // Denominators are kept in [0.5, 2], away from 0.
        Input b = op == 3 ? uniform_input(c.b, 0.5, 2.0, gen) : uniform_input(c.b, -2.0, 2.0, gen);
        auto apply = [op](const Tensor& x, const Tensor& y) {
          switch (op) {
            case 0:
              return ops::add(x, y);
            case 1:
              return ops::sub(x, y);
            case 2:
              return ops::mul(x, y);
            default:
              return ops::div(x, y);
          }
        };
        Tensor out_cpu = apply(a.cpu, b.cpu);
        Tensor out_cuda = apply(a.cuda, b.cuda);
        require_on_cuda(out_cuda, name);
        require_close(out_cuda, out_cpu, kElemRtol, kElemAtol, name + " forward");
        const Tensor r = random_r(out_cpu.shape(), gen);
        backward_sum_r(out_cpu, r);
        backward_sum_r(out_cuda, r);
        // The gradient of a broadcast operand is a sum over the broadcast axes.
        const int64_t n_out = out_cpu.numel();
        for (auto [in, what] : {std::make_pair(&a, "da"), std::make_pair(&b, "db")}) {
          if (in->cpu.numel() < n_out)
            require_acc_grad_close(*in, name + " " + what);
          else
            require_grad_close(*in, kElemRtol, kElemAtol, name + " " + what);
        }
      }
    }
  }
}

TEST_CASE("cuda affine matches the CPU forward and backward", "[cuda][elementwise][memcheck]") {
  const std::vector<Shape> shapes = {{1}, {13}, {257}, {7, 33}, {1 << 20}};
  const std::vector<std::pair<double, double>> coefs = {{2.5, -1.0}, {0.0, 3.0}, {-1.0, 0.5}};
  uint64_t seed = 300;
  for (const Shape& s : shapes) {
    for (auto [alpha, beta] : coefs) {
      for (bool transposed : {false, true}) {
        if (transposed && s.size() != 2) continue;
        ++seed;
        if (left_out_when_small(nd::shape_numel(s))) continue;
        const std::string name = str("affine x", nd::shape_str(s), " alpha ", alpha, " beta ", beta,
                                     transposed ? " (transposed view)" : "");
        SECTION(name) {
          INFO(name);
          Generator gen(seed);
          Input x = uniform_input(s, -3.0, 3.0, gen);
          auto view = [transposed](const Tensor& t) { return transposed ? t.transpose(0, 1) : t; };
          Tensor y_cpu = ops::affine(view(x.cpu), alpha, beta);
          Tensor y_cuda = ops::affine(view(x.cuda), alpha, beta);
          require_on_cuda(y_cuda, name);
          require_close(y_cuda, y_cpu, kElemRtol, kElemAtol, name + " forward");
          const Tensor r = random_r(y_cpu.shape(), gen);
          backward_sum_r(y_cpu, r);
          backward_sum_r(y_cuda, r);
          require_grad_close(x, kElemRtol, kElemAtol, name + " dx");
        }
      }
    }
  }
}

TEST_CASE("cuda copies of permuted views match the CPU exactly",
          "[cuda][elementwise][copy][memcheck]") {
  struct Case {
    Shape shape;
    std::vector<int64_t> perm;
  };
  const std::vector<Case> cases = {
      {{1, 1, 1}, {2, 1, 0}},       {{7}, {0}},
      {{3, 5, 7}, {2, 0, 1}},       {{31, 33}, {1, 0}},
      {{2, 3, 4, 5}, {3, 1, 0, 2}}, {{13, 1, 17}, {1, 2, 0}},
      {{1024, 1024}, {1, 0}},
  };
  uint64_t seed = 400;
  for (const Case& c : cases) {
    ++seed;
    if (left_out_when_small(nd::shape_numel(c.shape))) continue;
    const std::string name =
        str("contiguous of x", nd::shape_str(c.shape), " permuted ", axes_str(c.perm));
    SECTION(name) {
      INFO(name);
      Generator gen(seed);
      Input x = uniform_input(c.shape, -1.0, 1.0, gen);
      Tensor y_cpu = x.cpu.permute(c.perm).contiguous();
      Tensor y_cuda = x.cuda.permute(c.perm).contiguous();
      require_on_cuda(y_cuda, name);
      REQUIRE(y_cuda.is_contiguous());
      // A copy moves values without arithmetic: exact.
      require_equal(y_cuda, y_cpu, name + " forward");
      const Tensor r = random_r(y_cpu.shape(), gen);
      backward_sum_r(y_cpu, r);
      backward_sum_r(y_cuda, r);
      require_grad_close(x, 0.0, 0.0, name + " dx");
    }
  }
  SECTION("clone of a transposed view and a leading-dim slice") {
    Generator gen(450);
    Input x = uniform_input({37, 29}, -1.0, 1.0, gen);
    require_equal(x.cuda.transpose(0, 1).clone(), x.cpu.transpose(0, 1).clone(),
                  "clone of transposed (37, 29)");
    Tensor s_cpu = x.cpu.slice(0, 3, 20).contiguous();
    Tensor s_cuda = x.cuda.slice(0, 3, 20).contiguous();
    require_on_cuda(s_cuda, "slice");
    require_equal(s_cuda, s_cpu, "slice(0, 3, 20) of (37, 29)");
    const Tensor r = random_r(s_cpu.shape(), gen);
    backward_sum_r(s_cpu, r);
    backward_sum_r(s_cuda, r);
    require_grad_close(x, 0.0, 0.0, "slice(0, 3, 20) dx");
  }
}

// The backward of a slice along a non-leading dimension scatters the gradient into a
// non-contiguous view of a zero tensor (scatter_strided_cuda); a stepped slice too.
TEST_CASE("cuda slice along a non-leading dimension matches the CPU forward and backward",
          "[cuda][elementwise][copy][memcheck]") {
  Generator gen(460);
  Input x = uniform_input({7, 13}, -1.0, 1.0, gen);
  Tensor s_cpu = x.cpu.slice(1, 2, 9);
  Tensor s_cuda = x.cuda.slice(1, 2, 9);
  require_on_cuda(s_cuda, "slice(1, 2, 9)");
  require_equal(s_cuda, s_cpu, "slice(1, 2, 9) of (7, 13) forward");
  const Tensor r = random_r(s_cpu.shape(), gen);
  backward_sum_r(s_cpu, r);
  backward_sum_r(s_cuda, r);
  require_grad_close(x, 0.0, 0.0, "slice(1, 2, 9) dx");
  Input y = uniform_input({5, 17}, -1.0, 1.0, gen);
  Tensor t_cpu = y.cpu.slice(1, 1, 17, 4), t_cuda = y.cuda.slice(1, 1, 17, 4);
  require_equal(t_cuda, t_cpu, "slice(1, 1, 17, 4) of (5, 17) forward");
  const Tensor r2 = random_r(t_cpu.shape(), gen);
  backward_sum_r(t_cpu, r2);
  backward_sum_r(t_cuda, r2);
  require_grad_close(y, 0.0, 0.0, "slice(1, 1, 17, 4) dx");
}

TEST_CASE("cuda dtype casts match the CPU exactly", "[cuda][elementwise][cast][memcheck]") {
  struct Case {
    DType from, to;
  };
  const std::vector<Case> cases = {
      {DType::F32, DType::F64}, {DType::F32, DType::I64}, {DType::F32, DType::I32},
      {DType::F32, DType::U8},  {DType::F64, DType::F32}, {DType::F64, DType::I64},
      {DType::I64, DType::F32}, {DType::I64, DType::F64}, {DType::I32, DType::F32},
      {DType::U8, DType::F32},  {DType::U8, DType::I64},  {DType::I64, DType::I32},
  };
  const std::vector<int64_t> sizes = {1, 13, 1000, (1 << 20) + 3};
  uint64_t seed = 500;
  for (const Case& c : cases) {
    for (int64_t n : sizes) {
      ++seed;
      if (left_out_when_small(n)) continue;
      const std::string name =
          str("cast ", nd::dtype_name(c.from), " -> ", nd::dtype_name(c.to), " n=", n);
      SECTION(name) {
        INFO(name);
        Generator gen(seed);
        Tensor src;
        if (c.from == DType::U8) {
          std::vector<uint8_t> v(static_cast<size_t>(n));
          for (auto& e : v) e = uint8_t(gen.below(256));
          src = Tensor::from_vector(v, {n});
        } else if (c.from == DType::I64 || c.from == DType::I32) {
          // Up to +-2^40 for int64 (inexact in float32: tests rounding); +-2^30 for int32 and for
          // int64 -> int32 (out-of-range narrowing is implementation-defined).
          const bool wide = c.from == DType::I64 && c.to != DType::I32;
          const int64_t range = wide ? (int64_t(1) << 40) : (int64_t(1) << 30);
          std::vector<int64_t> v(static_cast<size_t>(n));
          for (auto& e : v) e = int64_t(gen.below(uint64_t(2 * range))) - range;
          src = Tensor::from_vector(v, {n}).to(c.from);
        } else if (c.to == DType::U8) {
          src = nd::uniform_tensor({n}, 0.0, 255.9, gen, c.from);  // in range of uint8
        } else if (c.to == DType::I32 || c.to == DType::I64) {
          src = nd::uniform_tensor({n}, -1e6, 1e6, gen, c.from);  // truncation of both signs
        } else {
          src = nd::normal_tensor({n}, 0.0, 100.0, gen, c.from);
        }
        Tensor want = src.to(c.to);
        Tensor got = src.to(kCuda).to(c.to);
        require_on_cuda(got, name);
        REQUIRE(got.dtype() == c.to);
        require_equal(got, want, name);
      }
    }
  }
}

TEST_CASE("cuda fill matches the CPU exactly", "[cuda][elementwise][fill][memcheck]") {
  struct Case {
    DType dtype;
    double value;
  };
  const std::vector<Case> cases = {{DType::F32, 3.25}, {DType::F32, 1.0 / 3.0},
                                   {DType::F32, -0.0}, {DType::F64, 1.0 / 3.0},
                                   {DType::I32, -7.0}, {DType::I64, -1099511627776.0},
                                   {DType::U8, 200.0}, {DType::F32, 0.0}};
  const std::vector<Shape> shapes = {{}, {1}, {257}, {3, 31}, {(1 << 20) + 3}};
  for (const Case& c : cases) {
    for (const Shape& s : shapes) {
      if (left_out_when_small(nd::shape_numel(s))) continue;
      const std::string name =
          str("full ", nd::dtype_name(c.dtype), " ", c.value, " x", nd::shape_str(s));
      SECTION(name) {
        INFO(name);
        Tensor want = Tensor::full(s, c.value, c.dtype);
        Tensor got = Tensor::full(s, c.value, c.dtype, kCuda);
        require_on_cuda(got, name);
        REQUIRE(got.dtype() == c.dtype);
        REQUIRE(got.shape() == s);
        require_equal(got, want, name);
      }
    }
  }
  SECTION("zeros, ones and fill_ on device") {
    require_equal(Tensor::zeros({5, 7}, DType::F32, kCuda), Tensor::zeros({5, 7}), "zeros");
    require_equal(Tensor::ones({5, 7}, DType::F64, kCuda), Tensor::ones({5, 7}, DType::F64),
                  "ones");
    Tensor t = Tensor::zeros({1000}, DType::F32, kCuda);
    t.fill_(-2.5);
    require_equal(t, Tensor::full({1000}, -2.5), "fill_");
  }
}

// ================================================================ reductions

struct ReduceCase {
  Shape shape;
  std::vector<int64_t> axes;  // empty: ops::sum(x) / ops::mean(x) over everything
  bool keepdim;
};

const std::vector<ReduceCase>& reduce_cases() {
  static const std::vector<ReduceCase> cases = {
      {{1}, {0}, false},
      {{1}, {}, false},
      {{7}, {0}, false},
      {{257}, {0}, true},
      {{7, 13}, {0}, false},
      {{7, 13}, {1}, false},
      {{7, 13}, {0, 1}, false},
      {{7, 13}, {-1}, true},
      {{3, 5, 7}, {0, 2}, false},
      {{3, 5, 7}, {1}, true},
      {{3, 5, 7}, {}, false},
      {{1, 1, 1}, {0, 2}, false},
      {{2, 31, 257}, {0, 2}, false},
      {{2, 31, 257}, {1}, false},
      {{13, 1, 33}, {0, 2}, true},
      {{4, 5, 6, 7}, {1, 3}, false},
      {{4, 5, 6, 7}, {0, 1, 2}, false},
      {{256, 4096}, {1}, false},
      {{4096, 256}, {0}, false},
      {{1 << 20}, {}, false},  // the large case: 2^20 elements to a scalar
  };
  return cases;
}

std::string reduce_name(const char* op, const ReduceCase& c) {
  return str(op, " x", nd::shape_str(c.shape), " axes ", c.axes.empty() ? "all" : axes_str(c.axes),
             c.keepdim ? " keepdim" : "");
}

TEST_CASE("cuda sum matches the CPU forward and backward", "[cuda][reduce][memcheck][racecheck]") {
  uint64_t seed = 600;
  for (const ReduceCase& c : reduce_cases()) {
    ++seed;
    if (left_out_when_small(nd::shape_numel(c.shape))) continue;
    const std::string name = reduce_name("sum", c);
    SECTION(name) {
      INFO(name);
      Generator gen(seed);
      Input x = uniform_input(c.shape, -1.0, 1.0, gen);
      auto reduce = [&c](const Tensor& t) {
        return c.axes.empty() ? ops::sum(t) : ops::sum(t, c.axes, c.keepdim);
      };
      Tensor y_cpu = reduce(x.cpu);
      Tensor y_cuda = reduce(x.cuda);
      require_on_cuda(y_cuda, name);
      // sum|x| over each reduced group, the scale of the summation error.
      const double abs_sum = max_abs(reduce(ops::abs(x.cpu.detach())));
      require_close(y_cuda, y_cpu, kAccRtol, kSumAtolScale * abs_sum, name + " forward");
      const Tensor r = random_r(y_cpu.shape(), gen);
      backward_sum_r(y_cpu, r);
      backward_sum_r(y_cuda, r);
      // The backward broadcasts r back: exact up to elementwise rounding.
      require_grad_close(x, kElemRtol, kElemAtol, name + " dx");
    }
  }
}

TEST_CASE("cuda mean matches the CPU forward and backward", "[cuda][reduce][memcheck][racecheck]") {
  uint64_t seed = 700;
  for (const ReduceCase& c : reduce_cases()) {
    ++seed;
    if (left_out_when_small(nd::shape_numel(c.shape))) continue;
    const std::string name = reduce_name("mean", c);
    SECTION(name) {
      INFO(name);
      Generator gen(seed);
      Input x = uniform_input(c.shape, -1.0, 1.0, gen);
      auto reduce = [&c](const Tensor& t) {
        return c.axes.empty() ? ops::mean(t) : ops::mean(t, c.axes, c.keepdim);
      };
      Tensor y_cpu = reduce(x.cpu);
      Tensor y_cuda = reduce(x.cuda);
      require_on_cuda(y_cuda, name);
      const double abs_mean = max_abs(reduce(ops::abs(x.cpu.detach())));
      require_close(y_cuda, y_cpu, kAccRtol, kSumAtolScale * abs_mean, name + " forward");
      const Tensor r = random_r(y_cpu.shape(), gen);
      backward_sum_r(y_cpu, r);
      backward_sum_r(y_cuda, r);
      require_grad_close(x, kElemRtol, kElemAtol, name + " dx");
    }
  }
}

TEST_CASE("cuda argmax over rows matches the CPU exactly", "[cuda][reduce][memcheck][racecheck]") {
  struct Case {
    int64_t rows, cols;
    bool transposed;  // argmax of a transposed view (made contiguous by the op)
  };
  const std::vector<Case> cases = {
      {1, 1, false},    {1, 13, false},    {7, 13, false}, {13, 7, true},      {31, 257, false},
      {257, 31, false}, {1000, 10, false}, {33, 65, true}, {3, 100003, false}, {64, 16384, false}};
  uint64_t seed = 800;
  for (const Case& c : cases) {
    ++seed;
    if (left_out_when_small(c.rows * c.cols)) continue;
    const std::string name =
        str("argmax (", c.rows, ", ", c.cols, ")", c.transposed ? " of a transposed view" : "");
    SECTION(name) {
      INFO(name);
      Generator gen(seed);
      // Distinct values in every row (a shuffled range, exact in float32): no ties. A transposed
      // case stores the matrix as (cols, rows) and hands argmax the transposed view.
      std::vector<float> v(static_cast<size_t>(c.rows * c.cols));
      for (int64_t i = 0; i < c.rows; ++i) {
        const std::vector<int64_t> perm = gen.permutation(c.cols);
        for (int64_t j = 0; j < c.cols; ++j) {
          const size_t at = size_t(c.transposed ? j * c.rows + i : i * c.cols + j);
          v[at] = float(perm[size_t(j)] - c.cols / 2);
        }
      }
      const Tensor x = c.transposed ? Tensor::from_vector(v, {c.cols, c.rows}).transpose(0, 1)
                                    : Tensor::from_vector(v, {c.rows, c.cols});
      Tensor want = ops::argmax(x);
      Tensor got = ops::argmax(to_device(x));
      require_on_cuda(got, name);
      REQUIRE(got.dtype() == DType::I64);
      require_equal(got, want, name);
    }
  }
}

// argmax_rows_cpu's rule (kernels/reduce_cpu.cpp), the specification: the first NaN of a row
// wins; otherwise the first index of the largest value (+inf above every finite value).
TEST_CASE("cuda argmax with NaN and infinities and ties matches the CPU exactly",
          "[cuda][reduce][memcheck][racecheck]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  SECTION("hand-built rows with their expected index") {
    // 40 columns: lanes 0-31 and a second pass for 32-39, so merges cross lanes both ways.
    const int64_t cols = 40;
    struct Row {
      std::vector<std::pair<int64_t, float>> set;  // (column, value) over a row of -1
      int64_t want;
      const char* why;
    };
    const std::vector<Row> rows = {
        {{}, 0, "all equal: the first index"},
        {{{5, 2.0f}, {37, 2.0f}}, 5, "a tie within lane 5 (columns 5 and 37)"},
        {{{37, 2.0f}, {5, 1.0f}}, 37, "the maximum in the second pass"},
        {{{34, 2.0f}, {1, 2.0f}}, 1, "a tie across lanes 2 and 1: the smaller index"},
        {{{31, 2.0f}, {32, 2.0f}}, 31, "a tie of lane 31 with lane 0's second column"},
        {{{39, inf}, {3, 1e30f}}, 39, "+inf above the largest finite value"},
        {{{10, inf}, {20, nan}}, 20, "NaN above +inf"},
        {{{20, nan}, {10, inf}}, 20, "NaN above +inf, NaN later in the row"},
        {{{35, nan}, {3, nan}}, 3, "the first NaN wins"},
        {{{0, nan}, {1, inf}}, 0, "NaN in column 0"},
        {{{39, nan}}, 39, "NaN in the last column"},
        {{{7, -inf}}, 0, "-inf loses to -1"},
    };
    std::vector<float> v(rows.size() * size_t(cols), -1.0f);
    std::vector<int64_t> want;
    for (size_t r = 0; r < rows.size(); ++r) {
      for (auto [c, x] : rows[r].set) v[r * size_t(cols) + size_t(c)] = x;
      want.push_back(rows[r].want);
    }
    // A row of -inf only: index 0 on both sides.
    v.insert(v.end(), size_t(cols), -inf);
    want.push_back(0);
    const Tensor x = Tensor::from_vector(v, {int64_t(want.size()), cols});
    const Tensor cpu = ops::argmax(x);
    const Tensor gpu = ops::argmax(to_device(x));
    require_on_cuda(gpu, "argmax of the hand-built rows");
    const std::vector<int64_t> got_cpu = cpu.to_vector<int64_t>(),
                               got_gpu = gpu.to_vector<int64_t>();
    for (size_t r = 0; r < want.size(); ++r) {
      INFO("row " << r << ": " << (r < rows.size() ? rows[r].why : "all -inf"));
      CHECK(got_cpu[r] == want[r]);
      CHECK(got_gpu[r] == want[r]);
    }
  }
  // Values from {-2, ..., 2} (many ties) with 5% NaN, 5% +inf and 5% -inf, over widths below,
  // at and far above a warp.
  for (int64_t cols : {1, 7, 32, 33, 100, 1000}) {
    const std::string name = str("random rows of ties and NaN and infinities cols=", cols);
    SECTION(name) {
      INFO(name);
      Generator gen(uint64_t(850 + cols));
      const int64_t rows = 2000;
      std::vector<float> v(size_t(rows * cols));
      for (float& e : v) {
        const uint64_t k = gen.below(100);
        e = k < 5 ? nan : k < 10 ? inf : k < 15 ? -inf : float(int64_t(gen.below(5)) - 2);
      }
      const Tensor x = Tensor::from_vector(v, {rows, cols});
      const Tensor got = ops::argmax(to_device(x));
      require_on_cuda(got, name);
      require_equal(got, ops::argmax(x), name);
    }
  }
}

// ================================================================ matmul

TEST_CASE("cuda matmul (2-D) matches the CPU forward and backward", "[cuda][matmul][memcheck]") {
  struct Case {
    int64_t m, k, n;
  };
  const std::vector<Case> cases = {{1, 1, 1},  {7, 13, 5},    {33, 65, 17}, {1, 257, 31},
                                   {31, 1, 7}, {100, 3, 300}, {64, 64, 64}, {512, 1024, 256}};
  uint64_t seed = 900;
  for (const Case& c : cases) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool ta = variant & 1, tb = variant & 2;
      ++seed;
      if (left_out_when_small(std::max({c.m * c.k, c.k * c.n, c.m * c.n}))) continue;
      const std::string name = str("matmul m=", c.m, " k=", c.k, " n=", c.n,
                                   ta ? " a=transposed view" : "", tb ? " b=transposed view" : "");
      SECTION(name) {
        INFO(name);
        Generator gen(seed);
        // Operands that are transposed views are stored transposed; the leaves are the stored
        // tensors, so their gradients come back through the transpose.
        Input a = uniform_input(ta ? Shape{c.k, c.m} : Shape{c.m, c.k}, -1.0, 1.0, gen);
        Input b = uniform_input(tb ? Shape{c.n, c.k} : Shape{c.k, c.n}, -1.0, 1.0, gen);
        auto va = [ta](const Tensor& t) { return ta ? t.transpose(0, 1) : t; };
        auto vb = [tb](const Tensor& t) { return tb ? t.transpose(0, 1) : t; };
        Tensor y_cpu = ops::matmul(va(a.cpu), vb(b.cpu));
        Tensor y_cuda = ops::matmul(va(a.cuda), vb(b.cuda));
        require_on_cuda(y_cuda, name);
        require_close(y_cuda, y_cpu, kMatmulRtol, kMatmulAtolScale * max_abs(y_cpu),
                      name + " forward");
        const Tensor r = random_r(y_cpu.shape(), gen);
        backward_sum_r(y_cpu, r);
        backward_sum_r(y_cuda, r);
        require_grad_close(a, kMatmulRtol, kMatmulAtolScale * max_abs(a.cpu.grad()), name + " da");
        require_grad_close(b, kMatmulRtol, kMatmulAtolScale * max_abs(b.cpu.grad()), name + " db");
      }
    }
  }
}

TEST_CASE("cuda batched matmul (3-D) matches the CPU forward and backward",
          "[cuda][matmul][memcheck]") {
  struct Case {
    int64_t batch, m, k, n;
  };
  const std::vector<Case> cases = {{1, 1, 1, 1},    {3, 7, 13, 5}, {5, 33, 65, 17},
                                   {2, 1, 257, 31}, {4, 31, 1, 7}, {16, 128, 256, 64}};
  // 0: plain, 1: a transposed view, 2: b transposed view, 3: both, 4: a is a batch-permuted view
  // (not expressible as a strided batch: copied by the op).
  const char* variant_names[] = {"", " a=transposed view", " b=transposed view",
                                 " a,b=transposed views", " a=batch-permuted view"};
  uint64_t seed = 1000;
  for (const Case& c : cases) {
    for (int variant = 0; variant < 5; ++variant) {
      ++seed;
      if (left_out_when_small(c.batch * std::max({c.m * c.k, c.k * c.n, c.m * c.n}))) continue;
      const std::string name =
          str("bmm B=", c.batch, " m=", c.m, " k=", c.k, " n=", c.n, variant_names[variant]);
      SECTION(name) {
        INFO(name);
        Generator gen(seed);
        const bool ta = variant == 1 || variant == 3, tb = variant == 2 || variant == 3;
        const bool pa = variant == 4;
        Shape sa = ta ? Shape{c.batch, c.k, c.m} : Shape{c.batch, c.m, c.k};
        if (pa) sa = {c.m, c.batch, c.k};
        Input a = uniform_input(sa, -1.0, 1.0, gen);
        Input b =
            uniform_input(tb ? Shape{c.batch, c.n, c.k} : Shape{c.batch, c.k, c.n}, -1.0, 1.0, gen);
        auto va = [ta, pa](const Tensor& t) {
          if (pa) return t.permute({1, 0, 2});
          return ta ? t.transpose(1, 2) : t;
        };
        auto vb = [tb](const Tensor& t) { return tb ? t.transpose(1, 2) : t; };
        Tensor y_cpu = ops::matmul(va(a.cpu), vb(b.cpu));
        Tensor y_cuda = ops::matmul(va(a.cuda), vb(b.cuda));
        require_on_cuda(y_cuda, name);
        REQUIRE(y_cuda.shape() == Shape{c.batch, c.m, c.n});
        require_close(y_cuda, y_cpu, kMatmulRtol, kMatmulAtolScale * max_abs(y_cpu),
                      name + " forward");
        const Tensor r = random_r(y_cpu.shape(), gen);
        backward_sum_r(y_cpu, r);
        backward_sum_r(y_cuda, r);
        require_grad_close(a, kMatmulRtol, kMatmulAtolScale * max_abs(a.cpu.grad()), name + " da");
        require_grad_close(b, kMatmulRtol, kMatmulAtolScale * max_abs(b.cpu.grad()), name + " db");
      }
    }
  }
}

TEST_CASE("cuda linear matches the CPU forward and backward", "[cuda][matmul][memcheck]") {
  struct Case {
    int64_t n, in, out;
  };
  const std::vector<Case> cases = {{1, 1, 1},       {7, 13, 5},   {33, 65, 17},
                                   {300, 784, 128}, {3, 257, 10}, {512, 1024, 256}};
  uint64_t seed = 1100;
  for (const Case& c : cases) {
    for (bool bias : {true, false}) {
      ++seed;
      if (left_out_when_small(std::max({c.n * c.in, c.in * c.out, c.n * c.out}), c.n)) continue;
      const std::string name =
          str("linear N=", c.n, " in=", c.in, " out=", c.out, " bias=", bool_str(bias));
      SECTION(name) {
        INFO(name);
        Generator gen(seed);
        Input x = uniform_input({c.n, c.in}, -1.0, 1.0, gen);
        Input w = uniform_input({c.out, c.in}, -1.0, 1.0, gen);
        Input b = bias ? uniform_input({c.out}, -1.0, 1.0, gen) : Input{};
        Tensor y_cpu = ops::linear(x.cpu, w.cpu, b.cpu);
        Tensor y_cuda = ops::linear(x.cuda, w.cuda, b.cuda);
        require_on_cuda(y_cuda, name);
        require_close(y_cuda, y_cpu, kMatmulRtol, kMatmulAtolScale * max_abs(y_cpu),
                      name + " forward");
        const Tensor r = random_r(y_cpu.shape(), gen);
        backward_sum_r(y_cpu, r);
        backward_sum_r(y_cuda, r);
        require_grad_close(x, kMatmulRtol, kMatmulAtolScale * max_abs(x.cpu.grad()), name + " dx");
        require_grad_close(w, kMatmulRtol, kMatmulAtolScale * max_abs(w.cpu.grad()), name + " dw");
        // db is a plain sum of r over the batch.
        if (bias) require_acc_grad_close(b, name + " db");
      }
    }
  }
}

// ================================================================ convolution

TEST_CASE("cuda conv2d matches the CPU forward and backward", "[cuda][conv][memcheck]") {
  struct Case {
    int64_t n, c, h, w, o, k;
    ops::Conv2dParams p;
    bool bias;
  };
  // Conv2dParams: {stride, padding, dilation, groups}
  const std::vector<Case> cases = {
      {1, 1, 1, 1, 1, 1, {1, 0, 1, 1}, true},        // the smallest
      {1, 3, 7, 9, 5, 3, {1, 1, 1, 1}, true},        // odd spatial, padding 1
      {3, 3, 7, 9, 16, 3, {2, 0, 1, 1}, false},      // stride 2, no padding
      {3, 16, 13, 11, 16, 5, {1, 2, 1, 2}, true},    // 5x5, groups 2
      {3, 16, 9, 9, 32, 3, {1, 1, 1, 2}, false},     // groups 2, more outputs than inputs
      {3, 16, 31, 17, 16, 3, {1, 1, 1, 16}, true},   // depthwise
      {2, 64, 16, 16, 64, 3, {2, 1, 1, 64}, false},  // depthwise, stride 2
      {1, 3, 32, 32, 64, 7, {2, 2, 1, 1}, false},    // 7x7 stem-like, stride 2, padding 2
      {3, 16, 32, 32, 16, 3, {1, 2, 2, 1}, true},    // dilation 2, padding 2
      {3, 16, 7, 9, 16, 5, {1, 2, 2, 1}, false},     // dilation 2 with a 5x5 kernel
      {3, 16, 13, 13, 16, 3, {2, 1, 2, 1}, true},    // dilation 2 and stride 2
      {3, 64, 9, 7, 64, 1, {1, 0, 1, 1}, false},     // 1x1
      {1, 1, 32, 32, 1, 5, {2, 0, 1, 1}, true},      // one channel
      {3, 3, 32, 32, 16, 7, {1, 2, 1, 1}, true},     // 7x7 stride 1
      {8, 64, 32, 32, 64, 3, {1, 1, 1, 1}, true},    // the large case
  };
  uint64_t seed = 1200;
  for (const Case& c : cases) {
    ++seed;
    // The larger of input and (stride-1 bound on the) output.
    if (left_out_when_small(c.n * std::max(c.c, c.o) * c.h * c.w)) continue;
    const std::string name =
        str("conv2d x(", c.n, ", ", c.c, ", ", c.h, ", ", c.w, ") out=", c.o, " k=", c.k,
            " stride=", c.p.stride, " pad=", c.p.padding, " dil=", c.p.dilation,
            " groups=", c.p.groups, " bias=", bool_str(c.bias));
    SECTION(name) {
      INFO(name);
      Generator gen(seed);
      // PyTorch's default scale for the weights keeps outputs O(1) whatever the fan-in.
      const double bound = 1.0 / std::sqrt(double(c.c / c.p.groups * c.k * c.k));
      Input x = uniform_input({c.n, c.c, c.h, c.w}, -1.0, 1.0, gen);
      Input w = uniform_input({c.o, c.c / c.p.groups, c.k, c.k}, -bound, bound, gen);
      Input b = c.bias ? uniform_input({c.o}, -bound, bound, gen) : Input{};
      Tensor y_cpu = ops::conv2d(x.cpu, w.cpu, b.cpu, c.p);
      Tensor y_cuda = ops::conv2d(x.cuda, w.cuda, b.cuda, c.p);
      require_on_cuda(y_cuda, name);
      require_close(y_cuda, y_cpu, kAccRtol, acc_atol(y_cpu), name + " forward");
      const Tensor r = random_r(y_cpu.shape(), gen);
      backward_sum_r(y_cpu, r);
      backward_sum_r(y_cuda, r);
      require_acc_grad_close(x, name + " dx");
      require_acc_grad_close(w, name + " dw");
      if (c.bias) require_acc_grad_close(b, name + " db");
    }
  }
}

TEST_CASE("cuda im2col matches the CPU forward (exactly) and backward (col2im)",
          "[cuda][conv][memcheck]") {
  struct Case {
    int64_t n, c, h, w, k;
    ops::Conv2dParams p;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, 1, 1, {1, 0, 1, 1}},    {1, 3, 7, 9, 3, {1, 1, 1, 1}},
      {3, 3, 7, 9, 3, {2, 0, 1, 1}},    {3, 16, 13, 11, 5, {1, 2, 2, 1}},
      {3, 1, 32, 32, 7, {2, 2, 1, 1}},  {1, 64, 9, 7, 1, {1, 0, 1, 1}},
      {3, 16, 31, 17, 3, {2, 1, 2, 1}}, {2, 3, 32, 32, 5, {1, 2, 1, 1}},
      {4, 64, 32, 32, 3, {1, 1, 1, 1}},  // the large case
  };
  uint64_t seed = 1300;
  for (const Case& c : cases) {
    ++seed;
    // The columns: at most N * C * k^2 * H * W elements.
    if (left_out_when_small(c.n * c.c * c.k * c.k * c.h * c.w)) continue;
    const std::string name =
        str("im2col x(", c.n, ", ", c.c, ", ", c.h, ", ", c.w, ") k=", c.k, " stride=", c.p.stride,
            " pad=", c.p.padding, " dil=", c.p.dilation);
    SECTION(name) {
      INFO(name);
      Generator gen(seed);
      Input x = uniform_input({c.n, c.c, c.h, c.w}, -1.0, 1.0, gen);
      Tensor y_cpu = ops::im2col(x.cpu, c.k, c.k, c.p);
      Tensor y_cuda = ops::im2col(x.cuda, c.k, c.k, c.p);
      require_on_cuda(y_cuda, name);
      // A gather with zero padding: exact.
      require_equal(y_cuda, y_cpu, name + " forward");
      const Tensor r = random_r(y_cpu.shape(), gen);
      backward_sum_r(y_cpu, r);
      backward_sum_r(y_cuda, r);
      // col2im adds up to k*k overlapping columns per pixel, in different orders.
      require_acc_grad_close(x, name + " dx (col2im)");
    }
  }
}

// ================================================================ losses

TEST_CASE("cuda losses match the CPU forward and backward", "[cuda][loss][memcheck][racecheck]") {
  uint64_t seed = 1400;
  for (LossKind kind : {LossKind::CrossEntropy, LossKind::L2}) {
    for (int64_t n : {1, 7, 300}) {
      for (int64_t k : {1, 10, 1000}) {
        ++seed;
        const std::string name =
            str(kind == LossKind::CrossEntropy ? "cross_entropy" : "l2_loss", " N=", n, " K=", k);
        SECTION(name) {
          INFO(name);
          Generator gen(seed);
          Input z = make_input(nd::normal_tensor({n, k}, 0.0, 2.0, gen));
          std::vector<int64_t> l(static_cast<size_t>(n));
          for (auto& e : l) e = int64_t(gen.below(uint64_t(k)));
          const Tensor labels = Tensor::from_vector(l, {n});
          Tensor loss_cpu = ops::loss(kind, z.cpu, labels);
          Tensor loss_cuda = ops::loss(kind, z.cuda, to_device(labels));
          require_on_cuda(loss_cuda, name);
          REQUIRE(loss_cuda.numel() == 1);
          // One value averaged over at most 300 rows of at most 1000 terms each (kLossRtol).
          require_close(loss_cuda, loss_cpu, kLossRtol, kLossAtol, name + " loss");
          const Tensor r = random_r(loss_cpu.shape(), gen);  // dloss != 1
          backward_sum_r(loss_cpu, r);
          backward_sum_r(loss_cuda, r);
          // dlogits = dloss * (softmax - onehot) / N (or (z - onehot) / N): its natural scale is
          // |dloss| / N. Entries of a 1000-way softmax are far smaller than that scale, so the
          // absolute part is 1e-6 of it (~16 float32 ulps) and rtol carries the rest.
          const double scale = std::abs(r.item()) / double(n);
          require_grad_close(z, kLossGradRtol, 1e-6 * scale, name + " dlogits");
        }
      }
    }
  }
}

// ================================================================ batch norm

// Smallest biased variance over channels of x (N, C, S...) computed on the host in double.
double min_channel_var(const Tensor& x) {
  const std::vector<double> v = nd::test::host_values(x);
  const int64_t n = x.shape()[0], c = x.shape()[1], s = x.numel() / std::max<int64_t>(n * c, 1);
  double min_var = 1e300;
  for (int64_t ch = 0; ch < c; ++ch) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) sum += v[size_t((i * c + ch) * s + j)];
    const double mean = sum / double(n * s);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < s; ++j) {
        const double d = v[size_t((i * c + ch) * s + j)] - mean;
        sq += d * d;
      }
    min_var = std::min(min_var, sq / double(n * s));
  }
  return min_var;
}

TEST_CASE("cuda batch_norm matches the CPU forward and backward and in running statistics",
          "[cuda][batchnorm][memcheck][racecheck]") {
  struct Case {
    Shape shape;
    bool affine, training, running;
  };
  std::vector<Case> cases;
  const std::vector<Shape> shapes = {{3, 1},        {7, 13},         {300, 31},
                                     {64, 257},     {1, 3, 5, 7},    {3, 16, 17, 19},
                                     {2, 64, 7, 9}, {16, 64, 32, 32}};
  for (const Shape& s : shapes)
    for (bool affine : {true, false})
      for (bool training : {true, false}) cases.push_back({s, affine, training, true});
  // Eval mode with a batch of one; training without running statistics.
  cases.push_back({{1, 13}, true, false, true});
  cases.push_back({{1, 3, 1, 1}, false, false, true});
  cases.push_back({{7, 13}, true, true, false});
  cases.push_back({{3, 16, 17, 19}, false, true, false});

  const double momentum = 0.1, eps = 1e-5;
  uint64_t seed = 1500;
  for (const Case& c : cases) {
    ++seed;
    if (left_out_when_small(nd::shape_numel(c.shape), c.shape[0])) continue;
    const std::string name =
        str("batch_norm x", nd::shape_str(c.shape), " affine=", bool_str(c.affine),
            c.training ? " training" : " eval", " running=", bool_str(c.running));
    SECTION(name) {
      INFO(name);
      Generator gen(seed);
      const int64_t ch = c.shape[1];
      Input x = make_input(nd::normal_tensor(c.shape, 0.5, 2.0, gen));
      Input gamma = c.affine ? uniform_input({ch}, 0.5, 1.5, gen) : Input{};
      Input beta = c.affine ? uniform_input({ch}, -0.5, 0.5, gen) : Input{};
      const Tensor rm0 = nd::uniform_tensor({ch}, -0.5, 0.5, gen);
      const Tensor rv0 = nd::uniform_tensor({ch}, 0.5, 2.0, gen);
      Tensor rm_cpu, rv_cpu, rm_cuda, rv_cuda;
      if (c.running) {
        rm_cpu = rm0.clone();
        rv_cpu = rv0.clone();
        rm_cuda = to_device(rm0);
        rv_cuda = to_device(rv0);
      }
      Tensor y_cpu =
          ops::batch_norm(x.cpu, gamma.cpu, beta.cpu, rm_cpu, rv_cpu, c.training, momentum, eps);
      Tensor y_cuda = ops::batch_norm(x.cuda, gamma.cuda, beta.cuda, rm_cuda, rv_cuda, c.training,
                                      momentum, eps);
      require_on_cuda(y_cuda, name);
      require_close(y_cuda, y_cpu, kAccRtol, acc_atol(y_cpu), name + " y");
      if (c.running) {
        // Updated in place in training (PyTorch rule), untouched in eval.
        require_close(rm_cuda, rm_cpu, kAccRtol, acc_atol(rm_cpu), name + " running_mean");
        require_close(rv_cuda, rv_cpu, kAccRtol, acc_atol(rv_cpu), name + " running_var");
        if (!c.training) {
          require_equal(rm_cuda, rm0, name + " running_mean untouched in eval");
          require_equal(rv_cuda, rv0, name + " running_var untouched in eval");
        }
      }
      const Tensor r = random_r(y_cpu.shape(), gen);
      backward_sum_r(y_cpu, r);
      backward_sum_r(y_cuda, r);
      // dx = gamma * invstd * (dy - [mean(dy) + xhat * mean(dy * xhat)] in training): its scale is
      // max|gamma| * max invstd * max|dy|, and in training the bracket cancels most of dy when a
      // channel has few values, so the absolute part is relative to that scale, not to max|dx|.
      const double gmax = c.affine ? max_abs(gamma.cpu) : 1.0;
      const double var_min = c.training ? min_channel_var(x.cpu) : 0.5;  // rv0 >= 0.5
      const double dx_scale = gmax * max_abs(r) / std::sqrt(var_min + eps);
      require_grad_close(x, kAccRtol, kAccAtolScale * dx_scale, name + " dx");
      if (c.affine) {
        require_acc_grad_close(gamma, name + " dgamma");
        require_acc_grad_close(beta, name + " dbeta");
      }
    }
  }
}

// ================================================================ optimizers

TEST_CASE("cuda sgd_step matches the CPU", "[cuda][optim][memcheck]") {
  const std::vector<int64_t> sizes = {1, 7, 257, 1000, 1 << 20};
  uint64_t seed = 1600;
  for (int64_t n : sizes) {
    for (bool first : {true, false}) {
      for (double momentum : {0.0, 0.9}) {
        for (double wd : {0.0, 5e-4}) {
          ++seed;
          if (left_out_when_small(n)) continue;
          const std::string name = str("sgd_step n=", n, " first_step=", bool_str(first),
                                       " momentum=", momentum, " wd=", wd);
          SECTION(name) {
            INFO(name);
            Generator gen(seed);
            nd::ops::SgdConfig cfg;
            cfg.lr = 0.1, cfg.momentum = momentum, cfg.weight_decay = wd, cfg.first_step = first;
            const Tensor p0 = nd::uniform_tensor({n}, -1.0, 1.0, gen);
            const Tensor g0 = nd::normal_tensor({n}, 0.0, 0.01, gen);
            const Tensor buf0 = nd::normal_tensor({n}, 0.0, 0.01, gen);
            Tensor p_cpu = p0.clone(), buf_cpu = buf0.clone();
            Tensor p_cuda = to_device(p0), buf_cuda = to_device(buf0), g_cuda = to_device(g0);
            ops::sgd_step(cfg, p_cpu, g0, buf_cpu);
            ops::sgd_step(cfg, p_cuda, g_cuda, buf_cuda);
            require_on_cuda(p_cuda, name);
            require_close(p_cuda, p_cpu, kElemRtol, kElemAtol, name + " param");
            // The update itself (~1e-3) must agree too, beyond p's own rounding: differences of
            // float32 values near 1 carry ~1e-7 of noise, hence rtol 1e-3 with atol 1e-6.
            require_close(ops::sub(to_host(p_cuda), p0), ops::sub(p_cpu, p0), 1e-3, 1e-6,
                          name + " update");
            require_close(buf_cuda, buf_cpu, kElemRtol, kElemAtol, name + " momentum buffer");
            if (momentum == 0.0) require_equal(buf_cuda, buf0, name + " buffer untouched");
          }
        }
      }
    }
  }
}

TEST_CASE("cuda adam_step matches the CPU", "[cuda][optim][memcheck]") {
  const std::vector<int64_t> sizes = {1, 7, 257, 1000, 1 << 20};
  uint64_t seed = 1700;
  for (int64_t n : sizes) {
    for (int64_t step : {1, 10}) {
      for (double wd : {0.0, 5e-4}) {
        ++seed;
        if (left_out_when_small(n)) continue;
        const std::string name = str("adam_step n=", n, " step=", step, " wd=", wd);
        SECTION(name) {
          INFO(name);
          Generator gen(seed);
          nd::ops::AdamConfig cfg;
          cfg.lr = 1e-2, cfg.weight_decay = wd, cfg.step = step;
          const Tensor p0 = nd::uniform_tensor({n}, -1.0, 1.0, gen);
          // Gradients of magnitude in [0.005, 0.02] with random signs: near g = grad + wd * p = 0
          // the update g / (|g| + eps) is ill-conditioned, and one rounding (an FMA on the GPU,
          // none on the CPU) would move it by far more than any tolerance.
          const Tensor mag = nd::uniform_tensor({n}, 0.005, 0.02, gen);
          const Tensor sign = nd::uniform_tensor({n}, -1.0, 1.0, gen);
          const Tensor g0 = ops::mul(mag, ops::div(sign, ops::abs(sign)));
          // Step 1 starts from zero moments; step 10 from moments a run would have.
          const Tensor m0 = step == 1 ? Tensor::zeros({n}) : nd::normal_tensor({n}, 0.0, 0.01, gen);
          const Tensor v0 =
              step == 1 ? Tensor::zeros({n}) : nd::uniform_tensor({n}, 0.0, 1e-4, gen);
          Tensor p_cpu = p0.clone(), m_cpu = m0.clone(), v_cpu = v0.clone();
          Tensor p_cuda = to_device(p0), m_cuda = to_device(m0), v_cuda = to_device(v0);
          ops::adam_step(cfg, p_cpu, g0, m_cpu, v_cpu);
          ops::adam_step(cfg, p_cuda, to_device(g0), m_cuda, v_cuda);
          require_on_cuda(p_cuda, name);
          require_close(p_cuda, p_cpu, kElemRtol, kElemAtol, name + " param");
          // See sgd_step: the update (~1e-2) compared beyond p's rounding.
          require_close(ops::sub(to_host(p_cuda), p0), ops::sub(p_cpu, p0), 1e-3, 1e-6,
                        name + " update");
          // The moments are small (m ~ 1e-2, v ~ 1e-4): absolute parts relative to their scale.
          require_close(m_cuda, m_cpu, kElemRtol, kElemAtol * max_abs(m_cpu), name + " m");
          require_close(v_cuda, v_cpu, kElemRtol, kElemAtol * max_abs(v_cpu), name + " v");
        }
      }
    }
  }
}

// ================================================================ layers end to end

// Compares the two copies of a network after a forward and backward: every parameter gradient
// and every buffer by name.
void require_same_state(const nd::Module& cpu, const nd::Module& cuda, const std::string& what) {
  const auto pc = cpu.named_parameters(), pg = cuda.named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    const std::string name = what + " grad of " + pc[i].first;
    INFO(name);
    REQUIRE(pg[i].first == pc[i].first);
    REQUIRE(pg[i].second.device() == kCuda);
    REQUIRE(pc[i].second.grad().defined());
    REQUIRE(pg[i].second.grad().defined());
    require_close(pg[i].second.grad(), pc[i].second.grad(), kAccRtol, acc_atol(pc[i].second.grad()),
                  name);
  }
  const auto bc = cpu.named_buffers(), bg = cuda.named_buffers();
  REQUIRE(bc.size() == bg.size());
  for (size_t i = 0; i < bc.size(); ++i) {
    const std::string name = what + " buffer " + bc[i].first;
    INFO(name);
    REQUIRE(bg[i].first == bc[i].first);
    require_close(bg[i].second, bc[i].second, kAccRtol, acc_atol(bc[i].second), name);
  }
}

void require_same_parameters(const nd::Module& cpu, const nd::Module& cuda,
                             const std::string& what) {
  const auto pc = cpu.named_parameters(), pg = cuda.named_parameters();
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    REQUIRE(pg[i].first == pc[i].first);
    REQUIRE(pg[i].second.device() == kCuda);
    require_equal(pg[i].second, pc[i].second, what + " initial " + pc[i].first);
  }
}

std::shared_ptr<nd::Sequential> make_mlp(uint64_t seed) {
  Generator gen(seed);
  auto net = std::make_shared<nd::Sequential>();
  // No bias right before batch norm: its gradient is zero, leaving only rounding noise.
  net->push_back(std::make_shared<nd::Linear>(37, 64, false, gen));
  net->push_back(std::make_shared<nd::BatchNorm1d>(64));
  // Smooth activations: a relu kink could flip on a 1-ulp difference of its input.
  net->push_back(std::make_shared<nd::Activation>(UnaryOp::Tanh));
  net->push_back(std::make_shared<nd::Linear>(64, 31, false, gen));
  net->push_back(std::make_shared<nd::Activation>(UnaryOp::Sigmoid));
  net->push_back(std::make_shared<nd::Linear>(31, 10, true, gen));
  return net;
}

std::shared_ptr<nd::Sequential> make_convnet(uint64_t seed) {
  Generator gen(seed);
  auto net = std::make_shared<nd::Sequential>();
  ops::Conv2dParams p1;
  p1.padding = 1;
  ops::Conv2dParams p2;
  p2.stride = 2, p2.padding = 1;
  net->push_back(std::make_shared<nd::Conv2d>(3, 16, 3, p1, false, gen));  // 7x7 -> 7x7
  net->push_back(std::make_shared<nd::BatchNorm2d>(16));
  net->push_back(std::make_shared<nd::Activation>(UnaryOp::Tanh));
  net->push_back(std::make_shared<nd::Conv2d>(16, 16, 3, p2, true, gen));  // 7x7 -> 4x4
  net->push_back(std::make_shared<nd::Activation>(UnaryOp::Silu));
  net->push_back(std::make_shared<nd::Flatten>());
  net->push_back(std::make_shared<nd::Linear>(16 * 4 * 4, 10, true, gen));
  return net;
}

TEST_CASE("cuda layer stacks match the CPU end to end", "[cuda][layers][memcheck]") {
  struct Case {
    const char* name;
    std::shared_ptr<nd::Sequential> (*make)(uint64_t);
    Shape input;
  };
  const std::vector<Case> cases = {
      {"mlp Linear/BatchNorm1d/Activation", make_mlp, {13, 37}},
      {"convnet Conv2d/BatchNorm2d/Flatten/Linear", make_convnet, {5, 3, 7, 7}}};
  uint64_t seed = 1800;
  for (const Case& c : cases) {
    ++seed;
    const std::string name = str(c.name, " input", nd::shape_str(c.input));
    SECTION(name) {
      INFO(name);
      // Same seed: identical initial weights; then one copy moves to the device.
      auto net_cpu = c.make(seed);
      auto net_cuda = c.make(seed);
      move_to_device(*net_cuda);
      require_same_parameters(*net_cpu, *net_cuda, name);

      Generator gen(seed + 1000);
      const Tensor x = nd::uniform_tensor(c.input, -1.0, 1.0, gen);
      std::vector<int64_t> l(static_cast<size_t>(c.input[0]));
      for (auto& e : l) e = int64_t(gen.below(10));
      const Tensor labels = Tensor::from_vector(l, {c.input[0]});

      Tensor logits_cpu = (*net_cpu)(x);
      Tensor logits_cuda = (*net_cuda)(to_device(x));
      require_on_cuda(logits_cuda, name);
      require_close(logits_cuda, logits_cpu, kAccRtol, acc_atol(logits_cpu), name + " logits");
      Tensor loss_cpu = ops::cross_entropy(logits_cpu, labels);
      Tensor loss_cuda = ops::cross_entropy(logits_cuda, to_device(labels));
      require_close(loss_cuda, loss_cpu, kAccRtol, kAccAtolScale, name + " loss");
      loss_cpu.backward();
      loss_cuda.backward();
      require_same_state(*net_cpu, *net_cuda, name + " training step:");

      // Eval mode uses the running statistics just updated.
      net_cpu->eval();
      net_cuda->eval();
      nd::NoGradGuard no_grad;
      Tensor eval_cpu = (*net_cpu)(x);
      Tensor eval_cuda = (*net_cuda)(to_device(x));
      require_close(eval_cuda, eval_cpu, kAccRtol, acc_atol(eval_cpu), name + " eval logits");
    }
  }
}

}  // namespace
