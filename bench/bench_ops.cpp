// nd-bench-ops: the kernel workshop's microbenchmark of the hot op families (elementwise, reduce,
// batch norm, matmul/linear, 3x3 convolution at the CIFAR ResNet-18 shapes). Each case builds its
// inputs on the CPU with nd::Generator, runs the op once on the chosen device and once as the CPU
// reference (float32; float64 when the run itself is on the CPU, so the check still means
// something) and prints max|out - ref| / max|ref| over every output, gradients included. Then it
// times the op: warm-up calls, then per call a stream synchronize before starting the clock and
// one after the op (std::chrono::steady_clock around synchronized calls rather than CUDA events,
// which would need the CUDA headers in this .cpp; each timed call thus includes one synchronize).
// A row gives the median and minimum ms and the achieved GFLOP/s (matmul, linear, conv) or GB/s
// (the other ops; each tensor read or written counted once). Its baseline column is "vendor"
// where the engine calls cuBLAS/cuDNN (OpenBLAS on the CPU) and, for the memory-bound ops, the
// share of the bandwidth of Tensor::clone() moving the same number of bytes on the same device.
// Forward+backward cases seed the backward with r, the gradient of loss = sum(y * r), which is
// the same computation without the extra mul and sum. Exit status 1 when any case fails.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"
#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace {

using nd::Device;
using nd::DType;
using nd::Generator;
using nd::Shape;
using nd::Tensor;
using Tensors = std::vector<Tensor>;

enum class Metric { Flops, Bytes };

struct Case {
  std::string name;   // what --filter matches
  std::string shape;  // human-readable problem size
  Metric metric;
  double work;  // floating-point operations or bytes moved per call
  double tol;   // on max|out - ref| / max|ref|
  const char* vendor_cuda = "";
  const char* vendor_cpu = "";
  std::function<Tensors(Generator&)> make_inputs;  // on the CPU, float32
  std::function<Tensors(const Tensors&)> run;      // outputs to compare (forward, then grads)
};

struct Timing {
  double median_ms = 0, min_ms = 0;
};

void synchronize(Device d) {
#ifdef ND_WITH_CUDA
  if (d.is_cuda()) nd::kernels::cuda_synchronize(nd::kernels::cuda_stream(d.index));
#else
  (void)d;
#endif
}

// Warm-up calls, then `repeat` timed calls, each between two synchronizes; the outputs of a call
// are kept alive until its clock stops so freeing them is not timed.
Timing time_calls(const std::function<Tensors()>& call, Device d, int warmup, int repeat) {
  for (int i = 0; i < warmup; ++i) {
    Tensors out = call();
    synchronize(d);
  }
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    synchronize(d);
    const auto t0 = std::chrono::steady_clock::now();
    Tensors out = call();
    synchronize(d);
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return {n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]), ms.front()};
}

Tensors convert(const Tensors& in, Device d, DType t) {
  Tensors out;
  for (const Tensor& x : in) out.push_back(x.defined() ? x.to(t).to(d) : x);
  return out;
}

// Largest max|got - ref| / max|ref| over the outputs (absolute error where ref is all zero).
double relative_error(const Tensors& got, const Tensors& ref) {
  ND_CHECK(got.size() == ref.size(), "case returned ", got.size(), " outputs, reference ",
           ref.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ND_CHECK(got[i].defined() && ref[i].defined(), "output ", i, " is undefined");
    ND_CHECK(got[i].shape() == ref[i].shape(), "output ", i, " has shape ",
             nd::shape_str(got[i].shape()), ", reference ", nd::shape_str(ref[i].shape()));
    const std::vector<double> g = got[i].to_vector<double>(), r = ref[i].to_vector<double>();
    double diff = 0, scale = 0;
    for (size_t k = 0; k < g.size(); ++k) {
      const double e = std::fabs(g[k] - r[k]);
      diff = std::isnan(e) ? e : std::max(diff, e);
      scale = std::max(scale, std::fabs(r[k]));
      if (std::isnan(diff)) return diff;
    }
    worst = std::max(worst, scale > 0 ? diff / scale : diff);
  }
  return worst;
}

// A fresh leaf sharing t's storage, so every call accumulates gradients from zero.
Tensor leaf(const Tensor& t) {
  Tensor l = t.detach();
  l.set_requires_grad(true);
  return l;
}

Tensor uniform(const Shape& s, Generator& g, double lo = -1, double hi = 1) {
  return nd::uniform_tensor(s, lo, hi, g);
}

std::string dims(const Shape& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

constexpr double kTolGemm = 1e-3;  // matmul, linear, conv
constexpr double kTolOther = 1e-4;

std::vector<Case> make_cases(bool quick, bool cuda) {
  std::vector<Case> cases;
  const Shape act = quick ? Shape{8, 16, 8, 8} : Shape{128, 64, 32, 32};  // (N, C, H, W)
  const int64_t n = nd::shape_numel(act), c = act[1];
  const double f = sizeof(float);

  cases.push_back({"sigmoid", dims(act), Metric::Bytes, 2 * n * f, kTolOther, "", "",
                   [act](Generator& g) { return Tensors{uniform(act, g, -4, 4)}; },
                   [](const Tensors& in) { return Tensors{nd::ops::sigmoid(in[0])}; }});
  cases.push_back({"add_broadcast", dims(act) + " + 1x" + std::to_string(c) + "x1x1", Metric::Bytes,
                   (2 * n + c) * f, kTolOther, "", "",
                   [act, c](Generator& g) {
                     return Tensors{uniform(act, g), uniform({1, c, 1, 1}, g)};
                   },
                   [](const Tensors& in) { return Tensors{nd::ops::add(in[0], in[1])}; }});
  cases.push_back({"sum_axes023", dims(act) + " -> " + std::to_string(c), Metric::Bytes,
                   (n + c) * f, kTolOther, "", "",
                   [act](Generator& g) { return Tensors{uniform(act, g)}; },
                   [](const Tensors& in) {
                     return Tensors{nd::ops::sum(in[0], {0, 2, 3})};
                   }});

  // Batch norm in training mode: x, gamma, beta, running mean, running var (, r).
  auto bn_inputs = [act, c](bool with_r) {
    return [act, c, with_r](Generator& g) {
      Tensors in{uniform(act, g, -2, 3), uniform({c}, g, 0.5, 1.5), uniform({c}, g, -0.5, 0.5),
                 Tensor::zeros({c}), Tensor::ones({c})};
      if (with_r) in.push_back(uniform(act, g));
      return in;
    };
  };
  cases.push_back({"batch_norm_train.fwd", dims(act), Metric::Bytes, 2 * n * f, kTolOther, "", "",
                   bn_inputs(false), [](const Tensors& in) {
                     return Tensors{
                         nd::ops::batch_norm(in[0], in[1], in[2], in[3], in[4], true, 0.1, 1e-5)};
                   }});
  // Forward reads x, writes y; backward reads x and dy, writes dx.
  cases.push_back({"batch_norm_train.fwd+bwd", dims(act), Metric::Bytes, 5 * n * f, kTolOther, "",
                   "", bn_inputs(true), [](const Tensors& in) {
                     Tensor x = leaf(in[0]), gamma = leaf(in[1]), beta = leaf(in[2]);
                     Tensor y = nd::ops::batch_norm(x, gamma, beta, in[3], in[4], true, 0.1, 1e-5);
                     y.backward(in[5]);
                     return Tensors{y.detach(), x.grad(), gamma.grad(), beta.grad()};
                   }});

  // Square matmuls: a small one and one large enough to reach the GEMM peak.
  std::vector<int64_t> sizes =
      quick ? std::vector<int64_t>{64} : std::vector<int64_t>{512, cuda ? int64_t(4096) : 1024};
  for (int64_t m : sizes) {
    cases.push_back({"matmul." + std::to_string(m), dims({m, m, m}), Metric::Flops, 2.0 * m * m * m,
                     kTolGemm, "cuBLAS", "OpenBLAS",
                     [m](Generator& g) {
                       return Tensors{uniform({m, m}, g), uniform({m, m}, g)};
                     },
                     [](const Tensors& in) { return Tensors{nd::ops::matmul(in[0], in[1])}; }});
  }

  // The first layer of the Fashion-MNIST MLP: x is data (no grad); w and b are trained.
  {
    const int64_t rows = quick ? 32 : 512, in_f = quick ? 64 : 784, out_f = quick ? 16 : 128;
    cases.push_back({"linear_mlp.fwd+bwd", dims({rows, in_f}) + " -> " + std::to_string(out_f),
                     Metric::Flops, 4.0 * rows * in_f * out_f, kTolGemm, "cuBLAS", "OpenBLAS",
                     [=](Generator& g) {
                       return Tensors{uniform({rows, in_f}, g),
                                      uniform({out_f, in_f}, g, -0.05, 0.05),
                                      uniform({out_f}, g, -0.05, 0.05), uniform({rows, out_f}, g)};
                     },
                     [](const Tensors& in) {
                       Tensor w = leaf(in[1]), b = leaf(in[2]);
                       Tensor y = nd::ops::linear(in[0], w, b);
                       y.backward(in[3]);
                       return Tensors{y.detach(), w.grad(), b.grad()};
                     }});
  }

  // 3x3 convolutions, padding 1, C = O, at the CIFAR ResNet-18 stages (batch 128 on CUDA).
  struct ConvShape {
    int64_t ch, hw;
  };
  const std::vector<ConvShape> convs =
      quick ? std::vector<ConvShape>{{16, 8}, {32, 4}}
            : std::vector<ConvShape>{{64, 32}, {128, 16}, {256, 8}, {512, 4}};
  const int64_t batch = quick ? 2 : (cuda ? 128 : 8);
  nd::ops::Conv2dParams p;
  p.padding = 1;
  for (const ConvShape& cs : convs) {
    const Shape xs{batch, cs.ch, cs.hw, cs.hw};
    const Shape ws{cs.ch, cs.ch, 3, 3};
    // 2 * N * O * Ho * Wo * (C / groups) * kh * kw; the backward computes dx and dw, each as much.
    const double fwd_flops = 2.0 * batch * cs.ch * cs.hw * cs.hw * cs.ch * 9;
    const std::string tag = "conv3x3.c" + std::to_string(cs.ch);
    const std::string shape = "N" + std::to_string(batch) + " " + dims({cs.ch, cs.hw, cs.hw});
    cases.push_back(
        {tag + ".fwd", shape, Metric::Flops, fwd_flops, kTolGemm, "cuDNN", "OpenBLAS",
         [xs, ws](Generator& g) {
           return Tensors{uniform(xs, g), uniform(ws, g, -0.1, 0.1)};
         },
         [p](const Tensors& in) { return Tensors{nd::ops::conv2d(in[0], in[1], Tensor(), p)}; }});
    cases.push_back({tag + ".fwd+bwd", shape, Metric::Flops, 3 * fwd_flops, kTolGemm, "cuDNN",
                     "OpenBLAS",
                     [xs, ws](Generator& g) {
                       return Tensors{uniform(xs, g), uniform(ws, g, -0.1, 0.1), uniform(xs, g)};
                     },
                     [p](const Tensors& in) {
                       Tensor x = leaf(in[0]), w = leaf(in[1]);
                       Tensor y = nd::ops::conv2d(x, w, Tensor(), p);
                       y.backward(in[2]);
                       return Tensors{y.detach(), x.grad(), w.grad()};
                     }});
  }
  return cases;
}

void print_row(const std::string& name, const std::string& shape, const std::string& err,
               const std::string& median, const std::string& min, const std::string& rate,
               const std::string& baseline, const std::string& status) {
  std::printf("%-26s %-26s %9s %10s %10s %17s  %-30s %s\n", name.c_str(), shape.c_str(),
              err.c_str(), median.c_str(), min.c_str(), rate.c_str(), baseline.c_str(),
              status.c_str());
  std::fflush(stdout);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_spec = "auto", filter;
  int repeat = -1, warmup = 3;
  bool quick = false;
  CLI::App app{"Check the hot ops against the CPU reference and time them."};
  app.add_option("--device", device_spec, "cpu | cuda | cuda:N | auto")->capture_default_str();
  app.add_option("--repeat", repeat, "timed calls per case (default 20 on CUDA, 5 on the CPU)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--warmup", warmup, "untimed calls before timing")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  app.add_option("--filter", filter, "run only the cases whose name contains this");
  app.add_flag("--quick", quick, "tiny shapes only (smoke run)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  Device dev;
  std::string device_name = "cpu";
  try {
    dev = nd::parse_device(device_spec);
#ifdef ND_WITH_CUDA
    if (dev.is_cuda())
      device_name = dev.str() + " (" + nd::kernels::cuda_device_name(dev.index) + ")";
#endif
  } catch (const std::exception& e) {
    std::cerr << "nd-bench-ops: " << e.what() << "\n";
    return 1;
  }
  if (repeat < 0) repeat = dev.is_cuda() ? 20 : 5;
  const DType ref_dtype = dev.is_cuda() ? DType::F32 : DType::F64;

  std::vector<Case> cases;
  for (Case& c : make_cases(quick, dev.is_cuda()))
    if (c.name.find(filter) != std::string::npos) cases.push_back(std::move(c));
  if (cases.empty()) {
    std::cerr << "nd-bench-ops: no case name contains '" << filter << "'\n";
    return 1;
  }

  std::printf("nd-bench-ops: device %s, %s shapes, warmup %d, repeat %d\n", device_name.c_str(),
              quick ? "quick" : "full", warmup, repeat);
  std::printf("check: max|out - ref| / max|ref| over outputs and gradients; reference: CPU, %s\n",
              nd::dtype_name(ref_dtype));
  std::printf(
      "timing: steady_clock around calls ending in a stream synchronize (not CUDA events);\n"
      "        fwd+bwd rows time forward and autograd backward together\n\n");
  print_row("case", "shape", "rel_err", "median_ms", "min_ms", "achieved", "baseline", "status");

  int failed = 0;
  uint64_t seed = 1;
  for (const Case& c : cases) {
    try {
      Generator gen(seed++);
      const Tensors host = c.make_inputs(gen);
      const Tensors in = convert(host, dev, DType::F32);
      const Tensors ref = c.run(convert(host, Device::cpu(), ref_dtype));
      const double err = relative_error(c.run(in), ref);
      const bool ok = err <= c.tol;  // false for NaN
      if (!ok) ++failed;

      const Timing t = time_calls([&] { return c.run(in); }, dev, warmup, repeat);
      std::string rate, baseline;
      if (c.metric == Metric::Flops) {
        rate = fmt("%.1f GFLOP/s", c.work / (t.median_ms * 1e-3) / 1e9);
        baseline = std::string("vendor (") + (dev.is_cuda() ? c.vendor_cuda : c.vendor_cpu) + ")";
      } else {
        const double gbs = c.work / (t.median_ms * 1e-3) / 1e9;
        rate = fmt("%.1f GB/s", gbs);
        // clone() reads and writes each element once: c.work bytes in all.
        const Tensor src =
            Tensor::zeros({std::max<int64_t>(int64_t(c.work / 8), 1)}, DType::F32, dev);
        const Timing tc = time_calls([&] { return Tensors{src.clone()}; }, dev, warmup, repeat);
        const double copy_gbs = c.work / (tc.median_ms * 1e-3) / 1e9;
        baseline = fmt("%.0f%% of copy", 100 * gbs / copy_gbs) + fmt(" (%.1f GB/s)", copy_gbs);
      }
      print_row(c.name, c.shape, fmt("%.1e", err), fmt("%.3f", t.median_ms), fmt("%.3f", t.min_ms),
                rate, baseline, ok ? "ok" : "FAIL (tol " + fmt("%.0e", c.tol) + ")");
    } catch (const std::exception& e) {
      ++failed;
      print_row(c.name, c.shape, "-", "-", "-", "-", "-", std::string("FAIL: ") + e.what());
    }
  }
  std::printf("\nbench_ops: %zu cases, %d failed\n", cases.size(), failed);
  return failed > 0 ? 1 : 0;
}
