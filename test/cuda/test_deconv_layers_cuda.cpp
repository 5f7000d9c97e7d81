// The deconvolution layers on CUDA against the same layers on the CPU (float32 both): built
// from one seed, fed the same batch, compared in output, input gradient, every parameter
// gradient and the updated running buffers; then once more in eval mode. FastDeconv, Delinear
// and ChannelDeconv are separate test cases and each shape its own SECTION, whose data is made
// inside it from a seed of the case's index; every mismatching tensor is reported.
#include <iterator>
#include <sstream>

#include "layers/deconv.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/cuda_cases.h"

using namespace nd;

namespace {

const Device kCuda = Device::cuda(0);

struct Pass {
  Tensor y, dx;
  std::map<std::string, Tensor> grads, buffers;
};

// Forward + backward of loss = sum(y * r) on `device`.
Pass run(Module& m, const Tensor& x_host, const Tensor& r_host, Device device) {
  Tensor x = x_host.to(device).detach();
  x.set_requires_grad(true);
  m.zero_grad();
  Tensor y = m(x);
  ops::sum(ops::mul(y, r_host.to(device))).backward();
  Pass p{y.detach().to(Device::cpu()), x.grad().to(Device::cpu()), {}, {}};
  for (auto& [name, t] : m.named_parameters()) p.grads[name] = t.grad().to(Device::cpu());
  for (auto& [name, t] : m.named_buffers()) p.buffers[name] = t.detach().to(Device::cpu());
  return p;
}

// ---- tolerance: 1e-3 relative plus 1e-4 of the tensor's largest magnitude (at least 1).
// Float32 rounding on both sides (the CPU reference accumulates the covariance in double): the
// covariance sums R rows (R <= ~12.5k here: ChannelDeconv's 512 * 784 / 32), erring typically by
// sqrt(R) u ~ 7e-6 of the terms' scale (u = 2^-24; worst case R u ~ 7e-4). The 5-step
// Newton-Schulz map on the spectrum normalised by ||A||_F has slope <= 115 where its output
// reaches 7.6 (its steepest point is an eigenvalue near 0; computed from the scalar iteration
// y <- y (3 - z y) / 2, z <- (3 - z y) z / 2): input errors grow by <= ~15 relative to D's scale,
// its own 3 GEMMs per step add sqrt(nf) u (nf <= 576) each, and the fold and the convolution add
// sqrt(nf) u again: ~1e-4 of the scale at the steepest slope, far less typically. The gradient
// runs the same chain backwards. Running buffers are momentum averages (errors do not grow over
// the 3 steps). A wrong index, a dropped block or a stale frozen matrix moves entries by O(1) of
// the scale and fails.
constexpr double kLayerRtol = 1e-3;
constexpr double kLayerAtolScale = 1e-4;

// Non-fatal: every mismatching tensor of the pass is reported.
void check_same(const Pass& gpu, const Pass& cpu, const std::string& what) {
  auto close = [](const Tensor& g, const Tensor& c, const std::string& name) {
    test::check_close(g, c, kLayerRtol, kLayerAtolScale * std::max(1.0, test::max_abs(c)), name);
  };
  close(gpu.y, cpu.y, what + ": output");
  close(gpu.dx, cpu.dx, what + ": input gradient");
  test::check_each_named(gpu.grads, cpu.grads, what + ": grad of", close);
  test::check_each_named(gpu.buffers, cpu.buffers, what + ": buffer", close);
}

struct ConvCase {
  int64_t n, c, h, w, o, k, stride, pad, dil, groups, block;
  bool freeze;
  bool large;  // left out under ND_TEST_SMALL=1
};

const ConvCase kConvCases[] = {
    // ResNet-like, nf 576: Newton-Schulz on 576 x 576 (its 11 saved matrices pass 1M elements)
    {8, 64, 16, 16, 64, 3, 1, 1, 1, 1, 64, false, true},
    {4, 3, 32, 32, 16, 3, 1, 1, 1, 1, 64, true, false},     // first layer, block = 3, freeze
    {4, 96, 8, 8, 32, 3, 2, 1, 1, 1, 64, false, false},     // gcd block 32, stride 2
    {4, 32, 9, 9, 32, 3, 1, 1, 1, 32, 64, false, false},    // depthwise
    {4, 64, 8, 8, 64, 3, 1, 1, 1, 16, 64, false, false},    // grouped (ResNeXt-like)
    {4, 64, 16, 16, 128, 1, 2, 0, 1, 1, 64, false, false},  // 1x1 stride-2 shortcut
    {2, 8, 11, 7, 6, 3, 1, 2, 2, 1, 4, false, false},       // padding and dilation, odd sizes
};

}  // namespace

TEST_CASE("cuda FastDeconv matches the CPU in training steps and eval",
          "[cuda][deconv][memcheck]") {
  for (size_t i = 0; i < std::size(kConvCases); ++i) {
    const ConvCase& c = kConvCases[i];
    if (c.large && test::small_sizes_only()) continue;
    std::ostringstream name;
    name << "FastDeconv N" << c.n << " C" << c.c << " " << c.h << "x" << c.w << " O" << c.o << " k"
         << c.k << " s" << c.stride << " p" << c.pad << " d" << c.dil << " g" << c.groups
         << (c.freeze ? " freeze" : "");
    SECTION(name.str()) {
      INFO(name.str());
      auto make = [&] {
        Generator gen(5);
        DeconvSettings s;
        s.block = c.block, s.freeze = c.freeze, s.freeze_iter = 1;
        ops::Conv2dParams p;
        p.stride = c.stride, p.padding = c.pad, p.dilation = c.dil, p.groups = c.groups;
        return std::make_shared<FastDeconv>(c.c, c.o, c.k, p, true, s, gen);
      };
      auto cpu = make(), gpu = make();
      gpu->to(kCuda);
      Generator gen(17 + i);
      Tensor x = normal_tensor({c.n, c.c, c.h, c.w}, 0.3, 1.0, gen);
      // Three training steps (with freeze_iter 1 the third is frozen), then eval.
      for (int step = 0; step < 3; ++step) {
        Tensor r =
            normal_tensor({c.n, c.o, (c.h + 2 * c.pad - c.dil * (c.k - 1) - 1) / c.stride + 1,
                           (c.w + 2 * c.pad - c.dil * (c.k - 1) - 1) / c.stride + 1},
                          0, 1, gen);
        check_same(run(*gpu, x, r, kCuda), run(*cpu, x, r, Device::cpu()),
                   name.str() + " step " + std::to_string(step));
      }
      cpu->eval();
      gpu->eval();
      NoGradGuard no_grad;
      // Eval applies the running matrices through the same fold and convolution.
      test::check_close(gpu->forward(x.to(kCuda)), cpu->forward(x), kLayerRtol, kLayerAtolScale,
                        name.str() + " eval output");
    }
  }
}

TEST_CASE("cuda Delinear matches the CPU", "[cuda][deconv][memcheck]") {
  struct Case {
    int64_t batch, in, out, block;
  };
  const Case cases[] = {
      {128, 512, 10, 512},  // the classifier of the CIFAR networks, batch 128
      {32, 64, 10, 16},     // 4 blocks of 16: 128 rows of the covariance
      {33, 96, 7, 32},      // 3 blocks of 32, odd batch: 99 rows
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    const Case& c = cases[i];
    if (test::left_out_when_small(c.batch * c.in, c.batch)) continue;
    const std::string name = "Delinear " + std::to_string(c.in) + " -> " + std::to_string(c.out) +
                             " block " + std::to_string(c.block) + " batch " +
                             std::to_string(c.batch);
    SECTION(name) {
      auto make = [&c] {
        Generator gen(6);
        DeconvSettings s;
        s.block = c.block;
        return std::make_shared<Delinear>(c.in, c.out, true, s, gen);
      };
      auto cpu = make(), gpu = make();
      gpu->to(kCuda);
      Generator gen(18 + i);
      Tensor x = normal_tensor({c.batch, c.in}, 0.1, 1.0, gen);
      Tensor r = normal_tensor({c.batch, c.out}, 0, 1, gen);
      check_same(run(*gpu, x, r, kCuda), run(*cpu, x, r, Device::cpu()), name);
    }
  }
}

TEST_CASE("cuda ChannelDeconv matches the CPU centred and uncentred", "[cuda][deconv][memcheck]") {
  const Shape shapes[] = {Shape{512, 784}, Shape{16, 70, 6, 6}};
  int64_t index = 0;
  for (bool centred : {true, false}) {
    for (const Shape& shape : shapes) {
      ++index;
      // (512, 784): a batch of 512 (the MLP's first layer), left out at sanitizer sizes.
      if (test::left_out_when_small(shape_numel(shape), shape[0])) continue;
      const std::string name =
          "ChannelDeconv(32) on " + shape_str(shape) + (centred ? " centred" : " uncentred");
      SECTION(name) {
        auto make = [centred] {
          DeconvSettings s;
          s.eps = 1e-2;
          return std::make_shared<ChannelDeconv>(32, s, centred);
        };
        auto cpu = make(), gpu = make();
        gpu->to(kCuda);
        Generator gen(uint64_t(19 + index));
        Tensor x = normal_tensor(shape, 0.2, 1.0, gen), r = normal_tensor(shape, 0, 1, gen);
        check_same(run(*gpu, x, r, kCuda), run(*cpu, x, r, Device::cpu()), name);
      }
    }
  }
}

namespace {

// Running statistics no training step produces: means around 0.5 and matrices I + 0.3 N(0, 1),
// neither symmetric nor a Newton-Schulz output, the same on both devices.
void set_random_statistics(Module& cpu, Module& gpu, uint64_t seed) {
  NoGradGuard no_grad;
  Generator gen(seed);
  auto gpu_buffers = gpu.named_buffers();
  for (auto& [name, t] : cpu.named_buffers()) {
    Tensor v = normal_tensor(t.shape(), 0.0, 0.3, gen);
    if (name == "running_mean") v = ops::affine(v, 1.0, 0.5);
    if (name == "running_deconv") v = ops::add(v, ops::eye(t.shape().back()));
    t.copy_(v);
    for (auto& [gname, g] : gpu_buffers)
      if (gname == name) g.copy_(v);
  }
}

}  // namespace

// Eval mode (and a frozen layer in training) applies the running buffers, not this batch's
// statistics: each deconvolved layer kind of EfficientNet-B0 and MobileNetV2 on running
// statistics far from the identity. (EfficientNet-B0 ND eval logits differing between the
// devices after one training step were float32 overflow, not these layers: its activations pass
// 1e38 and the float64 logits are ~1e102.)
TEST_CASE("cuda deconvolution layers match the CPU on non-identity running statistics",
          "[cuda][deconv][memcheck]") {
  struct Case {
    const char* what;
    int64_t n, c, hw, o, k, stride, groups, n_iter;
    bool bias, freeze;
  };
  const Case cases[] = {
      {"depthwise 3x3, 1 Newton-Schulz step", 2, 32, 8, 32, 3, 1, 32, 1, false, false},
      {"depthwise 3x3 stride 2, 1 step", 2, 24, 7, 24, 3, 2, 24, 1, false, false},
      {"SE fc1: 1x1 on a 1x1 map, bias", 2, 24, 1, 1, 1, 1, 1, 5, true, false},
      {"SE fc2: 1 -> 24 on a 1x1 map, bias", 2, 1, 1, 24, 1, 1, 1, 5, true, false},
      {"projection 1x1, 3 blocks of 32", 2, 96, 4, 24, 1, 1, 1, 1, false, false},
      {"stem 3x3, 10 steps, frozen", 2, 3, 8, 32, 3, 1, 1, 10, false, true},
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    const Case& c = cases[i];
    SECTION(c.what) {
      INFO(c.what);
      auto make = [&c] {
        Generator gen(7);
        DeconvSettings s;
        s.n_iter = c.n_iter, s.freeze = c.freeze, s.freeze_iter = 1;
        ops::Conv2dParams p;
        p.stride = c.stride, p.padding = c.k / 2, p.groups = c.groups;
        return std::make_shared<FastDeconv>(c.c, c.o, c.k, p, c.bias, s, gen);
      };
      auto cpu = make(), gpu = make();
      gpu->to(kCuda);
      set_random_statistics(*cpu, *gpu, 30 + i);
      Generator gen(40 + i);
      Tensor x = normal_tensor({c.n, c.c, c.hw, c.hw}, 0.2, 1.0, gen);
      if (c.freeze) {  // past freeze_iter a training step uses the running buffers too
        cpu->set_freeze_counter(5), gpu->set_freeze_counter(5);
        const int64_t out_hw = (c.hw + 2 * (c.k / 2) - c.k) / c.stride + 1;
        Tensor r = normal_tensor({c.n, c.o, out_hw, out_hw}, 0, 1, gen);
        check_same(run(*gpu, x, r, kCuda), run(*cpu, x, r, Device::cpu()),
                   std::string(c.what) + " frozen training step");
      }
      cpu->eval(), gpu->eval();
      NoGradGuard no_grad;
      Tensor want = cpu->forward(x);
      test::check_close(gpu->forward(x.to(kCuda)), want, kLayerRtol,
                        kLayerAtolScale * std::max(1.0, test::max_abs(want)),
                        std::string(c.what) + " eval output");
    }
  }
  SECTION("Delinear classifier 320 -> 10, block 320") {
    auto make = [] {
      Generator gen(8);
      DeconvSettings s;
      s.block = 512;
      return std::make_shared<Delinear>(320, 10, true, s, gen);
    };
    auto cpu = make(), gpu = make();
    gpu->to(kCuda);
    set_random_statistics(*cpu, *gpu, 50);
    cpu->eval(), gpu->eval();
    Generator gen(51);
    Tensor x = normal_tensor({2, 320}, 0.2, 1.0, gen);
    NoGradGuard no_grad;
    Tensor want = cpu->forward(x);
    test::check_close(gpu->forward(x.to(kCuda)), want, kLayerRtol,
                      kLayerAtolScale * std::max(1.0, test::max_abs(want)), "Delinear eval output");
  }
}
