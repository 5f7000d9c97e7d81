// The GPU math modes of engine/device.h (set_gpu_math): with deterministic algorithms only, two
// identically seeded runs of a few SGD steps of a small CNN (convolution, batch norm, a
// FastDeconv layer, pooling, a linear classifier) end with bitwise equal weights and buffers;
// with TF32 on, conv2d and matmul still match the CPU within the TF32 rounding bound derived
// below; and each test restores the previous mode, after which the GPU is back to full FP32.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "layers/activation.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/deconv.h"
#include "layers/linear.h"
#include "layers/module.h"
#include "layers/pool.h"
#include "test/catch.h"
#include "test/compare.h"

namespace {

namespace ops = nd::ops;
using nd::Device;
using nd::Generator;
using nd::Tensor;

const Device kCuda = Device::cuda(0);
constexpr double kU = 1.0 / 16777216.0;  // float32 unit roundoff, 2^-24

// Sets a math mode for its lifetime and restores the one before.
class GpuMathScope {
 public:
  explicit GpuMathScope(const nd::GpuMath& m) : saved_(nd::gpu_math()) { nd::set_gpu_math(m); }
  ~GpuMathScope() { nd::set_gpu_math(saved_); }
  GpuMathScope(const GpuMathScope&) = delete;
  GpuMathScope& operator=(const GpuMathScope&) = delete;

 private:
  nd::GpuMath saved_;
};

void check_mode_is(const nd::GpuMath& want, const std::string& when) {
  const nd::GpuMath now = nd::gpu_math();
  INFO(when << ": tf32 " << now.tf32 << " (want " << want.tf32 << "), deterministic "
            << now.deterministic << " (want " << want.deterministic << ")");
  CHECK(now.tf32 == want.tf32);
  CHECK(now.deterministic == want.deterministic);
}

// ---------------------------------------------------------------- deterministic mode

std::shared_ptr<nd::Sequential> make_cnn(uint64_t seed) {
  Generator gen(seed);
  ops::Conv2dParams same;
  same.padding = 1;
  nd::DeconvSettings deconv;
  deconv.block = 16;
  auto net = std::make_shared<nd::Sequential>();
  net->push_back(std::make_shared<nd::Conv2d>(3, 16, 3, same, false, gen));
  net->push_back(std::make_shared<nd::BatchNorm2d>(16));
  net->push_back(std::make_shared<nd::Activation>(nd::ops::UnaryOp::Relu));
  net->push_back(std::make_shared<nd::FastDeconv>(16, 32, 3, same, true, deconv, gen));
  net->push_back(std::make_shared<nd::Activation>(nd::ops::UnaryOp::Relu));
  net->push_back(std::make_shared<nd::AdaptiveAvgPool2d>(1));
  net->push_back(std::make_shared<nd::Flatten>());
  net->push_back(std::make_shared<nd::Linear>(32, 10, true, gen));
  return net;
}

struct RunResult {
  std::vector<std::pair<std::string, std::vector<float>>> state;  // parameters, then buffers
  std::vector<float> losses;
};

// Four SGD steps (momentum, weight decay) of the CNN from `seed` on one fixed batch.
RunResult train_cnn(uint64_t seed) {
  auto net = make_cnn(seed);
  net->to(kCuda);
  net->train();
  nd::Sgd opt(net->parameters(), 0.05, 0.9, 5e-4);
  Generator data(seed + 1);
  const int64_t batch = 16;
  const Tensor x = nd::normal_tensor({batch, 3, 16, 16}, 0, 1, data).to(kCuda);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(int64_t(data.below(10)));
  const Tensor y = Tensor::from_vector(labels, {batch}).to(kCuda);
  RunResult r;
  for (int step = 0; step < 4; ++step) {
    opt.zero_grad();
    Tensor loss = ops::cross_entropy((*net)(x), y);
    loss.backward();
    opt.step();
    r.losses.push_back(float(loss.item()));
  }
  for (auto& [name, t] : net->named_parameters()) r.state.emplace_back(name, t.to_vector<float>());
  for (auto& [name, t] : net->named_buffers())
    if (t.dtype() == nd::DType::F32) r.state.emplace_back(name, t.to_vector<float>());
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---------------------------------------------------------------- TF32 mode
// Bound for a product computed with TF32 inputs (10 explicit mantissa bits) and FP32
// accumulation, against the CPU's FP32 result of K-term dot products: converting an operand to
// TF32 errs by < 2^-11 relative when rounded and < 2^-10 when truncated (which tensor cores do to
// unconverted FP32 inputs), so a product a b errs by < 2 * 2^-10 = 2^-9 relative; each side's
// FP32 accumulation of K terms adds <= K u sum|a b| (first order, u = 2^-24). Hence elementwise
//   |gpu - cpu| <= (2^-9 + 2 K u) sum_k |a_ik| |b_kj|,
// evaluated on the CPU as matmul(|A|, |B|) (or conv2d(|x|, |w|)). This is a worst case (random
// roundings give ~sqrt(K) less), so it catches a wrong index, a transposed operand or a
// missing block (errors of order |C|, ~sum|a b| / sqrt(K): >= 15x the bound for K <= 1024), not
// a single dropped term.
double tf32_bound_factor(int64_t k) {
  return std::ldexp(1.0, -9) + 2.0 * double(k) * kU;
}
// cuDNN may also pick a transform algorithm (Winograd, FFT) for a TF32 convolution, which rounds
// transformed operands instead; assumed: their transforms grow the operands' rounding by at most
// 4x (Winograd F(2x2, 3x3) has transform entries of magnitude <= 1 and row sums <= 2 in each of
// two dimensions), hence the factor 4 for conv2d.
constexpr double kConvTransformAllowance = 4.0;

}  // namespace

TEST_CASE("cuda deterministic mode repeats SGD steps of a CNN with FastDeconv bitwise",
          "[cuda][gpu_math]") {
  const nd::GpuMath before = nd::gpu_math();
  RunResult a, b;
  {
    GpuMathScope scope({false, true});
    check_mode_is({false, true}, "inside the scope");
    a = train_cnn(21);
    b = train_cnn(21);
  }
  check_mode_is(before, "after the scope");
  REQUIRE(a.state.size() == b.state.size());
  REQUIRE(!a.state.empty());
  for (size_t i = 0; i < a.losses.size(); ++i) {
    INFO("step " << i << " loss: " << a.losses[i] << " and " << b.losses[i]);
    CHECK(std::isfinite(a.losses[i]));
    CHECK(same_bits({a.losses[i]}, {b.losses[i]}));
  }
  for (size_t i = 0; i < a.state.size(); ++i) {
    INFO("after 4 steps: " << a.state[i].first);
    CHECK(a.state[i].first == b.state[i].first);
    CHECK(same_bits(a.state[i].second, b.state[i].second));
  }
  // The steps did train (the comparison is not of untouched initial weights).
  CHECK(a.losses.back() < a.losses.front());
}

TEST_CASE("cuda TF32 mode keeps conv2d and matmul within the TF32 bound and is restored",
          "[cuda][gpu_math]") {
  const nd::GpuMath before = nd::gpu_math();
  Generator gen(61);
  // matmul: (512, 1024) x (1024, 256), K = 1024.
  const int64_t m = 512, k = 1024, n = 256;
  const Tensor a = nd::uniform_tensor({m, k}, -1.0, 1.0, gen);
  const Tensor b = nd::uniform_tensor({k, n}, -1.0, 1.0, gen);
  const Tensor mm_cpu = ops::matmul(a, b);
  const Tensor mm_bound =
      ops::affine(ops::matmul(ops::abs(a), ops::abs(b)), tf32_bound_factor(k), 0.0);
  // conv2d: (8, 64, 16, 16) with 64 filters of 3x3, padding 1, K = 64 * 9 = 576.
  ops::Conv2dParams p;
  p.padding = 1;
  const Tensor x = nd::uniform_tensor({8, 64, 16, 16}, -1.0, 1.0, gen);
  const double wb = 1.0 / std::sqrt(576.0);
  const Tensor w = nd::uniform_tensor({64, 64, 3, 3}, -wb, wb, gen);
  const Tensor conv_cpu = ops::conv2d(x, w, Tensor(), p);
  const Tensor conv_bound = ops::affine(ops::conv2d(ops::abs(x), ops::abs(w), Tensor(), p),
                                        kConvTransformAllowance * tf32_bound_factor(576), 0.0);
  {
    GpuMathScope scope({true, false});
    check_mode_is({true, false}, "inside the scope");
    const Tensor mm_gpu = ops::matmul(a.to(kCuda), b.to(kCuda));
    const Tensor conv_gpu = ops::conv2d(x.to(kCuda), w.to(kCuda), Tensor(), p);
    REQUIRE(mm_gpu.device() == kCuda);
    // Shown with a failure: how much of the bound the largest error uses.
    INFO("largest error / largest bound: matmul "
         << nd::test::max_abs(ops::sub(mm_gpu.to(Device::cpu()), mm_cpu)) /
                nd::test::max_abs(mm_bound)
         << ", conv2d "
         << nd::test::max_abs(ops::sub(conv_gpu.to(Device::cpu()), conv_cpu)) /
                nd::test::max_abs(conv_bound));
    nd::test::check_within(mm_gpu, mm_cpu, mm_bound, "TF32 matmul (512, 1024) x (1024, 256)");
    nd::test::check_within(conv_gpu, conv_cpu, conv_bound,
                           "TF32 conv2d x(8, 64, 16, 16) w(64, 64, 3, 3) pad 1");
  }
  check_mode_is(before, "after the scope");
  // Back to FP32: the matmul meets test_ops_cuda.cpp's FP32 tolerance again (1e-4 relative plus
  // 1e-5 of max|C|), which TF32 rounding (~5e-3 absolute here) would exceed.
  if (!before.tf32) {
    const Tensor mm_again = ops::matmul(a.to(kCuda), b.to(kCuda));
    nd::test::check_close(mm_again, mm_cpu, 1e-4, 1e-5 * nd::test::max_abs(mm_cpu),
                          "FP32 matmul after the TF32 scope");
  }
}
