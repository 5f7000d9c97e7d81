// The deconvolution layers on CUDA against the same layers on the CPU (float32 both): built
// from one seed, fed the same batch, compared in output, input gradient, every parameter
// gradient and the updated running buffers; then once more in eval mode.
#include <sstream>

#include "layers/deconv.h"
#include "test/catch.h"
#include "test/compare.h"

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

// Scale-aware closeness: covariances, 5-step Newton-Schulz and the fold accumulate float
// rounding over R rows and nf-long dot products on both sides, so 1e-3 relative plus 1e-4 of
// the largest magnitude; an indexing error moves values by the full scale.
void require_same(const Pass& gpu, const Pass& cpu, const std::string& what) {
  auto close = [&](const Tensor& g, const Tensor& c, const std::string& name) {
    test::require_close(g, c, 1e-3, 1e-4 * std::max(1.0, test::max_abs(c)), what + ": " + name);
  };
  close(gpu.y, cpu.y, "output");
  close(gpu.dx, cpu.dx, "input gradient");
  for (auto& [name, g] : cpu.grads) close(gpu.grads.at(name), g, "grad of " + name);
  for (auto& [name, b] : cpu.buffers) close(gpu.buffers.at(name), b, "buffer " + name);
}

}  // namespace

TEST_CASE("cuda FastDeconv, Delinear and ChannelDeconv match the CPU", "[cuda][deconv]") {
  struct ConvCase {
    int64_t n, c, h, w, o, k, stride, pad, dil, groups, block;
    bool freeze;
  };
  const ConvCase cases[] = {
      {8, 64, 16, 16, 64, 3, 1, 1, 1, 1, 64, false},   // ResNet-like, nf 576
      {4, 3, 32, 32, 16, 3, 1, 1, 1, 1, 64, true},     // first layer, block = 3, freeze
      {4, 96, 8, 8, 32, 3, 2, 1, 1, 1, 64, false},     // gcd block 32, stride 2
      {4, 32, 9, 9, 32, 3, 1, 1, 1, 32, 64, false},    // depthwise
      {4, 64, 8, 8, 64, 3, 1, 1, 1, 16, 64, false},    // grouped (ResNeXt-like)
      {4, 64, 16, 16, 128, 1, 2, 0, 1, 1, 64, false},  // 1x1 stride-2 shortcut
      {2, 8, 11, 7, 6, 3, 1, 2, 2, 1, 4, false},       // padding and dilation, odd sizes
  };
  for (const ConvCase& c : cases) {
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
      Generator gen(17);
      Tensor x = normal_tensor({c.n, c.c, c.h, c.w}, 0.3, 1.0, gen);
      // Three training steps (with freeze_iter 1 the third is frozen), then eval.
      for (int step = 0; step < 3; ++step) {
        Tensor r =
            normal_tensor({c.n, c.o, (c.h + 2 * c.pad - c.dil * (c.k - 1) - 1) / c.stride + 1,
                           (c.w + 2 * c.pad - c.dil * (c.k - 1) - 1) / c.stride + 1},
                          0, 1, gen);
        require_same(run(*gpu, x, r, kCuda), run(*cpu, x, r, Device::cpu()),
                     name.str() + " step " + std::to_string(step));
      }
      cpu->eval();
      gpu->eval();
      NoGradGuard no_grad;
      test::require_close(gpu->forward(x.to(kCuda)), cpu->forward(x), 1e-3, 1e-4,
                          name.str() + " eval output");
    }
  }
  SECTION("Delinear 512 -> 10, block 512") {
    auto make = [] {
      Generator gen(6);
      DeconvSettings s;
      s.block = 512;
      return std::make_shared<Delinear>(512, 10, true, s, gen);
    };
    auto cpu = make(), gpu = make();
    gpu->to(kCuda);
    Generator gen(18);
    Tensor x = normal_tensor({128, 512}, 0.1, 1.0, gen), r = normal_tensor({128, 10}, 0, 1, gen);
    require_same(run(*gpu, x, r, kCuda), run(*cpu, x, r, Device::cpu()), "Delinear");
  }
  SECTION("ChannelDeconv(32) on (512, 784) and on (16, 70, 6, 6), centred and uncentred") {
    for (bool centred : {true, false}) {
      for (const Shape& shape : {Shape{512, 784}, Shape{16, 70, 6, 6}}) {
        auto make = [centred] {
          DeconvSettings s;
          s.eps = 1e-2;
          return std::make_shared<ChannelDeconv>(32, s, centred);
        };
        auto cpu = make(), gpu = make();
        gpu->to(kCuda);
        Generator gen(19);
        Tensor x = normal_tensor(shape, 0.2, 1.0, gen), r = normal_tensor(shape, 0, 1, gen);
        require_same(run(*gpu, x, r, kCuda), run(*cpu, x, r, Device::cpu()),
                     "ChannelDeconv " + shape_str(shape) + (centred ? "" : " uncentred"));
      }
    }
  }
}
