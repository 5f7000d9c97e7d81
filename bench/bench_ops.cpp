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
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_common.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace nd::bench {
namespace {

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

const Table kTable{26, 26, 30};

int bench_main(int argc, char** argv) {
  Options o;
  if (auto status = parse_command_line(
          argc, argv,
          {"nd-bench-ops", "Check the hot ops against the CPU reference and time them.",
           /*cpu_repeat=*/5, /*cpu_warmup=*/3},
          o))
    return *status;
  const Device dev = o.dev;
  const DType ref_dtype = dev.is_cuda() ? DType::F32 : DType::F64;

  std::vector<Case> cases;
  if (!select_cases(
          o, [&] { return make_cases(o.quick, dev.is_cuda()); }, cases))
    return 1;

  print_preamble(o, "", ref_dtype);
  std::printf("\n");
  kTable.print_header();

  return run_cases(cases, kTable, "bench_ops", [&](const Case& c, uint64_t seed) {
    Generator gen(seed);
    const Tensors host = c.make_inputs(gen);
    const Tensors in = convert(host, dev, DType::F32);
    const Tensors ref = c.run(convert(host, Device::cpu(), ref_dtype));
    const double err = relative_error(c.run(in), ref);
    const bool ok = err <= c.tol;  // false for NaN

    const Timing t = time_calls([&] { return c.run(in); }, dev, o.warmup, o.repeat);
    Row row = timed_row(c.name, c.shape, err, t);
    const double rate = giga_per_second(c.work, t.median_ms);
    if (c.metric == Metric::Flops) {
      row.rate = fmt("%.1f GFLOP/s", rate);
      row.baseline = std::string("vendor (") + (dev.is_cuda() ? c.vendor_cuda : c.vendor_cpu) + ")";
    } else {
      row.rate = fmt("%.1f GB/s", rate);
      // clone() reads and writes each element once: c.work bytes in all.
      const Tensor src =
          Tensor::zeros({std::max<int64_t>(int64_t(c.work / 8), 1)}, DType::F32, dev);
      const Timing tc = time_calls([&] { return Tensors{src.clone()}; }, dev, o.warmup, o.repeat);
      const double copy_gbs = giga_per_second(c.work, tc.median_ms);
      row.baseline = fmt("%.0f%% of copy", 100 * rate / copy_gbs) + fmt(" (%.1f GB/s)", copy_gbs);
    }
    row.status = ok ? "ok" : "FAIL (tol " + fmt("%.0e", c.tol) + ")";
    kTable.print(row);
    return ok;
  });
}

}  // namespace
}  // namespace nd::bench

int main(int argc, char** argv) {
  return nd::bench::bench_main(argc, argv);
}
