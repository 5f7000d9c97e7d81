// Per-kind op timing (see profile.h). Spans are recorded by the thread that called start();
// nested dispatches inside an op count once, in the outermost op. CUDA events are pooled and
// reused from one start() to the next.
#include "engine/profile.h"

#include <chrono>
#include <cstring>
#include <vector>

#include "core/error.h"
#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace nd::profile {

namespace {

using Clock = std::chrono::steady_clock;

struct Span {
  Kind kind;
  Clock::time_point t0, t1;      // CPU
  int event0 = -1, event1 = -1;  // CUDA: indices into the event pool
};

struct Recorder {
  Device device;
  std::vector<Span> spans;
  int depth = 0;
#ifdef ND_WITH_CUDA
  std::vector<cudaEvent_t> events;  // pool; the first `used` are recorded in this run
  size_t used = 0;
  int take_event() {
    if (used == events.size()) events.push_back(kernels::cuda_event_create());
    return int(used++);
  }
#endif
};

thread_local bool t_active = false;
thread_local Recorder t_recorder;

bool starts_with(const char* s, const char* prefix) {
  return std::strncmp(s, prefix, std::strlen(prefix)) == 0;
}

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Convolution:
      return "convolution";
    case Kind::DeconvStatistics:
      return "deconv statistics";
    case Kind::NewtonSchulz:
      return "Newton-Schulz";
    case Kind::Fold:
      return "fold";
    case Kind::BatchNorm:
      return "batch norm";
    case Kind::Copy:
      return "copy/cast/fill";
    case Kind::Other:
      return "the rest";
  }
  return "?";
}

Kind classify(const char* op) {
  if (starts_with(op, "conv2d") || starts_with(op, "im2col") || starts_with(op, "col2im"))
    return Kind::Convolution;
  if (starts_with(op, "sampled_covariance") || starts_with(op, "rows_covariance"))
    return Kind::DeconvStatistics;
  if (starts_with(op, "newton_schulz")) return Kind::NewtonSchulz;
  if (starts_with(op, "fold")) return Kind::Fold;
  if (starts_with(op, "batch_norm")) return Kind::BatchNorm;
  if (starts_with(op, "copy") || starts_with(op, "cast") || starts_with(op, "fill") ||
      starts_with(op, "transfer"))
    return Kind::Copy;
  return Kind::Other;
}

double Totals::total_ms() const {
  double t = 0;
  for (double v : ms) t += v;
  return t;
}

void start(Device d) {
  Recorder& r = t_recorder;
  r.device = d;
  r.spans.clear();
  r.depth = 0;
#ifdef ND_WITH_CUDA
  r.used = 0;
#endif
  t_active = true;
}

bool active() {
  return t_active;
}

Totals stop() {
  Recorder& r = t_recorder;
  Totals t;
  if (!t_active) return t;
  t_active = false;
  synchronize(r.device);
  for (const Span& s : r.spans) {
    double ms = 0;
    if (s.event0 >= 0) {
#ifdef ND_WITH_CUDA
      ms = kernels::cuda_event_elapsed_ms(r.events[size_t(s.event0)], r.events[size_t(s.event1)]);
#endif
    } else {
      ms = std::chrono::duration<double, std::milli>(s.t1 - s.t0).count();
    }
    t.ms[size_t(s.kind)] += ms;
    t.calls[size_t(s.kind)]++;
  }
  r.spans.clear();
  return t;
}

void OpScope::begin(const char* op, Device d) {
  Recorder& r = t_recorder;
  counted_ = true;
  device_ = d;
  if (r.depth++ > 0) return;  // inside another op: counted there
  Span s;
  s.kind = classify(op);
  if (d.is_cuda()) {
#ifdef ND_WITH_CUDA
    s.event0 = r.take_event();
    s.event1 = r.take_event();
    kernels::cuda_event_record(r.events[size_t(s.event0)], kernels::cuda_stream(d.index));
#endif
  } else {
    s.t0 = Clock::now();
  }
  slot_ = int(r.spans.size());
  r.spans.push_back(s);
}

void OpScope::end() {
  Recorder& r = t_recorder;
  r.depth--;
  if (slot_ < 0 || !t_active) return;
  Span& s = r.spans[size_t(slot_)];
  if (s.event1 >= 0) {
#ifdef ND_WITH_CUDA
    kernels::cuda_event_record(r.events[size_t(s.event1)], kernels::cuda_stream(device_.index));
#endif
  } else {
    s.t1 = Clock::now();
  }
}

DeviceActivity device_activity() {
#ifdef ND_WITH_CUDA
  return kernels::cuda_activity();
#else
  return DeviceActivity{};
#endif
}

}  // namespace nd::profile
