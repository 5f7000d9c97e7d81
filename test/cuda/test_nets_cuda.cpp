// Every network on CUDA against the same network on the CPU (float32 both): built from one seed,
// one training-mode forward and backward of a small batch, compared in logits, loss, every
// parameter gradient and every buffer after the step's statistics updates; then the eval-mode
// logits. One test case per (network, norm), from the list below, so one network's failure (or
// exception) does not hide another's, and every mismatching tensor of a network is reported.
//
// Logits, loss and buffers are compared element by element. Gradients of deep networks are not:
// float32 cannot hold them elementwise (a 1-ulp change of the input moves them further than any
// fixed tolerance one would call sharp), so each gradient tensor's CUDA-vs-CPU difference is
// measured against the CPU's own spread under a 1-ulp perturbation of the input (see
// check_gradients).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <string>

#include "engine/autograd.h"
#include "engine/device.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/cuda_cases.h"
#include "test/net_tables.h"

using namespace nd;

// Every (network, norm) pair of test::cifar_cases() and test::imagenet_cases(); the test
// "cuda the network list covers every reference network" fails when a pair is added there and
// not here.
#define ND_CUDA_NET_LIST(X)   \
  X(vgg16, bn)                \
  X(vgg16, nd)                \
  X(resnet18, bn)             \
  X(resnet18, nd)             \
  X(preact18, bn)             \
  X(preact18, nd)             \
  X(densenet121, bn)          \
  X(densenet121, nd)          \
  X(resnext29_32x4d, bn)      \
  X(resnext29_32x4d, nd)      \
  X(mobilenetv2, bn)          \
  X(mobilenetv2, nd)          \
  X(dpn92, bn)                \
  X(dpn92, nd)                \
  X(pnasnetA, bn)             \
  X(pnasnetA, nd)             \
  X(senet18, bn)              \
  X(senet18, nd)              \
  X(efficientnetb0, bn)       \
  X(efficientnetb0, nd)       \
  X(imagenet_vgg11, bn)       \
  X(imagenet_vgg11, nd)       \
  X(imagenet_resnet18, bn)    \
  X(imagenet_resnet18, nd)    \
  X(imagenet_densenet121, bn) \
  X(imagenet_densenet121, nd)

namespace {

const Device kCuda = Device::cuda(0);

std::vector<test::NetCase> all_cases() {
  std::vector<test::NetCase> cases = test::cifar_cases();
  for (const auto& c : test::imagenet_cases()) cases.push_back(c);
  return cases;
}

struct Pass {
  Tensor logits, loss;
  std::map<std::string, Tensor> grads, buffers;
  std::set<std::string> without_grad;  // parameters the backward did not reach
};

// One training-mode forward and backward of a freshly built network (so its buffers and dropout
// generators are as built).
Pass run(Module& net, const Tensor& x, const Tensor& y, Device device) {
  net.zero_grad();
  net.train();
  Tensor logits = net(x.to(device));
  Tensor loss = ops::cross_entropy(logits, y.to(device));
  loss.backward();
  Pass p{logits.detach().to(Device::cpu()), loss.detach().to(Device::cpu()), {}, {}, {}};
  for (auto& [name, t] : net.named_parameters()) {
    if (t.grad().defined())
      p.grads[name] = t.grad().to(Device::cpu());
    else
      p.without_grad.insert(name);
  }
  for (auto& [name, t] : net.named_buffers()) p.buffers[name] = t.detach().to(Device::cpu());
  return p;
}

// ---- logits, loss, buffers: 1e-2 relative plus 1e-3 of the tensor's scale (max |want|, at
// least 1), element by element.
// What can be derived: each convolution, linear layer and reduction is a float32 sum of K terms
// (K <= 4608 = 512 * 3 * 3; cuDNN/cuBLAS without TF32 on the GPU, OpenBLAS on the CPU), which
// errs by at most K u sum|terms| and typically by sqrt(K) u sum|terms| (u = 2^-24 ~ 6e-8), i.e.
// ~4e-6 of the terms' scale per layer. BN and ND rescale by 1/sigma (relative errors pass
// through); ND adds a 5-step Newton-Schulz whose slope on the normalised spectrum is bounded
// (see test_deconv_isqrt_fold_cuda.cpp) and whose own rounding is of the same size. Through L
// layers (L up to ~120 in densenet121) first-order errors add: ~sqrt(L) to L times the
// per-layer error, 5e-5 to 1e-3 relative. The 1e-2 margin is the allowance for what is assumed,
// not derived (every block's Lipschitz constant O(1); no ReLU kink or max-pool tie that matters
// flips on a rounding difference). Forward values and statistics hold it in every network; the
// backward, through twice the layers, does not (see check_gradients). A wrong index or a
// missing term moves values by the full scale, 100x beyond it.
constexpr double kNetRtol = 1e-2;
constexpr double kNetAtolScale = 1e-3;

// Non-fatal: every mismatching tensor of the network is reported.
void check_net_close(const Tensor& gpu, const Tensor& cpu, const std::string& what) {
  test::check_close(gpu, cpu, kNetRtol, kNetAtolScale * std::max(1.0, test::max_abs(cpu)), what);
}

// ---- gradients: ||g_cuda - g_cpu|| <= kSpreadFactor * spread + kGradFloor ||g_cpu|| per tensor
// (Frobenius norms, in double), where spread = max over four inputs x' one ulp from x (every
// element up; every element down; alternate elements up and down, twice) of ||g_cpu(x') -
// g_cpu(x)||.
// Why the spread: once the input differs in one bit, every later sum rounds differently, so
// g_cpu(x') - g_cpu(x) is the difference of two independent draws of the CPU's accumulated
// rounding error (plus the input's own 1-ulp effect, no larger), amplified by the network as the
// CUDA's rounding is; g_cuda - g_cpu is a draw of the same kind, from different summation orders.
// Both are sums of many small independent terms, so their norms concentrate and their ratio is
// ~1 (0.7-1 measured in the emulator, whose cuDNN/cuBLAS compute in double and leave only the
// CPU's share). Why four inputs and the max: the drawn rounding also flips ReLUs whose input is
// within rounding of zero (~1e-5 of the scale: a few of the ~1e5-1e6 ReLU inputs of a batch, in
// every run), and one flip where a BN channel holds few values (2x2 at batch 2) moves every
// gradient before it by up to ~1% (vgg16 --norm bn: 1.4% with x up, 0.26% with x down, 2e-5 on
// CUDA). Such a jump is a discrete event that one run has and another lacks; the max of four
// runs includes one whenever jumps are likely, so the CUDA's own jump (as likely) stays within
// the bound; where they are unlikely the bound stays at the rounding noise.
// Factor 4: room for GPU algorithms whose rounding per sum is a few times the CPU GEMM's
// (Winograd and FFT convolutions, split-K reductions) and for a CUDA jump a few times the
// largest of the four. Floor 1e-4 ~ 2^-13: a gradient element is a sum of up to
// K = 4 * 32 * 32 = 4096 (batch x positions) or 4608 (channels x taps) float32 terms, whose
// worst-case rounding K u is ~3e-4 of sum|terms| and whose typical one is ~sqrt(K) u ~ 4e-6 (u =
// 2^-24); 1e-4 covers sums where the CPU's spread happens to be small but a different reduction
// order's error is not (the classifier's, next to the loss), and keeps a 1% error detectable in
// every tensor whose spread is under 2.5e-3.
// What fails: a wrong index or missing term moves a tensor by its full norm, 1e2-1e4 times the
// bound; a 1% scale error fails wherever 4 x spread + floor < 1e-2, which holds for the tensors
// after the last jump-prone ReLU in every network (the test requires at least one), and for all
// of them in most networks. The summary line counts, per network, the tensors in which a 1%
// scale error, and one element moved by the tensor's largest |g|, would fail.
constexpr double kSpreadFactor = 4;
constexpr double kGradFloor = 1e-4;

// Squared Frobenius norms of one gradient tensor (or of several together), and of the errors an
// injected defect would add.
struct GradNorms {
  double diff = 0;              // ||g_cuda - g_cpu||^2
  std::vector<double> spreads;  // ||g_cpu(x'_j) - g_cpu(x)||^2 for each perturbed input j
  double norm = 0;              // ||g_cpu||^2
  double scaled = 0;            // ||1.01 g_cuda - g_cpu||^2
  double poked = 0;  // ||g_cuda - g_cpu||^2 with the largest |g_cpu| element moved by itself
  void add(const GradNorms& o) {
    diff += o.diff, norm += o.norm, scaled += o.scaled, poked += o.poked;
    spreads.resize(o.spreads.size());
    for (size_t j = 0; j < o.spreads.size(); ++j) spreads[j] += o.spreads[j];
  }
  double spread() const {
    return spreads.empty() ? 0 : *std::max_element(spreads.begin(), spreads.end());
  }
  double bound() const {
    return kSpreadFactor * std::sqrt(spread()) + kGradFloor * std::sqrt(norm);
  }
  double rel(double sq) const { return norm > 0 ? std::sqrt(sq / norm) : std::sqrt(sq); }
};

// Norms of one gradient tensor; `spreads`: its ||g_cpu(x'_j) - g_cpu(x)||^2 (see spreads_of).
GradNorms grad_norms(const Tensor& cuda, const Tensor& cpu, const std::vector<double>& spreads) {
  const std::vector<float> g = cuda.to_vector<float>(), w = cpu.to_vector<float>();
  GradNorms r;
  r.spreads = spreads;
  size_t top = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double d = double(g[i]) - w[i], k = 1.01 * g[i] - w[i];
    r.diff += d * d, r.norm += double(w[i]) * w[i], r.scaled += k * k;
    if (std::abs(w[i]) > std::abs(w[top])) top = i;
  }
  if (!w.empty()) {
    const double d = double(g[top]) - w[top], moved = d + std::abs(w[top]);
    r.poked = r.diff - d * d + moved * moved;
  }
  return r;
}

// Appends ||g_cpu(x') - g_cpu(x)||^2 of every gradient of `cpu` to spreads[name] (infinity where
// the perturbed pass lacks it or has another shape), so no perturbed pass's gradients are kept.
void spreads_of(const Pass& nudged, const Pass& cpu,
                std::map<std::string, std::vector<double>>& spreads) {
  for (const auto& [param, want] : cpu.grads) {
    INFO("perturbed CPU pass, grad of " << param);
    const auto it = nudged.grads.find(param);
    CHECK(it != nudged.grads.end());
    const bool ok = it != nudged.grads.end() && it->second.shape() == want.shape();
    if (it != nudged.grads.end()) CHECK(it->second.shape() == want.shape());
    double sq = ok ? 0 : std::numeric_limits<double>::infinity();
    if (ok) {
      const std::vector<float> n = it->second.to_vector<float>(), w = want.to_vector<float>();
      for (size_t i = 0; i < w.size(); ++i) sq += (double(n[i]) - w[i]) * (double(n[i]) - w[i]);
    }
    spreads[param].push_back(sq);
  }
}

// Non-fatal: every gradient tensor outside its bound is reported, then the whole network's
// gradient (all tensors as one vector) against the same kind of bound. Prints one line of
// measurements per network.
void check_gradients(const Pass& cuda, const Pass& cpu,
                     const std::map<std::string, std::vector<double>>& spreads,
                     const std::string& name) {
  CHECK(cuda.grads.size() == cpu.grads.size());
  GradNorms whole;
  int tensors = 0, scaled_caught = 0, poked_caught = 0;
  double worst_ratio = 0;
  std::string worst;
  for (const auto& [param, want] : cpu.grads) {
    INFO(name << " grad of " << param);
    const auto got = cuda.grads.find(param);
    CHECK(got != cuda.grads.end());
    if (got == cuda.grads.end()) continue;
    CHECK(got->second.shape() == want.shape());
    if (got->second.shape() != want.shape()) continue;
    const GradNorms m = grad_norms(got->second, want, spreads.at(param));
    whole.add(m);
    ++tensors;
    scaled_caught += std::sqrt(m.scaled) > m.bound();
    poked_caught += std::sqrt(m.poked) > m.bound();
    const double ratio = m.bound() > 0 ? std::sqrt(m.diff) / m.bound() : 0;
    if (ratio >= worst_ratio) worst_ratio = ratio, worst = param;
    if (!(std::sqrt(m.diff) <= m.bound()))
      FAIL_CHECK(name << " grad of " << param << " " << shape_str(want.shape())
                      << ": relative error " << m.rel(m.diff) << " exceeds " << kSpreadFactor
                      << " x the CPU's 1-ulp spread " << m.rel(m.spread()) << " + " << kGradFloor
                      << " (|g_cpu| " << std::sqrt(m.norm) << ")");
  }
  std::printf(
      "%s: gradient relative error %.3g, CPU 1-ulp spread %.3g (whole network; spread of each "
      "perturbed input:",
      name.c_str(), whole.rel(whole.diff), whole.rel(whole.spread()));
  for (double sq : whole.spreads) std::printf(" %.3g", whole.rel(sq));
  std::printf(
      "); worst tensor %s at %.3g of its bound; of %d tensors, a 1%% scale error would fail %d, "
      "one element off by its tensor's scale %d\n",
      worst.c_str(), worst_ratio, tensors, scaled_caught, poked_caught);
  INFO(name << " whole-network gradient: relative error " << whole.rel(whole.diff)
            << ", CPU 1-ulp spread " << whole.rel(whole.spread()) << ", bound "
            << whole.rel(whole.bound() * whole.bound()));
  CHECK(std::sqrt(whole.diff) <= whole.bound());
  // Not vacuous: a 1% error fails in some tensor.
  CHECK(scaled_caught > 0);
}

// The four inputs one ulp from x: every element up, every element down, and alternate elements
// up and down (both ways).
std::vector<Tensor> nudged_inputs(const Tensor& x) {
  const std::vector<float> v = x.to_vector<float>();
  const float up = std::numeric_limits<float>::infinity();
  std::vector<Tensor> out;
  for (int pattern = 0; pattern < 4; ++pattern) {
    std::vector<float> n = v;
    for (size_t i = 0; i < n.size(); ++i) {
      const bool towards_up =
          pattern == 0 || (pattern == 2 && i % 2 == 0) || (pattern == 3 && i % 2 == 1);
      n[i] = std::nextafter(n[i], towards_up ? up : -up);
    }
    out.push_back(Tensor::from_vector(n, x.shape()));
  }
  return out;
}

void compare_network(const std::string& arch, const std::string& norm) {
  const std::vector<test::NetCase> cases = all_cases();
  const test::NetCase* found = nullptr;
  for (const auto& c : cases)
    if (c.arch == arch && c.norm == norm) found = &c;
  INFO("network " << arch << " --norm " << norm);
  REQUIRE(found != nullptr);
  const test::NetCase& c = *found;
  const std::string name = c.arch + " --norm " + c.norm;
  const bool imagenet = c.input == "imagenet";
  // In the emulator (and under ND_TEST_SMALL=1) a batch of 2, and ImageNet networks at 32x32
  // (their pooling is adaptive; 32 leaves 1x1 before it): 26 networks in a few minutes.
  const bool small = cuda_emulated() || test::small_sizes_only();
  const int64_t batch = small ? 2 : 4;
  NetConfig cfg = test::net_config(c, imagenet ? 1000 : 10);
  cfg.height = cfg.width = imagenet && !small ? 64 : 32;
  Generator data(9);
  const Tensor x = normal_tensor({batch, 3, cfg.height, cfg.width}, 0, 1, data);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(int64_t(data.below(10)));
  const Tensor y = Tensor::from_vector(labels, {batch});
  // Each pass gets its own network built from seed 3: the same weights, buffers and dropout
  // generators (each Dropout seeds its own from the build's generator), so the masks agree.
  auto build = [&] {
    Generator g(3);
    return build_net(cfg, g);
  };
  auto gpu = build();
  gpu->to(kCuda);
  const Pass a = run(*gpu, x, y, kCuda);
  auto cpu = build();
  const Pass b = run(*cpu, x, y, Device::cpu());
  std::map<std::string, std::vector<double>> spreads;
  for (const Tensor& xn : nudged_inputs(x))
    spreads_of(run(*build(), xn, y, Device::cpu()), b, spreads);
  for (const auto& [param, t] : cpu->named_parameters()) {
    INFO("parameter " << param);
    const size_t unused = unused_by_reference(c, param) ? 1 : 0;
    CHECK(a.without_grad.count(param) == unused);
    CHECK(b.without_grad.count(param) == unused);
  }
  check_net_close(a.logits, b.logits, name + " logits");
  check_net_close(a.loss, b.loss, name + " loss");
  check_gradients(a, b, spreads, name);
  test::check_each_named(a.buffers, b.buffers, name + " buffer", check_net_close);
  cpu->eval();
  gpu->eval();
  NoGradGuard no_grad;
  check_net_close((*gpu)(x.to(kCuda)).to(Device::cpu()), (*cpu)(x), name + " eval logits");
}

}  // namespace

TEST_CASE("cuda the network list covers every reference network", "[cuda][nets]") {
  std::multiset<std::string> listed;
#define ND_LIST_NAME(arch, norm) listed.insert(#arch "/" #norm);
  ND_CUDA_NET_LIST(ND_LIST_NAME)
#undef ND_LIST_NAME
  std::multiset<std::string> reference;
  for (const auto& c : all_cases()) reference.insert(c.arch + "/" + c.norm);
  for (const std::string& n : reference) {
    INFO("in test::cifar_cases() or test::imagenet_cases() but not in ND_CUDA_NET_LIST: " << n);
    CHECK(listed.count(n) == 1);
  }
  for (const std::string& n : listed) {
    INFO("in ND_CUDA_NET_LIST once, and in the reference cases: " << n);
    CHECK(listed.count(n) == 1);
    CHECK(reference.count(n) == 1);
  }
}

#define ND_NET_TEST(arch, norm)                                                                 \
  TEST_CASE("cuda net " #arch " --norm " #norm " matches the CPU in forward backward and eval", \
            "[cuda][nets]") {                                                                   \
    compare_network(#arch, #norm);                                                              \
  }
ND_CUDA_NET_LIST(ND_NET_TEST)
#undef ND_NET_TEST
