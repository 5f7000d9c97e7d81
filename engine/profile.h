// Time per kind of op (convolution, deconvolution statistics, Newton-Schulz, fold, batch norm,
// copies, the rest) for nd-bench-train --profile. Every op passes through the one dispatch point
// (dispatch.h), which opens an OpScope while profiling is on; on a GPU the scope records a pair
// of CUDA events on the op's stream, on the CPU it reads a clock. Off (the default) a scope costs
// one branch. One thread profiles at a time.
#pragma once
#include <array>
#include <cstdint>

#include "engine/device.h"
#include "kernels/cuda_runtime_api.h"

namespace nd::profile {

enum class Kind { Convolution, DeconvStatistics, NewtonSchulz, Fold, BatchNorm, Copy, Other };
constexpr int kKinds = 7;
const char* kind_name(Kind k);
// The kind of a dispatched op by its name ("conv2d backward" -> Convolution, ...).
Kind classify(const char* op);

struct Totals {
  std::array<double, kKinds> ms{};      // summed time of the ops of each kind
  std::array<int64_t, kKinds> calls{};  // how many ops of each kind ran
  double total_ms() const;
};

// Starts recording the ops that run on `d` (clears what was recorded before).
void start(Device d);
// Waits for the device, sums what was recorded since start() and stops recording.
Totals stop();
bool active();

class OpScope {
 public:
  OpScope(const char* op, Device d) {
    if (active()) begin(op, d);
  }
  ~OpScope() {
    if (counted_) end();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  void begin(const char* op, Device d);
  void end();
  bool counted_ = false;  // began while profiling (maybe nested)
  int slot_ = -1;         // its span; -1 when nested inside another op
  Device device_;
};

// What the CUDA devices have been given so far (kernels/cuda_runtime_api.h): kernel launches,
// library calls (-1 where uncounted: on a GPU), host synchronisations and device allocations;
// all zero in a build without CUDA. Differences between two reads count the work of what ran
// between them.
using DeviceActivity = kernels::CudaActivity;
DeviceActivity device_activity();

}  // namespace nd::profile
