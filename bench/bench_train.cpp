// nd-bench-train: the end-to-end training-step benchmark every speed claim is measured with. For
// each network (default: the ten CIFAR networks) and each --norm (bn, nd), it builds the network
// as nd-train does (reference CIFAR settings: 3x32x32 input, block 64, Newton-Schulz 5, sampling
// stride 3, Delinear(512) classifier with nd), puts one random batch on the device, runs warm-up
// steps and then timed full steps: forward, cross-entropy, backward, SGD with momentum 0.9 and
// weight decay 1e-3. A step is timed by CUDA events on the GPU and by a clock between two
// synchronizes on the CPU. Per network and norm it prints the median and minimum ms per step,
// images/s, the allocator's peak bytes, the allocations made during the timed steps (must be 0
// on a GPU: the caching allocator serves every step) and the ND/BN ratio, beside the reference
// PyTorch code's figures on an H200 (GPU) or Debian's PyTorch on a 2-core CPU (batch 32).
// --profile runs as many steps again with every op timed by kind (engine/profile.h) and prints
// where a step's time goes, and how much of the step no op covers (launch gaps, host work).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "apps/train_config.h"
#include "engine/autograd.h"
#include "engine/cpu_backend.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/profile.h"
#include "engine/random.h"
#include "nets/registry.h"
#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace nd::bench {
namespace {

const std::vector<std::string> kCifarNets = {
    "vgg16",       "resnet18", "preact18", "densenet121", "resnext29_32x4d",
    "mobilenetv2", "dpn92",    "pnasnetA", "senet18",     "efficientnetb0"};

// The reference (the authors' PyTorch network deconvolution against PyTorch's batch-norm
// networks) on one NVIDIA H200, PyTorch 2.11, CUDA 13.0, cuDNN 9.19, fp32 with cuDNN's default
// TF32 convolutions, cudnn.benchmark on; batch 128 of random 3x32x32 images; SGD momentum 0.9,
// wd 1e-3; mean over 30 steps after 8 warm-up steps. Measured 2026-11-26 (project anchors).
// EfficientNet-B0's ND figure is the reference's buggy form (only the stem deconvolved).
struct GpuAnchor {
  double bn_ms, nd_ms;
};
const std::map<std::string, GpuAnchor> kH200Reference = {
    {"vgg16", {4.98, 45.35}},
    {"resnet18", {7.17, 73.47}},
    {"preact18", {7.08, 89.98}},
    {"densenet121", {45.69, 485.34}},
    {"resnext29_32x4d", {19.05, 77.77}},
    {"mobilenetv2", {13.35, 131.34}},
    {"dpn92", {54.45, 273.80}},
    {"pnasnetA", {16.54, 89.61}},
    {"senet18", {10.35, 108.25}},
    {"efficientnetb0", {17.48, 30.79}},
};
// Debian's PyTorch 1.13 (oneDNN convolutions), 2 threads, the reference networks, training step
// at batch 32 on random 3x32x32 images, images/s on the 2-core development machine kind
// (measured 2026-12-01, project anchors).
struct CpuAnchor {
  double bn_img_s, nd_img_s;
};
const std::map<std::string, CpuAnchor> kCpuPyTorch = {{"resnet18", {38.2, 4.3}},
                                                      {"vgg16", {58.9, 5.9}}};
constexpr int64_t kCpuAnchorBatch = 32;

struct Options {
  std::vector<std::string> nets = kCifarNets;
  std::vector<std::string> norms = {"bn", "nd"};
  std::string device = "auto";
  int64_t batch = -1;  // 128 on a GPU, 16 on the CPU
  int warmup = -1;     // 5 on a GPU, 1 on the CPU
  int steps = -1;      // 20 on a GPU, 3 on the CPU
  int64_t classes = 10;
  int threads = 0;  // CPU threads (0: every core this process may use)
  std::string json;
  bool profile = false, tf32 = false, deterministic = false;
};

struct Measurement {
  std::string net, norm;
  bool ok = false;
  std::string error;
  double median_ms = 0, min_ms = 0, images_per_s = 0;
  double first_loss = 0, last_loss = 0;
  int64_t peak_bytes = 0, allocations = 0;  // allocations during the timed steps
  int64_t parameters = 0;
  std::optional<profile::Totals> profile;
  double profiled_step_ms = 0;  // mean step time of the profiled steps
  // Per timed step on a CUDA device: kernel launches, library calls (-1: uncounted), host
  // synchronisations and device allocations.
  double launches = 0, library_calls = -1, host_syncs = 0, device_allocations = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Wall time of `steps` calls of `step`, one sample per call, timed on the device.
class StepTimer {
 public:
  explicit StepTimer(Device d) : device_(d) {}
  std::vector<double> time(int steps, const std::function<void()>& step) {
    std::vector<double> ms;
    synchronize(device_);
#ifdef ND_WITH_CUDA
    if (device_.is_cuda()) {
      cudaStream_t s = kernels::cuda_stream(device_.index);
      std::vector<cudaEvent_t> events;
      for (int i = 0; i <= steps; ++i) events.push_back(kernels::cuda_event_create());
      kernels::cuda_event_record(events[0], s);
      for (int i = 0; i < steps; ++i) {
        step();
        kernels::cuda_event_record(events[size_t(i) + 1], s);
      }
      kernels::cuda_event_synchronize(events.back());
      for (int i = 0; i < steps; ++i)
        ms.push_back(kernels::cuda_event_elapsed_ms(events[size_t(i)], events[size_t(i) + 1]));
      for (cudaEvent_t e : events) kernels::cuda_event_destroy(e);
      return ms;
    }
#endif
    for (int i = 0; i < steps; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step();
      synchronize(device_);
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return ms;
  }

 private:
  Device device_;
};

Measurement measure(const Options& o, Device device, const std::string& net_name,
                    const std::string& norm) {
  Measurement m;
  m.net = net_name;
  m.norm = norm;
  empty_cache(device);
  reset_peak_bytes(device);
  TrainConfig cfg;  // nd-train's defaults: the reference's CIFAR settings
  cfg.arch = net_name;
  cfg.norm = norm;
  Generator init(0);
  std::shared_ptr<Module> net = build_net(net_config(cfg, 3, 32, 32, o.classes), init);
  net->to(device);
  net->train();
  m.parameters = net->num_parameters();
  Sgd opt(net->parameters(), cfg.lr, cfg.momentum, cfg.weight_decay);
  Generator data(1);
  const Tensor x = normal_tensor({o.batch, 3, 32, 32}, 0, 1, data).to(device);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < o.batch; ++i) labels.push_back(int64_t(data.below(uint64_t(o.classes))));
  const Tensor y = Tensor::from_vector(labels, {o.batch}).to(device);

  Tensor last_loss;
  auto step = [&] {
    Tensor loss = ops::cross_entropy((*net)(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    last_loss = loss.detach();
  };
  for (int i = 0; i < o.warmup; ++i) {
    step();
    if (i == 0) m.first_loss = last_loss.item();
  }
  synchronize(device);
  const int64_t mallocs_before = allocator_stats(device).device_mallocs;
  const profile::DeviceActivity before = profile::device_activity();
  StepTimer timer(device);
  const std::vector<double> ms = timer.time(o.steps, step);
  const profile::DeviceActivity after = profile::device_activity();
  m.allocations = allocator_stats(device).device_mallocs - mallocs_before;
  const double steps = std::max(1, o.steps);
  m.launches = double(after.kernel_launches - before.kernel_launches) / steps;
  if (after.library_calls >= 0)
    m.library_calls = double(after.library_calls - before.library_calls) / steps;
  m.host_syncs = double(after.host_syncs - before.host_syncs) / steps;
  m.device_allocations = double(after.device_allocations - before.device_allocations) / steps;
  m.last_loss = last_loss.item();
  if (o.warmup == 0) m.first_loss = m.last_loss;
  m.median_ms = median(ms);
  m.min_ms = *std::min_element(ms.begin(), ms.end());
  m.images_per_s = double(o.batch) / (m.median_ms * 1e-3);
  m.peak_bytes = allocator_stats(device).peak_bytes_in_use;
  if (o.profile) {
    profile::start(device);
    const std::vector<double> pms = timer.time(o.steps, step);
    m.profile = profile::stop();
    double sum = 0;
    for (double v : pms) sum += v;
    m.profiled_step_ms = sum / double(pms.size());
  }
  m.ok = true;
  return m;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

void print_header(bool gpu, bool cpu_anchor) {
  std::printf("%-16s %-4s %10s %10s %9s %9s %7s %6s", "network", "norm", "median_ms", "min_ms",
              "img/s", "peak_MiB", "allocs", "ND/BN");
  if (gpu) std::printf(" %12s %9s", "ref_H200_ms", "ref/ours");
  if (cpu_anchor) std::printf(" %12s %9s", "torch_img/s", "ours/torch");
  std::printf("  status\n");
}

void print_row(const Measurement& m, const Measurement* bn, bool gpu, bool cpu_anchor) {
  if (!m.ok) {
    std::printf("%-16s %-4s %10s %10s %9s %9s %7s %6s", m.net.c_str(), m.norm.c_str(), "-", "-",
                "-", "-", "-", "-");
    if (gpu) std::printf(" %12s %9s", "-", "-");
    if (cpu_anchor) std::printf(" %12s %9s", "-", "-");
    std::printf("  FAIL: %s\n", m.error.c_str());
    return;
  }
  const std::string ratio =
      m.norm == "nd" && bn && bn->ok ? fmt("%.2f", m.median_ms / bn->median_ms) : "";
  std::printf("%-16s %-4s %10.3f %10.3f %9.1f %9.1f %7lld %6s", m.net.c_str(), m.norm.c_str(),
              m.median_ms, m.min_ms, m.images_per_s, double(m.peak_bytes) / double(1 << 20),
              (long long)m.allocations, ratio.c_str());
  if (gpu) {
    auto a = kH200Reference.find(m.net);
    if (a != kH200Reference.end()) {
      const double ref = m.norm == "bn" ? a->second.bn_ms : a->second.nd_ms;
      std::printf(" %12.2f %9.2f", ref, ref / m.median_ms);
    } else {
      std::printf(" %12s %9s", "-", "-");
    }
  }
  if (cpu_anchor) {
    auto a = kCpuPyTorch.find(m.net);
    if (a != kCpuPyTorch.end()) {
      const double ref = m.norm == "bn" ? a->second.bn_img_s : a->second.nd_img_s;
      std::printf(" %12.1f %9.2f", ref, m.images_per_s / ref);
    } else {
      std::printf(" %12s %9s", "-", "-");
    }
  }
  std::string status = "ok";
  if (!std::isfinite(m.last_loss)) status = "WARN: loss not finite";
  if (gpu && m.allocations > 0)
    status = "FAIL: " + std::to_string(m.allocations) + " device mallocs after warm-up";
  std::printf("  %s\n", status.c_str());
}

bool row_failed(const Measurement& m, bool gpu) {
  return !m.ok || (gpu && m.allocations > 0);
}

// Where the profiled steps' time went, per step: each kind's share and op count, and the part
// of the step no op covers (launch gaps and host work between ops).
void print_profile(const Measurement& m, int steps) {
  const profile::Totals& t = *m.profile;
  const double step_ms = m.profiled_step_ms;
  std::printf("\nprofile %s --norm %s: %.3f ms per step (events around every op)\n", m.net.c_str(),
              m.norm.c_str(), step_ms);
  std::printf("  %-18s %10s %7s %10s\n", "kind", "ms/step", "share", "ops/step");
  double covered = 0;
  for (int k = 0; k < profile::kKinds; ++k) {
    const double ms = t.ms[size_t(k)] / steps;
    covered += ms;
    if (t.calls[size_t(k)] == 0) continue;
    std::printf("  %-18s %10.3f %6.1f%% %10.1f\n", profile::kind_name(profile::Kind(k)), ms,
                100.0 * ms / step_ms, double(t.calls[size_t(k)]) / steps);
  }
  std::printf("  %-18s %10.3f %6.1f%%\n", "not in any op", step_ms - covered,
              100.0 * (step_ms - covered) / step_ms);
}

// What one training step asks of the device: on a GPU the launch and sync counts say how much
// host overhead a step has; in the device-emulation build they are the numbers worth reading
// (its times are the emulator's CPU times, not a GPU's).
void print_activity(const std::vector<Measurement>& all) {
  std::printf("\nper step on the device%s:\n",
              cuda_emulated() ? " (device emulation: counts are exact, times are not a GPU's)"
                                 : "");
  std::printf("%-16s %-4s %14s %14s %11s %13s\n", "network", "norm", "kernel_launches",
              "library_calls", "host_syncs", "device_allocs");
  for (const Measurement& m : all) {
    if (!m.ok) continue;
    const std::string calls = m.library_calls >= 0 ? fmt("%.1f", m.library_calls) : "-";
    std::printf("%-16s %-4s %14.1f %14s %11.1f %13.1f\n", m.net.c_str(), m.norm.c_str(),
                m.launches, calls.c_str(), m.host_syncs, m.device_allocations);
  }
}

nlohmann::json to_json(const Measurement& m) {
  nlohmann::json j;
  j["ok"] = m.ok;
  if (!m.ok) {
    j["error"] = m.error;
    return j;
  }
  j["median_ms"] = m.median_ms;
  j["min_ms"] = m.min_ms;
  j["images_per_s"] = m.images_per_s;
  j["peak_bytes"] = m.peak_bytes;
  j["allocations_after_warmup"] = m.allocations;
  j["per_step"] = {{"kernel_launches", m.launches},
                   {"library_calls", m.library_calls},
                   {"host_syncs", m.host_syncs},
                   {"device_allocations", m.device_allocations}};
  j["parameters"] = m.parameters;
  j["first_loss"] = std::isfinite(m.first_loss) ? nlohmann::json(m.first_loss) : nullptr;
  j["last_loss"] = std::isfinite(m.last_loss) ? nlohmann::json(m.last_loss) : nullptr;
  if (m.profile) {
    nlohmann::json p;
    p["step_ms"] = m.profiled_step_ms;
    for (int k = 0; k < profile::kKinds; ++k)
      p[profile::kind_name(profile::Kind(k))] = {{"ms", m.profile->ms[size_t(k)]},
                                                 {"ops", m.profile->calls[size_t(k)]}};
    j["profile"] = p;
  }
  return j;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int bench_main(int argc, char** argv) {
  // Line-buffered even into a file, so a run cut by a timeout keeps every finished row.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Options o;
  std::string nets = "", norms = "bn,nd";
  CLI::App app{
      "nd-bench-train: median ms per full training step (forward, cross-entropy, backward, SGD) "
      "of the CIFAR networks with batch norm and with deconvolution"};
  app.add_option("--nets", nets, "comma-separated networks (default: the ten CIFAR networks)");
  app.add_option("--norm", norms, "comma-separated: bn, nd")->capture_default_str();
  app.add_option("--device", o.device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  app.add_option("--batch", o.batch, "images per step (default 128 on a GPU, 16 on the CPU)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  app.add_option("--warmup", o.warmup, "untimed steps first (default 5 on a GPU, 1 on the CPU)")
      ->check(CLI::Range(0, 100000));
  app.add_option("--steps", o.steps, "timed steps (default 20 on a GPU, 3 on the CPU)")
      ->check(CLI::Range(1, 100000));
  app.add_option("--classes", o.classes, "classes of the classifier")->capture_default_str();
  app.add_option("--threads", o.threads,
                 "CPU threads of OpenBLAS, oneDNN and the kernels (0: OMP_NUM_THREADS or every "
                 "core, as nd-train)")
      ->check(CLI::Range(0, 4096));
  app.add_option("--json", o.json, "also write one JSON line per network to this file");
  app.add_flag("--profile", o.profile,
               "time every op by kind in as many extra steps and print where the time goes");
  app.add_flag("--tf32", o.tf32, "TF32 tensor-core math for convolutions and GEMMs (GPU)");
  app.add_flag("--deterministic", o.deterministic,
               "deterministic cuDNN algorithms only (GPU; bitwise repeatable steps)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!nets.empty()) o.nets = split(nets);
  o.norms = split(norms);
  Device device;
  try {
    for (const std::string& n : o.norms)
      ND_CHECK(n == "bn" || n == "nd", "--norm takes bn and/or nd, got '", n, "'");
    for (const std::string& n : o.nets)
      ND_CHECK(std::find(kCifarNets.begin(), kCifarNets.end(), n) != kCifarNets.end(),
               "--nets: unknown network '", n,
               "'; the CIFAR networks are vgg16 resnet18 preact18 "
               "densenet121 resnext29_32x4d mobilenetv2 dpn92 pnasnetA senet18 efficientnetb0");
    device = parse_device(o.device);
    set_gpu_math({o.tf32, o.deterministic});
    set_cpu_threads(o.threads > 0 ? o.threads : default_cpu_threads());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nd-bench-train: %s\n", e.what());
    return 1;
  }
  const bool gpu = device.is_cuda();
  if (o.batch < 0) o.batch = gpu ? 128 : 16;
  if (o.warmup < 0) o.warmup = gpu ? 5 : 1;
  if (o.steps < 0) o.steps = gpu ? 20 : 3;
  std::string device_name = device.str();
  if (!gpu)
    device_name +=
        " (" + std::to_string(cpu_threads()) + (cpu_threads() == 1 ? " thread)" : " threads)");
#ifdef ND_WITH_CUDA
  if (gpu) device_name += " (" + kernels::cuda_device_name(device.index) + ")";
#endif
  const bool cpu_anchor = !gpu && o.batch == kCpuAnchorBatch;
  std::printf(
      "nd-bench-train: device %s, batch %lld of 3x32x32, %lld classes, warmup %d, steps %d, "
      "float32%s%s\n",
      device_name.c_str(), (long long)o.batch, (long long)o.classes, o.warmup, o.steps,
      gpu ? (o.tf32 ? ", TF32 tensor cores on" : ", TF32 off") : "",
      gpu && o.deterministic ? ", deterministic cuDNN algorithms" : "");
  std::printf(
      "step: forward, cross-entropy, backward, SGD (momentum 0.9, wd 1e-3); timed by %s; "
      "median and minimum over the timed steps\n",
      gpu ? "CUDA events" : "a clock between synchronizes");
  if (gpu)
    std::printf(
        "ref: the authors' PyTorch code on one H200 (PyTorch 2.11, TF32 convolutions, batch "
        "128); ref/ours > 1 means we are faster\n");
  if (cpu_anchor)
    std::printf("torch: Debian's PyTorch 1.13 on this 2-core machine kind, batch 32, 2 threads\n");
  std::printf("\n");
  print_header(gpu, cpu_anchor);

  std::ofstream json;
  if (!o.json.empty()) {
    json.open(o.json);
    if (!json) {
      std::fprintf(stderr, "nd-bench-train: cannot write --json %s\n", o.json.c_str());
      return 1;
    }
  }
  int failed = 0;
  std::vector<Measurement> all;
  for (const std::string& net : o.nets) {
    std::map<std::string, Measurement> by_norm;
    for (const std::string& norm : o.norms) {
      Measurement m;
      try {
        m = measure(o, device, net, norm);
      } catch (const std::exception& e) {
        m.net = net;
        m.norm = norm;
        m.error = e.what();
        std::replace(m.error.begin(), m.error.end(), '\n', ' ');
      }
      by_norm[norm] = m;
      auto bn = by_norm.find("bn");
      print_row(m, bn == by_norm.end() ? nullptr : &bn->second, gpu, cpu_anchor);
      failed += row_failed(m, gpu);
      all.push_back(m);
    }
    if (json.is_open()) {
      nlohmann::json line = {{"net", net},       {"device", device_name},
                             {"batch", o.batch}, {"steps", o.steps},
                             {"tf32", o.tf32},   {"deterministic", o.deterministic}};
      for (auto& [norm, m] : by_norm) line[norm] = to_json(m);
      if (by_norm.count("bn") && by_norm.count("nd") && by_norm["bn"].ok && by_norm["nd"].ok)
        line["nd_over_bn"] = by_norm["nd"].median_ms / by_norm["bn"].median_ms;
      json << line.dump() << "\n" << std::flush;
    }
  }
  if (o.profile)
    for (const Measurement& m : all)
      if (m.ok && m.profile) {
        print_profile(m, o.steps);
      }
  if (gpu) print_activity(all);
  std::printf("\nnd-bench-train: %zu measurements, %d failed\n", all.size(), failed);
  return failed > 0 ? 1 : 0;
}

}  // namespace
}  // namespace nd::bench

int main(int argc, char** argv) {
  return nd::bench::bench_main(argc, argv);
}
