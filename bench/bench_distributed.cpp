// nd-bench-distributed: what data-parallel training communicates and what that costs. Under
// `mpirun -np P` (P >= 2) it trains a network for a few steps on random images exactly as
// nd-train does (weights broadcast, statistics synchronised, bucketed gradient all-reduce) and
// prints, per step and rank, the measured step time and the bytes and collectives all-reduced
// (gradients; batch statistics of FastDeconv / Delinear / ChannelDeconv / BatchNorm, forward and
// backward). Then the scaling model of docs/distributed.md on those byte counts: ring all-reduce
// time alpha + 2 (P-1)/P * bytes / bandwidth per collective; statistics are not overlapped,
// gradients overlap the backward (2/3 of the compute); efficiency = compute / step time. The
// compute rate, bandwidths and latencies are assumptions given as flags.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <vector>

#include "engine/comm.h"
#include "engine/grad_reducer.h"
#include "nets/registry.h"
#include "nets/summary.h"

using namespace nd;

namespace {

// One ring all-reduce: alpha + 2 (P-1)/P * bytes / bandwidth over its slowest hop.
struct Hop {
  double bus_gbps;   // GB/s
  int ring_members;  // ranks on the ring (machines when the hop is the network)
  double alpha_us;   // latency per collective
  double seconds(double bytes, double calls) const {
    const double p = double(ring_members);
    return calls * alpha_us * 1e-6 + 2.0 * (p - 1.0) / p * bytes / (bus_gbps * 1e9);
  }
};

// A layout: its hops are crossed one after the other (hierarchical: NVLink inside a machine,
// then the network between machines, whose one link per machine carries the machine's share).
struct Layout {
  const char* name;
  std::vector<Hop> hops;
  double seconds(double bytes, double calls) const {
    double t = 0;
    for (const Hop& h : hops) t += h.seconds(bytes, calls);
    return t;
  }
};

}  // namespace

int main(int argc, char** argv) {
  comm::init(argc, argv);
  std::string arch = "resnet18", dataset = "imagenet", norm = "nd";
  int64_t batch = 2, steps = 2, image_size = 224, model_batch = 32;
  double tflops = 20, nvlink_gbps = 300, net_gbit = 100, nvlink_alpha = 10, net_alpha = 25;
  CLI::App app{"Data-parallel communication per step, measured, and the scaling model on it"};
  app.add_option("--arch", arch)->capture_default_str();
  app.add_option("--dataset", dataset, "cifar10 | imagenet (input shape and classes)")
      ->capture_default_str();
  app.add_option("--norm", norm, "bn | nd")->capture_default_str();
  app.add_option("--batch-size", batch, "images per rank in the measured steps")
      ->capture_default_str();
  app.add_option("--steps", steps, "measured steps (after one warm-up step)")
      ->capture_default_str();
  app.add_option("--image-size", image_size, "imagenet input side")->capture_default_str();
  app.add_option("--model-batch", model_batch, "images per GPU in the model")
      ->capture_default_str();
  app.add_option("--tflops", tflops, "model: sustained TFLOP/s of one GPU (an assumption)")
      ->capture_default_str();
  app.add_option("--nvlink-gbps", nvlink_gbps, "model: NVLink bus bandwidth, GB/s")
      ->capture_default_str();
  app.add_option("--net-gbit", net_gbit, "model: network bandwidth per machine, Gb/s")
      ->capture_default_str();
  app.add_option("--nvlink-alpha", nvlink_alpha, "model: latency per collective on NVLink, us")
      ->capture_default_str();
  app.add_option("--net-alpha", net_alpha, "model: latency per collective over the network, us")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    comm::finalize();
    return app.exit(e);
  }
  try {
    const bool imagenet = dataset == "imagenet";
    NetConfig cfg;
    cfg.arch = resolve_arch(arch, dataset);
    cfg.norm = norm;
    cfg.in_channels = 3;
    cfg.height = cfg.width = imagenet ? image_size : 32;
    cfg.num_classes = imagenet ? 1000 : 10;
    Generator gen(0);
    std::shared_ptr<Module> net = build_net(cfg, gen);
    const ModelSummary summary = summarize(*net, {3, cfg.height, cfg.width});
    net->train();
    for (auto& [name, entry] : net->ordered_state()) {
      Tensor t = entry.first;
      comm::broadcast_(t, 0);
    }
    GradientReducer reducer(net->parameters());
    Generator data_gen(100 + uint64_t(comm::rank()));
    Tensor x = normal_tensor({batch, 3, cfg.height, cfg.width}, 0, 1, data_gen);
    std::vector<int64_t> y_values;
    for (int64_t i = 0; i < batch; ++i) y_values.push_back(i % cfg.num_classes);
    Tensor y = Tensor::from_vector(y_values, {batch});
    auto step = [&] {
      net->zero_grad();
      Tensor loss = ops::cross_entropy((*net)(x), y);
      reducer.begin();
      loss.backward();
      reducer.finish(1.0 / comm::world_size());
    };
    step();  // warm-up
    comm::reset_traffic();
    comm::barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s) step();
    comm::barrier();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
        double(steps);
    const comm::Traffic t = comm::traffic();
    const double stat_bytes = double(t.statistics_bytes) / double(steps);
    const double stat_calls = double(t.statistics_calls) / double(steps);
    const double grad_bytes = double(reducer.bytes_per_step());
    if (comm::is_root()) {
      std::printf("%s --norm %s (%s, %dx%d), %lld parameters, %d rank(s) x batch %lld\n",
                  cfg.arch.c_str(), norm.c_str(), dataset.c_str(), int(cfg.height), int(cfg.width),
                  (long long)summary.parameters, comm::world_size(), (long long)batch);
      if (comm::world_size() < 2)
        std::printf("(one rank: nothing is all-reduced; run under mpirun -np 2 to measure)\n");
      std::printf(
          "measured per step and rank: %.3f s; gradients %.2f MB in %lld bucket(s); "
          "statistics %.3f MB in %.0f all-reduces\n",
          seconds, grad_bytes / 1e6, (long long)reducer.num_buckets(), stat_bytes / 1e6,
          stat_calls);
      if (comm::world_size() > 1)
        std::printf("of the step, %.3f s blocked in all-reduces (MPI on the CPU)\n",
                    t.blocked_seconds / double(steps));
      // The model: per-GPU compute of model_batch images, then the communication on each link.
      const double compute =
          3.0 * (summary.flops * double(model_batch) + summary.per_step_flops) / (tflops * 1e12);
      const double backward = compute * 2.0 / 3.0;
      std::printf(
          "model: %.1f GFLOP per image forward, %lld images per GPU, %.0f TFLOP/s -> "
          "compute %.1f ms per step\n",
          summary.flops / 1e9, (long long)model_batch, tflops, compute * 1e3);
      // Latencies grow with the depth of NCCL's trees: log2(64) / log2(8) = 2 for 64 ranks.
      const Layout layouts[] = {
          {"8 GPUs, one machine, NVLink", {{nvlink_gbps, 8, nvlink_alpha}}},
          {"8 GPUs, 8 machines, network", {{net_gbit / 8.0, 8, net_alpha}}},
          {"64 GPUs, 8 machines x 8",
           {{nvlink_gbps, 8, nvlink_alpha}, {net_gbit / 8.0, 8, 2 * net_alpha}}},
      };
      std::printf("%-30s %10s %10s %12s %10s\n", "GPUs and links", "stats ms", "grads ms",
                  "exposed ms", "efficiency");
      for (const Layout& l : layouts) {
        const double stats = l.seconds(stat_bytes, stat_calls);
        const double grads = l.seconds(grad_bytes, double(reducer.num_buckets()));
        // Gradients overlap the backward; the statistics' all-reduces wait in line.
        const double exposed = stats + std::max(0.0, grads - backward);
        std::printf("%-30s %10.2f %10.2f %12.2f %9.0f%%\n", l.name, stats * 1e3, grads * 1e3,
                    exposed * 1e3, 100.0 * compute / (compute + exposed));
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "nd-bench-distributed (" << comm::where() << "): error: " << e.what() << "\n";
    comm::abort(1);
  }
  comm::finalize();
  return 0;
}
