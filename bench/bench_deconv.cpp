// nd-bench-deconv: the kernel workshop's microbenchmark of network deconvolution (kernels/deconv.h
// through ops::sampled_covariance, ops::newton_schulz and ops::fold, and the whole nd::FastDeconv
// layer) at the CIFAR ResNet-18 shapes: batch 128 on CUDA and 8 on the CPU, block 64, sampling
// stride 3. Each case first runs once on the chosen device and compares with the CPU reference in
// float64 (on a batch-8 copy of the shape when the timed batch is 128), printing
// max|out - ref| / max|ref| over every output and gradient; then it times the case as
// nd-bench-ops does (warm-up, steady_clock around calls that end in a stream synchronize, median
// and minimum). The baseline column times the same job another way on the same device and gives
// ours/baseline: the explicit sampling im2col + GEMM built from the engine's ops (cuBLAS or
// OpenBLAS) for the covariance, cuSOLVER syevd alone (the eigendecomposition dominates an exact
// inverse square root; CUDA only) for Newton-Schulz, the reshape + GEMM composite for the folding,
// and Conv2d + BatchNorm2d for the layer. The anchor column quotes the reference PyTorch code on
// an H200 at batch 128 (the project's anchors, PyTorch 2.11, CUDA 13.0) where it was measured.
// Flops: covariance 2 R nf^2 forward (R sampled sub-rows) and as much again backward; Newton-Schulz
// 6 iters n^3 per matrix forward, about twice that backward; folding 2 O (C/B) nf^2 forward, twice
// that backward; the layer adds its convolution (forward, and twice that backward). Backward rows
// are seeded through autograd with random r: loss = sum(out * r) (+ sum(out2 * r2) for a second
// output). Exit status 1 when any case fails.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/ops.h"
#include "layers/batchnorm.h"
#include "layers/conv.h"
#include "layers/deconv.h"
#ifdef ND_WITH_CUDA
#include <cusolverDn.h>

#include "kernels/cuda_runtime_api.h"
#endif

namespace nd::bench {
namespace {

using Fn = std::function<Tensors(const Tensors&)>;
// Inputs on the CPU, float32; check == true asks for the copy the CPU reference can afford.
using Inputs = std::function<Tensors(Generator&, bool check)>;

constexpr double kTol = 1e-3;       // on max|out - ref| / max|ref|
constexpr double kEps = 1e-5;       // FastDeconv's default
constexpr int64_t kIters = 5;       // Newton-Schulz steps
constexpr int64_t kSampling = 3;    // sampling stride (times the conv's own stride)
constexpr int64_t kCheckBatch = 8;  // batch of the float64 check when the timed batch is larger

struct Case {
  std::string name;   // what --filter matches
  std::string shape;  // human-readable problem size (the timed one)
  double flops = 0;   // per timed call
  Inputs make_inputs;
  bool check_is_timed = true;  // the check copy is the timed shape: build the inputs once
  Fn run;                      // the timed computation: outputs to compare (forward, then grads)
  Fn reference;                // the CPU reference in float64; `run` when empty
  std::string baseline_name;   // empty: no baseline on this device
  Fn baseline;
  bool baseline_checked = false;  // its outputs are compared with the reference too
  std::string anchor;             // the reference's H200 number, or empty
};

// loss = sum(a * ra) (+ sum(b * rb)): seeds the backward of one or two outputs with r.
void backward_seeded(const Tensor& a, const Tensor& ra, const Tensor& b = Tensor(),
                     const Tensor& rb = Tensor()) {
  Tensor loss = ops::sum(ops::mul(a, ra));
  if (b.defined()) loss = ops::add(loss, ops::sum(ops::mul(b, rb)));
  loss.backward();
}

// ------------------------------------------------------------------------------ shapes

// One deconvolved convolution of the network: FastDeconv(c -> o, k x k, stride, pad).
struct LayerShape {
  std::string tag;
  int64_t c, o, hw, k, stride, pad;
  int64_t block;  // requested; resolved by the gcd rule of network-deconvolution.md
  int64_t resolved_block() const {
    if (block > c) return c;
    return c % block ? std::gcd(block, c) : block;
  }
  int64_t nf() const { return k * k * resolved_block(); }
  int64_t out_hw() const { return (hw + 2 * pad - k) / stride + 1; }
  ops::PatchSampling sampling() const {
    ops::PatchSampling s;
    s.kernel = k, s.padding = pad, s.dilation = 1;
    s.stride = kSampling * stride;
    s.block = resolved_block(), s.groups = 1;
    return s;
  }
  int64_t cov_rows(int64_t n) const {  // R of the sampled covariance of a batch of n
    return ops::sampled_count({n, c, hw, hw}, sampling()).rows;
  }
  ops::FoldLayout fold() const {
    ops::FoldLayout f;
    f.outputs = o, f.features = nf(), f.blocks = c / resolved_block(), f.groups = 1;
    return f;
  }
  ops::Conv2dParams conv() const {
    ops::Conv2dParams p;
    p.stride = stride, p.padding = pad;
    return p;
  }
};

// ------------------------------------------------------------------------------ baselines

// The sampled covariance from primitive ops: explicit im2col at the sampling stride (or the
// strided NHWC rows for k == 1), the interleaved (R, nf) matrix, centring, one GEMM Xc^T Xc.
// eps_eye (nf, nf) = eps I is an input so that building it is not timed.
std::pair<Tensor, Tensor> covariance_composite(const Tensor& x, const ops::PatchSampling& s,
                                               const Tensor& eps_eye) {
  const int64_t c = x.shape()[1], k = s.kernel;
  Tensor rows;  // (positions, C*k*k), column f = c*k*k + ky*k + kx
  if (k == 1) {
    Tensor nhwc = x.permute({0, 2, 3, 1}).reshape({-1, c});
    rows = nhwc.slice(0, 0, nhwc.shape()[0], s.stride * s.stride);
  } else {
    ops::Conv2dParams p;
    p.stride = s.stride, p.padding = s.padding, p.dilation = s.dilation;
    rows = ops::im2col(x, k, k, p).permute({0, 2, 1}).reshape({-1, c * k * k});
  }
  const int64_t nf = k * k * s.block, blocks = c / s.block;
  // Sub-row j of a patch holds the columns f with f % blocks == j.
  Tensor xs = rows.reshape({rows.shape()[0], nf, blocks}).transpose(1, 2).reshape({-1, nf});
  Tensor mu = ops::mean(xs, {0}, /*keepdim=*/true);  // (1, nf)
  Tensor xc = ops::sub(xs, mu);
  Tensor cov = ops::affine(ops::matmul(xc.transpose(0, 1), xc), 1.0 / double(xs.shape()[0]), 0.0);
  return {mu, ops::add(cov, eps_eye).reshape({1, nf, nf})};
}

// The folding from primitive ops (groups == 1): block rows (O * blocks, nf) times D, the bias
// correction as a matrix-vector product, and the scatter back.
std::pair<Tensor, Tensor> fold_composite(const Tensor& w, const Tensor& b, const Tensor& d,
                                         const Tensor& mu, const ops::FoldLayout& s) {
  const int64_t o = s.outputs, nf = s.features;
  Tensor wb = w.reshape({o, nf, s.blocks}).transpose(1, 2).reshape({-1, nf});
  Tensor wf = ops::matmul(wb, d.reshape({nf, nf}));  // (O * blocks, nf)
  Tensor corr = ops::sum(ops::matmul(wf, mu.reshape({nf, 1})).reshape({o, s.blocks}), {1});
  Tensor w_out = wf.reshape({o, s.blocks, nf}).transpose(1, 2).reshape(w.shape());
  return {w_out, ops::sub(b, corr)};
}

#ifdef ND_WITH_CUDA
// cusolverDnSsyevd (eigenvalues and eigenvectors) of each of the `count` matrices of a (count,
// n, n), on a copy since syevd overwrites its input. Handle, workspace and copy are made on the
// first call; that call also checks syevd's info.
class SyevdBaseline {
 public:
  explicit SyevdBaseline(Device d) : device_(d) {}
  ~SyevdBaseline() {
    if (handle_) cusolverDnDestroy(handle_);
  }
  SyevdBaseline(const SyevdBaseline&) = delete;
  SyevdBaseline& operator=(const SyevdBaseline&) = delete;

  Tensors operator()(const Tensor& a) {
    ND_CHECK(a.device() == device_ && a.dim() == 3 && a.is_contiguous(),
             "syevd baseline: expected a contiguous (count, n, n) tensor on ", device_.str());
    const int64_t count = a.shape()[0], n = a.shape()[1];
    const cusolverEigMode_t jobz = CUSOLVER_EIG_MODE_VECTOR;
    const cublasFillMode_t uplo = CUBLAS_FILL_MODE_UPPER;
    const bool first = !handle_;
    if (first) {
      kernels::cuda_set_device(device_.index);
      check(cusolverDnCreate(&handle_), "cusolverDnCreate");
      check(cusolverDnSetStream(handle_, kernels::cuda_stream(device_.index)),
            "cusolverDnSetStream");
      copy_ = Tensor::empty(a.shape(), DType::F32, device_);
      eig_ = Tensor::empty({count, n}, DType::F32, device_);
      info_ = Tensor::empty({1}, DType::I32, device_);
      int lwork = 0;
      check(cusolverDnSsyevd_bufferSize(handle_, jobz, uplo, int(n), copy_.data<float>(), int(n),
                                        eig_.data<float>(), &lwork),
            "cusolverDnSsyevd_bufferSize");
      work_ = Tensor::empty({std::max(lwork, 1)}, DType::F32, device_);
    }
    ND_CHECK(copy_.shape() == a.shape(), "syevd baseline: built for ", nd::shape_str(copy_.shape()),
             ", called with ", nd::shape_str(a.shape()));
    kernels::cuda_memcpy_d2d(copy_.raw_data(), a.raw_data(), size_t(a.numel()) * sizeof(float),
                             kernels::cuda_stream(device_.index));
    for (int64_t m = 0; m < count; ++m)
      check(cusolverDnSsyevd(handle_, jobz, uplo, int(n), copy_.data<float>() + m * n * n, int(n),
                             eig_.data<float>() + m * n, work_.data<float>(), int(work_.numel()),
                             info_.data<int32_t>()),
            "cusolverDnSsyevd");
    if (first) {
      const int32_t info = info_.to_vector<int32_t>()[0];
      ND_CHECK(info == 0, "cusolverDnSsyevd returned info ", info);
    }
    return {copy_, eig_};
  }

 private:
  static void check(cusolverStatus_t s, const char* what) {
    ND_CHECK(s == CUSOLVER_STATUS_SUCCESS, what, " failed with cusolverStatus_t ", int(s));
  }
  Device device_;
  cusolverDnHandle_t handle_ = nullptr;
  Tensor copy_, eig_, info_, work_;
};
#endif

// ------------------------------------------------------------------------------ cases

// A case with its name, shape column, flops and inputs; the caller sets the rest.
Case new_case(const std::string& name, const std::string& shape, double flops, Inputs inputs) {
  Case c;
  c.name = name;
  c.shape = shape;
  c.flops = flops;
  c.make_inputs = std::move(inputs);
  return c;
}

const char* const kNsAnchor576 = "ref NS 0.68 ms; eigh 6.0 ms";
const char* const kNsAnchor1152 = "ref NS 1.32 ms; eigh 13.1 ms";
const char* const kLayerAnchor = "ref ND 4.7-5.2 ms; conv+BN 0.62-0.71";

void add_covariance_cases(std::vector<Case>& cases, const std::vector<LayerShape>& layers,
                          int64_t batch, int64_t check_batch, bool cuda) {
  const char* vendor = cuda ? "cuBLAS im2col+GEMM" : "OpenBLAS im2col+GEMM";
  for (const LayerShape& ls : layers) {
    const int64_t nf = ls.nf(), rows = ls.cov_rows(batch);
    const double fwd_flops = 2.0 * double(rows) * nf * nf;
    const std::string shape =
        "N" + std::to_string(batch) + " " + dims({ls.c, ls.hw, ls.hw}) + " k" +
        std::to_string(ls.k) + " s" + std::to_string(ls.sampling().stride) + " nf" +
        std::to_string(nf) + " R" + std::to_string(rows) +
        (batch != check_batch ? " (chk N" + std::to_string(check_batch) + ")" : "");
    // x, r (1, nf, nf), r2 (1, nf), eps I (nf, nf)
    auto inputs = [ls, batch, check_batch, nf](Generator& g, bool check) {
      const int64_t n = check ? check_batch : batch;
      Tensor eye = ops::affine(ops::eye(nf), kEps, 0.0);
      return Tensors{uniform({n, ls.c, ls.hw, ls.hw}, g, -1, 2), uniform({1, nf, nf}, g),
                     uniform({1, nf}, g), eye};
    };
    const std::string tag = "cov." + ls.tag;
    Case fwd = new_case(tag + ".fwd", shape, fwd_flops, inputs);
    fwd.check_is_timed = batch == check_batch;
    fwd.run = [ls](const Tensors& in) {
      auto [mean, cov] = ops::sampled_covariance(in[0], ls.sampling(), kEps);
      return Tensors{mean, cov};
    };
    fwd.baseline_name = vendor;
    fwd.baseline = [ls](const Tensors& in) {
      auto [mean, cov] = covariance_composite(in[0], ls.sampling(), in[3]);
      return Tensors{mean, cov};
    };
    fwd.baseline_checked = true;
    cases.push_back(fwd);

    Case both = fwd;
    both.name = tag + ".fwd+bwd";
    both.flops = 2 * fwd_flops;  // the backward is one GEMM of the forward's size
    both.run = [ls](const Tensors& in) {
      Tensor x = leaf(in[0]);
      auto [mean, cov] = ops::sampled_covariance(x, ls.sampling(), kEps);
      backward_seeded(cov, in[1], mean, in[2]);
      return Tensors{mean.detach(), cov.detach(), x.grad()};
    };
    both.baseline = [ls](const Tensors& in) {
      Tensor x = leaf(in[0]);
      auto [mean, cov] = covariance_composite(x, ls.sampling(), in[3]);
      backward_seeded(cov, in[1], mean, in[2]);
      return Tensors{mean.detach(), cov.detach(), x.grad()};
    };
    cases.push_back(both);
  }
}

// A symmetric positive definite (count, n, n): X^T X / 2n + 1e-3 I for X (count, 2n, n) uniform in
// [-1, 1), eigenvalues about 0.03 to 1 (like a covariance of well-spread features).
Tensor spd_matrices(int64_t count, int64_t n, Generator& g) {
  const int64_t rows = 2 * n;
  Tensor x = uniform({count, rows, n}, g);
  Tensor a = ops::affine(ops::matmul(x.transpose(1, 2), x), 1.0 / double(rows), 0.0);
  return ops::add(a, ops::affine(ops::eye(n), 1e-3, 0.0)).contiguous();
}

void add_newton_schulz_cases(std::vector<Case>& cases, bool quick, Device dev) {
  struct NsShape {
    int64_t n, count;
    const char* anchor;
  };
  const std::vector<NsShape> shapes =
      quick ? std::vector<NsShape>{{9, 4, ""}, {27, 1, ""}, {72, 1, ""}}
            : std::vector<NsShape>{{27, 1, ""},
                                   {576, 1, kNsAnchor576},
                                   {1152, 1, kNsAnchor1152},
                                   {9, 96, ""},
                                   {49, 96, ""}};
  for (const NsShape& ns : shapes) {
    const int64_t n = ns.n, count = ns.count;
    const double fwd_flops = 6.0 * kIters * double(n) * n * n * count;
    const std::string tag =
        "ns.n" + std::to_string(n) + (count > 1 ? "x" + std::to_string(count) : "");
    const std::string shape =
        std::to_string(count) + " x " + dims({n, n}) + ", " + std::to_string(kIters) + " iters";
    auto inputs = [n, count](Generator& g, bool) {
      Tensor a = spd_matrices(count, n, g);
      return Tensors{a, uniform({count, n, n}, g)};
    };
    Case fwd = new_case(tag + ".fwd", shape, fwd_flops, inputs);
    fwd.run = [](const Tensors& in) { return Tensors{ops::newton_schulz(in[0], kIters)}; };
    fwd.anchor = ns.anchor;
#ifdef ND_WITH_CUDA
    if (dev.is_cuda()) {
      auto syevd = std::make_shared<SyevdBaseline>(dev);
      fwd.baseline_name = count > 1 ? "cuSOLVER syevd x" + std::to_string(count) : "cuSOLVER syevd";
      fwd.baseline = [syevd](const Tensors& in) { return (*syevd)(in[0]); };
    }
#else
    (void)dev;
#endif
    cases.push_back(fwd);

    // The backward of the unrolled iteration: about twice the forward.
    Case both = new_case(tag + ".fwd+bwd", shape, 3 * fwd_flops, inputs);
    both.run = [](const Tensors& in) {
      Tensor a = leaf(in[0]);
      Tensor d = ops::newton_schulz(a, kIters);
      d.backward(in[1]);
      return Tensors{d.detach(), a.grad()};
    };
    cases.push_back(both);
  }
}

void add_fold_cases(std::vector<Case>& cases, const std::vector<LayerShape>& layers, bool cuda) {
  const char* vendor = cuda ? "cuBLAS composite" : "OpenBLAS composite";
  for (const LayerShape& ls : layers) {
    const ops::FoldLayout fs = ls.fold();
    const double fwd_flops = 2.0 * fs.outputs * fs.blocks * double(fs.features) * fs.features;
    const std::string shape = "O" + std::to_string(fs.outputs) + " C" + std::to_string(ls.c) +
                              " nf" + std::to_string(fs.features) + " blocks " +
                              std::to_string(fs.blocks);
    // w (O, C, k, k), bias (O), D (1, nf, nf), mu (1, nf), r_w (O, C, k, k), r_b (O)
    auto inputs = [ls, fs](Generator& g, bool) {
      const Shape ws{ls.o, ls.c, ls.k, ls.k};
      return Tensors{uniform(ws, g, -0.1, 0.1),
                     uniform({fs.outputs}, g, -0.1, 0.1),
                     uniform({1, fs.features, fs.features}, g),
                     uniform({1, fs.features}, g),
                     uniform(ws, g),
                     uniform({fs.outputs}, g)};
    };
    const std::string tag = "fold." + ls.tag;
    Case fwd = new_case(tag + ".fwd", shape, fwd_flops, inputs);
    fwd.run = [fs](const Tensors& in) {
      auto [w, b] = ops::fold(in[0], in[1], in[2], in[3], fs);
      return Tensors{w, b};
    };
    fwd.baseline_name = vendor;
    fwd.baseline = [fs](const Tensors& in) {
      auto [w, b] = fold_composite(in[0], in[1], in[2], in[3], fs);
      return Tensors{w, b};
    };
    fwd.baseline_checked = true;
    cases.push_back(fwd);

    // Gradients with respect to w, bias, D and mu: the two backward GEMMs (dW, dD).
    auto fwd_bwd = [fs](bool fused) {
      return [fs, fused](const Tensors& in) {
        Tensor w = leaf(in[0]), b = leaf(in[1]), d = leaf(in[2]), mu = leaf(in[3]);
        auto [wf, bf] = fused ? ops::fold(w, b, d, mu, fs) : fold_composite(w, b, d, mu, fs);
        backward_seeded(wf, in[4], bf, in[5]);
        return Tensors{wf.detach(), bf.detach(), w.grad(), b.grad(), d.grad(), mu.grad()};
      };
    };
    Case both = fwd;
    both.name = tag + ".fwd+bwd";
    both.flops = 3 * fwd_flops;
    both.run = fwd_bwd(true);
    both.baseline = fwd_bwd(false);
    cases.push_back(both);
  }
}

void clear_grads(nd::Module& m) {
  for (Tensor p : m.parameters()) p.set_grad(Tensor());
}

void add_layer_cases(std::vector<Case>& cases, const std::vector<LayerShape>& layers, int64_t batch,
                     int64_t check_batch, Device dev, bool quick) {
  uint64_t seed = 1000;
  for (const LayerShape& ls : layers) {
    Generator wg(seed++);
    nd::DeconvSettings settings;
    settings.block = ls.block;
    settings.eps = kEps;
    settings.n_iter = kIters;
    settings.sampling_stride = kSampling;
    const ops::Conv2dParams p = ls.conv();
    auto deconv = std::make_shared<nd::FastDeconv>(ls.c, ls.o, ls.k, p, true, settings, wg);
    ND_CHECK(deconv->block() == ls.resolved_block(), "FastDeconv resolved block ", deconv->block(),
             ", the benchmark expected ", ls.resolved_block());
    const Tensor w_host = deconv->parameters()[0].clone(), b_host = deconv->parameters()[1].clone();
    deconv->to(dev);
    auto conv = std::make_shared<nd::Conv2d>(ls.c, ls.o, ls.k, p, false, wg);
    auto bn = std::make_shared<nd::BatchNorm2d>(ls.o);
    conv->to(dev);
    bn->to(dev);

    const ops::FoldLayout fs = ls.fold();
    const int64_t ho = ls.out_hw(), nf = ls.nf();
    const double conv_flops = 2.0 * batch * ls.o * ho * ho * ls.c * ls.k * ls.k;
    const double flops = 3 * conv_flops + 2 * (2.0 * double(ls.cov_rows(batch)) * nf * nf) +
                         3 * (6.0 * kIters * double(nf) * nf * nf) +
                         3 * (2.0 * fs.outputs * fs.blocks * double(nf) * nf);
    Case c;
    c.name = "layer." + ls.tag + ".fwd+bwd";
    c.shape = "N" + std::to_string(batch) + " " + dims({ls.c, ls.hw, ls.hw}) + " -> " +
              std::to_string(ls.o) + " k" + std::to_string(ls.k) + "/" + std::to_string(ls.stride) +
              " nf" + std::to_string(nf) +
              (batch != check_batch ? " (chk N" + std::to_string(check_batch) + ")" : "");
    c.flops = flops;
    // x (N, C, H, W), r (N, O, Ho, Wo)
    c.make_inputs = [ls, ho, batch, check_batch](Generator& g, bool check) {
      const int64_t n = check ? check_batch : batch;
      return Tensors{uniform({n, ls.c, ls.hw, ls.hw}, g, -1, 2), uniform({n, ls.o, ho, ho}, g)};
    };
    c.check_is_timed = batch == check_batch;
    c.run = [deconv](const Tensors& in) {
      clear_grads(*deconv);
      Tensor x = leaf(in[0]);
      Tensor y = (*deconv)(x);
      y.backward(in[1]);
      const Tensors ps = deconv->parameters();
      return Tensors{y.detach(), x.grad(), ps[0].grad(), ps[1].grad()};
    };
    // The fused path spelt out in ops (training mode, fresh statistics) on the CPU kernels.
    c.reference = [ls, fs, w_host, b_host](const Tensors& in) {
      Tensor x = leaf(in[0]);
      Tensor w = leaf(w_host.to(x.dtype())), b = leaf(b_host.to(x.dtype()));
      auto [mu, cov] = ops::sampled_covariance(x, ls.sampling(), kEps);
      Tensor d = ops::newton_schulz(cov, kIters);
      auto [wf, bf] = ops::fold(w, b, d, mu, fs);
      Tensor y = ops::conv2d(x, wf.reshape(w.shape()), bf, ls.conv());
      y.backward(in[1]);
      return Tensors{y.detach(), x.grad(), w.grad(), b.grad()};
    };
    c.baseline_name = "conv+BN";
    c.baseline = [conv, bn](const Tensors& in) {
      clear_grads(*conv);
      clear_grads(*bn);
      Tensor x = leaf(in[0]);
      Tensor y = (*bn)((*conv)(x));
      y.backward(in[1]);
      return Tensors{y.detach(), x.grad()};
    };
    if (!quick && ls.k == 3 && ls.c >= 64) c.anchor = kLayerAnchor;
    cases.push_back(c);
  }
}

std::vector<Case> make_cases(bool quick, Device dev) {
  const bool cuda = dev.is_cuda();
  const int64_t batch = quick ? 2 : (cuda ? 128 : kCheckBatch);
  const int64_t check_batch = quick ? 2 : kCheckBatch;
  // tag, C, O, H=W, k, stride, pad, block. Quick shapes use block 8 so that several interleaved
  // blocks (C/B > 1) still occur.
  const std::vector<LayerShape> layers =
      quick
          ? std::vector<LayerShape>{{"first_c3", 3, 8, 8, 3, 1, 1, 8},
                                    {"c16", 16, 16, 8, 3, 1, 1, 8},
                                    {"c32", 32, 32, 4, 3, 1, 1, 8},
                                    {"shortcut_c16", 16, 32, 8, 1, 2, 0, 8}}
          : std::vector<LayerShape>{
                {"first_c3", 3, 64, 32, 3, 1, 1, 64}, {"c64", 64, 64, 32, 3, 1, 1, 64},
                {"c128", 128, 128, 16, 3, 1, 1, 64},  {"c256", 256, 256, 8, 3, 1, 1, 64},
                {"c512", 512, 512, 4, 3, 1, 1, 64},   {"shortcut_c128", 128, 256, 16, 1, 2, 0, 64}};
  std::vector<LayerShape> fold_layers;  // O = C, nf = 576 (16 and 32 with nf 72 when quick)
  for (const LayerShape& ls : layers)
    if (ls.k == 3 && ls.c == ls.o) fold_layers.push_back(ls);

  std::vector<Case> cases;
  add_covariance_cases(cases, layers, batch, check_batch, cuda);
  add_newton_schulz_cases(cases, quick, dev);
  add_fold_cases(cases, fold_layers, cuda);
  add_layer_cases(cases, layers, batch, check_batch, dev, quick);
  return cases;
}

const Table kTable{28, 42, 46, /*anchor_width=*/37};

int bench_main(int argc, char** argv) {
  Options o;
  if (auto status = parse_command_line(
          argc, argv,
          {"nd-bench-deconv",
           "Check the network-deconvolution kernels against the CPU reference and time them.",
           /*cpu_repeat=*/3, /*cpu_warmup=*/1},
          o))
    return *status;
  const Device dev = o.dev;

  std::vector<Case> cases;
  if (!select_cases(
          o, [&] { return make_cases(o.quick, dev); }, cases))
    return 1;

  print_preamble(o, fmt(" (tol %.0e)", kTol), DType::F64);
  std::printf(
      "baseline: its median ms and ours/baseline (< 1: ours is faster); anchor: the reference\n"
      "        PyTorch code on one H200 at batch 128 (PyTorch 2.11, CUDA 13.0)\n\n");
  kTable.print_header();

  return run_cases(cases, kTable, "bench_deconv", [&](const Case& c, uint64_t seed) {
    std::string status = "ok";
    Generator gen(seed);
    const Tensors host = c.make_inputs(gen, true);
    const Fn& reference = c.reference ? c.reference : c.run;
    const Tensors ref = reference(convert(host, Device::cpu(), DType::F64));
    Tensors in = convert(host, dev, DType::F32);
    const double err = relative_error(c.run(in), ref);
    if (!(err <= kTol)) status = "FAIL (tol " + fmt("%.0e", kTol) + ")";  // NaN fails too
    if (c.baseline && c.baseline_checked) {
      const double berr = relative_error(c.baseline(in), ref);
      if (!(berr <= kTol)) status += " FAIL (baseline rel_err " + fmt("%.1e", berr) + ")";
    }
    if (!c.check_is_timed) {
      Generator timed_gen(seed);
      in = convert(c.make_inputs(timed_gen, false), dev, DType::F32);
    }

    const Timing t = time_calls([&] { return c.run(in); }, dev, o.warmup, o.repeat);
    Row row = timed_row(c.name, c.shape, err, t);
    row.rate = fmt("%.1f GFLOP/s", giga_per_second(c.flops, t.median_ms));
    row.baseline = "-";
    if (c.baseline) {
      const Timing tb = time_calls([&] { return c.baseline(in); }, dev, o.warmup, o.repeat);
      row.baseline = c.baseline_name + fmt(" %.3f ms", tb.median_ms) +
                     fmt(" (ours/base %.2f)", t.median_ms / tb.median_ms);
    }
    row.anchor = c.anchor.empty() ? "-" : c.anchor;
    row.status = status;
    kTable.print(row);
    return status == "ok";
  });
}

}  // namespace
}  // namespace nd::bench

int main(int argc, char** argv) {
  return nd::bench::bench_main(argc, argv);
}
