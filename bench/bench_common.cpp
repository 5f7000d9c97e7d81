// The non-template part of the benchmark harness of bench_common.h: command-line parsing (CLI11),
// the header lines, timing of synchronized calls, the comparison with the CPU reference, the input
// helpers and the table printing. The only CUDA-specific call left is the GPU's name in the
// header.
#include "bench/bench_common.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace nd::bench {

std::optional<int> parse_command_line(int argc, char** argv, const CliSpec& spec, Options& o) {
  o.program = spec.program;
  std::string device_spec = "auto";
  // A warm-up count that does not depend on the device is shown as the option's default.
  const bool fixed_warmup = spec.cpu_warmup == kCudaWarmup;
  int repeat = -1, warmup = fixed_warmup ? kCudaWarmup : -1;
  CLI::App app{spec.description};
  app.add_option("--device", device_spec, "cpu | cuda | cuda:N | auto")->capture_default_str();
  app.add_option("--repeat", repeat,
                 "timed calls per case (default " + std::to_string(kCudaRepeat) + " on CUDA, " +
                     std::to_string(spec.cpu_repeat) + " on the CPU)")
      ->check(CLI::Range(1, 1000000));
  if (fixed_warmup) {
    app.add_option("--warmup", warmup, "untimed calls before timing")
        ->check(CLI::Range(0, 1000000))
        ->capture_default_str();
  } else {
    app.add_option("--warmup", warmup,
                   "untimed calls before timing (default " + std::to_string(kCudaWarmup) +
                       " on CUDA, " + std::to_string(spec.cpu_warmup) + " on the CPU)")
        ->check(CLI::Range(0, 1000000));
  }
  app.add_option("--filter", o.filter, "run only the cases whose name contains this");
  app.add_flag("--quick", o.quick, "tiny shapes only (smoke run)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    o.dev = parse_device(device_spec);
#ifdef ND_WITH_CUDA
    if (o.dev.is_cuda())
      o.device_name = o.dev.str() + " (" + kernels::cuda_device_name(o.dev.index) + ")";
#endif
  } catch (const std::exception& e) {
    print_error(o, e.what());
    return 1;
  }
  const bool cuda = o.dev.is_cuda();
  o.repeat = repeat >= 0 ? repeat : (cuda ? kCudaRepeat : spec.cpu_repeat);
  o.warmup = warmup >= 0 ? warmup : (cuda ? kCudaWarmup : spec.cpu_warmup);
  return std::nullopt;
}

void print_error(const Options& o, const std::string& message) {
  std::cerr << o.program << ": " << message << "\n";
}

void print_preamble(const Options& o, const std::string& tol_note, DType ref) {
  std::printf("%s: device %s, %s shapes, warmup %d, repeat %d\n", o.program, o.device_name.c_str(),
              o.quick ? "quick" : "full", o.warmup, o.repeat);
  std::printf("check: max|out - ref| / max|ref| over outputs and gradients%s; reference: CPU, %s\n",
              tol_note.c_str(), dtype_name(ref));
  std::printf(
      "timing: steady_clock around calls ending in a stream synchronize (not CUDA events);\n"
      "        fwd+bwd rows time forward and autograd backward together\n");
}

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

double relative_error(const Tensors& got, const Tensors& ref) {
  ND_CHECK(got.size() == ref.size(), "case returned ", got.size(), " outputs, reference ",
           ref.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ND_CHECK(got[i].defined() && ref[i].defined(), "output ", i, " is undefined");
    ND_CHECK(got[i].shape() == ref[i].shape(), "output ", i, " has shape ",
             shape_str(got[i].shape()), ", reference ", shape_str(ref[i].shape()));
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

Tensor leaf(const Tensor& t) {
  Tensor l = t.detach();
  l.set_requires_grad(true);
  return l;
}

Tensor uniform(const Shape& s, Generator& g, double lo, double hi) {
  return uniform_tensor(s, lo, hi, g);
}

std::string dims(const Shape& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

Row timed_row(const std::string& name, const std::string& shape, double err, const Timing& t) {
  Row r;
  r.name = name;
  r.shape = shape;
  r.err = fmt("%.1e", err);
  r.median = fmt("%.3f", t.median_ms);
  r.min = fmt("%.3f", t.min_ms);
  return r;
}

void Table::print(const Row& r) const {
  std::printf("%-*s %-*s %9s %10s %10s %17s  %-*s ", name_width, r.name.c_str(), shape_width,
              r.shape.c_str(), r.err.c_str(), r.median.c_str(), r.min.c_str(), r.rate.c_str(),
              baseline_width, r.baseline.c_str());
  if (anchor_width > 0) std::printf("%-*s ", anchor_width, r.anchor.c_str());
  std::printf("%s\n", r.status.c_str());
  std::fflush(stdout);
}

void Table::print_header() const {
  print({"case", "shape", "rel_err", "median_ms", "min_ms", "achieved", "baseline", "anchor",
         "status"});
}

int finish(const char* summary, size_t cases, int failed) {
  std::printf("\n%s: %zu cases, %d failed\n", summary, cases, failed);
  return failed > 0 ? 1 : 0;
}

}  // namespace nd::bench
