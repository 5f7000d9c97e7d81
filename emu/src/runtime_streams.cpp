// Deferred streams: every stream holds a queue of operations that run, in order, on the host thread
// that synchronises it (kernel grids fan out to the worker pool). Nothing runs at enqueue time, so
// a missing cudaStreamWaitEvent or an early reuse of a pinned buffer gives a wrong result instead
// of passing by luck. Events point at a position in their stream's queue.
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "runtime_internal.h"

namespace {

struct Dep {
  CUstream_st* stream;
  uint64_t seq;
};

struct Op {
  uint64_t seq = 0;
  const char* what = "";
  std::function<void()> run;
  std::vector<Dep> deps;  // legacy default-stream ordering
};

// Where an event was last recorded, and the host time at which that record ran.
struct Record {
  CUstream_st* stream = nullptr;
  uint64_t seq = 0;
  bool ran = false;
  double ms = 0;
};

}  // namespace

struct CUstream_st {
  int device = 0;
  bool blocking = true;  // orders with the legacy default stream
  bool is_default = false;
  std::deque<Op> queue;
  uint64_t enqueued = 0;
  uint64_t completed = 0;
  uint64_t running = 0;  // the op in progress (guards re-entry)
};

struct CUevent_st {
  unsigned flags = 0;
  std::shared_ptr<Record> record;
};

namespace nd_emu::detail {
namespace {

// Leaked on purpose (exit-time callers). Streams are never deleted: records may point at them.
struct StreamState {
  std::mutex mutex;
  std::recursive_mutex exec;  // one host thread runs queued work at a time
  std::vector<CUstream_st*> all;
  std::set<CUstream_st*> live;
  std::vector<CUstream_st*> defaults;
  std::set<CUevent_st*> events;
};
StreamState& st() {
  static StreamState* s = [] {
    auto* state = new StreamState;
    state->defaults.assign(size_t(device_count()), nullptr);
    return state;
  }();
  return *s;
}

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// Needs st().mutex.
CUstream_st* resolve_locked(cudaStream_t s) {
  StreamState& S = st();
  if (s == nullptr || s == cudaStreamLegacy) {
    CUstream_st*& d = S.defaults[size_t(current_device())];
    if (d == nullptr) {
      d = new CUstream_st;
      d->device = current_device();
      d->is_default = true;
      S.all.push_back(d);
      S.live.insert(d);
    }
    return d;
  }
  return S.live.count(s) ? s : nullptr;
}

CUstream_st* resolve(cudaStream_t s) {
  std::lock_guard<std::mutex> lock(st().mutex);
  return resolve_locked(s);
}

uint64_t push_locked(CUstream_st* s, const char* what, std::function<void()> work) {
  Op op;
  op.seq = ++s->enqueued;
  op.what = what;
  op.run = std::move(work);
  // The legacy default stream waits for the blocking streams of its device, and they for it.
  for (CUstream_st* t : st().all) {
    if (t == s || t->device != s->device || !t->blocking || t->enqueued == t->completed) continue;
    if (s->is_default ? !t->is_default : (t->is_default && s->blocking))
      op.deps.push_back({t, t->enqueued});
  }
  s->queue.push_back(std::move(op));
  return s->enqueued;
}

uint64_t push(CUstream_st* s, const char* what, std::function<void()> work) {
  std::lock_guard<std::mutex> lock(st().mutex);
  return push_locked(s, what, std::move(work));
}

// Runs s's queue up to and including op `target`, with device memory accessible.
void run_until(CUstream_st* s, uint64_t target) {
  StreamState& S = st();
  std::lock_guard<std::recursive_mutex> exec(S.exec);
  bool opened = false;
  for (;;) {
    Op op;
    {
      std::lock_guard<std::mutex> lock(S.mutex);
      if (s->completed >= target || s->queue.empty() || s->running != 0) break;
      op = std::move(s->queue.front());
      s->queue.pop_front();
      s->running = op.seq;
    }
    // After a fault the context is dead: the rest of the queued work is dropped.
    if (sticky_error() == cudaSuccess) {
      if (!opened) open_device_access();
      opened = true;
      for (const Dep& d : op.deps) run_until(d.stream, d.seq);
      try {
        op.run();
      } catch (const std::exception& e) {
        fault(cudaErrorLaunchFailure, std::string(op.what) + " threw: " + e.what());
      }
    }
    std::lock_guard<std::mutex> lock(S.mutex);
    s->completed = op.seq;
    s->running = 0;
  }
  if (opened) close_device_access();
}

uint64_t enqueued_of(CUstream_st* s) {
  std::lock_guard<std::mutex> lock(st().mutex);
  return s->enqueued;
}

std::vector<CUstream_st*> streams_of(int device) {
  std::lock_guard<std::mutex> lock(st().mutex);
  std::vector<CUstream_st*> out;
  for (CUstream_st* s : st().all)
    if (s->device == device && st().live.count(s)) out.push_back(s);
  return out;
}

bool live_event(cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(st().mutex);
  return e != nullptr && st().events.count(e) != 0;
}

bool record_done(const Record& r) {
  std::lock_guard<std::mutex> lock(st().mutex);
  return r.stream->completed >= r.seq;
}

const char* kind_name(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost:
      return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice:
      return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost:
      return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "cudaMemcpyDeviceToDevice";
    case cudaMemcpyDefault:
      return "cudaMemcpyDefault";
  }
  return "an unknown cudaMemcpyKind";
}

bool is_device(const void* p) {
  const MemoryKind k = memory_kind(p);
  return k == MemoryKind::Device || k == MemoryKind::FreedDevice;
}

// True when [p, p + bytes) is inside one live allocation (of `device` when >= 0).
bool device_range_ok(const void* p, size_t bytes, int device) {
  AllocView v;
  return find_allocation(p, &v) && v.live && uintptr_t(p) + bytes <= v.base + v.size &&
         uintptr_t(p) < v.base + v.size && (device < 0 || v.device == device);
}

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s,
                 const char* call, bool sync) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  CUstream_st* stream = resolve(s);
  if (stream == nullptr)
    return call_error(cudaErrorInvalidResourceHandle, std::string(call) + ": invalid stream");
  if (bytes == 0) return api_return(cudaSuccess);
  if (dst == nullptr || src == nullptr)
    return call_error(cudaErrorInvalidValue, std::string(call) + ": null pointer");
  const bool src_dev = is_device(src), dst_dev = is_device(dst);
  if (kind == cudaMemcpyDefault)
    kind = src_dev ? (dst_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                   : (dst_dev ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  const bool want_src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const bool want_dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault || src_dev != want_src_dev ||
      dst_dev != want_dst_dev)
    return call_error(cudaErrorInvalidMemcpyDirection,
                      std::string(call) + " with " + kind_name(kind) + ": source is " +
                          describe_pointer(src) + ", destination is " + describe_pointer(dst));
  if (src_dev && !device_range_ok(src, bytes, -1))
    return call_error(cudaErrorInvalidValue,
                      std::string(call) + ": source range of " + std::to_string(bytes) +
                          " bytes at " + describe_pointer(src) + " is not in one live allocation");
  if (dst_dev && !device_range_ok(dst, bytes, -1))
    return call_error(cudaErrorInvalidValue,
                      std::string(call) + ": destination range of " + std::to_string(bytes) +
                          " bytes at " + describe_pointer(dst) + " is not in one live allocation");
  AtomicCounters& c = counter_state();
  std::function<void()> work;
  bool blocking = sync;
  if (!src_dev && !is_pinned(src, bytes)) {
    // Pageable source: CUDA stages it at the call, so later host writes do not show.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                      static_cast<const char*>(src) + bytes);
    work = [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); };
  } else {
    work = [dst, src, bytes] { std::memmove(dst, src, bytes); };
  }
  if (kind == cudaMemcpyHostToDevice) c.bytes_h2d += int64_t(bytes);
  if (kind == cudaMemcpyDeviceToHost) {
    c.bytes_d2h += int64_t(bytes);
    if (!is_pinned(dst, bytes)) blocking = true;  // pageable D2H returns with the data
  }
  if (kind == cudaMemcpyDeviceToDevice) c.bytes_d2d += int64_t(bytes);
  const uint64_t seq = push(stream, call, std::move(work));
  if (blocking) {
    c.host_syncs++;
    run_until(stream, seq);
  }
  return api_return(sticky_error());
}

}  // namespace

cudaError_t push_work(cudaStream_t s, const char* what, std::function<void()> work, int* device) {
  std::lock_guard<std::mutex> lock(st().mutex);
  CUstream_st* stream = resolve_locked(s);
  if (stream == nullptr) return cudaErrorInvalidResourceHandle;
  if (device) *device = stream->device;
  push_locked(stream, what, std::move(work));
  return cudaSuccess;
}

void flush_device(int device) {
  for (CUstream_st* s : streams_of(device)) run_until(s, enqueued_of(s));
}

}  // namespace nd_emu::detail

namespace nd_emu {

void enqueue(cudaStream_t s, const char* what, std::function<void()> work) {
  if (detail::push_work(s, what, std::move(work), nullptr) != cudaSuccess)
    fault(cudaErrorInvalidResourceHandle, std::string(what) + ": invalid stream");
}

int stream_device(cudaStream_t s) {
  CUstream_st* stream = detail::resolve(s);
  return stream ? stream->device : detail::current_device();
}

}  // namespace nd_emu

using namespace nd_emu::detail;

cudaError_t cudaDeviceSynchronize() {
  if (sticky_error() != cudaSuccess) return sticky_error();
  counter_state().host_syncs++;
  flush_device(current_device());
  return api_return(sticky_error());
}

cudaError_t cudaStreamCreate(cudaStream_t* s) {
  return cudaStreamCreateWithFlags(s, 0);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  if (s == nullptr) return api_return(cudaErrorInvalidValue);
  if (sticky_error() != cudaSuccess) return sticky_error();
  auto* stream = new CUstream_st;
  stream->device = current_device();
  stream->blocking = (flags & cudaStreamNonBlocking) == 0;
  std::lock_guard<std::mutex> lock(st().mutex);
  st().all.push_back(stream);
  st().live.insert(stream);
  *s = stream;
  return api_return(cudaSuccess);
}

cudaError_t cudaStreamDestroy(cudaStream_t s) {
  CUstream_st* stream = resolve(s);
  if (stream == nullptr || stream->is_default) return api_return(cudaErrorInvalidResourceHandle);
  run_until(stream, enqueued_of(stream));  // queued work still completes, as on a GPU
  std::lock_guard<std::mutex> lock(st().mutex);
  st().live.erase(stream);
  return api_return(cudaSuccess);
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  CUstream_st* stream = resolve(s);
  if (stream == nullptr) return api_return(cudaErrorInvalidResourceHandle);
  counter_state().host_syncs++;
  run_until(stream, enqueued_of(stream));
  return api_return(sticky_error());
}

cudaError_t cudaStreamQuery(cudaStream_t s) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  CUstream_st* stream = resolve(s);
  if (stream == nullptr) return api_return(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lock(st().mutex);
  return stream->completed == stream->enqueued ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  if (!live_event(e)) return api_return(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lock(st().mutex);
  CUstream_st* stream = resolve_locked(s);
  if (stream == nullptr) return api_return(cudaErrorInvalidResourceHandle);
  std::shared_ptr<Record> r = e->record;  // the record as of now, as CUDA captures it
  if (r == nullptr) return api_return(cudaSuccess);
  push_locked(stream, "cudaStreamWaitEvent", [r] { run_until(r->stream, r->seq); });
  return api_return(cudaSuccess);
}

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  return cudaEventCreateWithFlags(e, 0);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  if (e == nullptr) return api_return(cudaErrorInvalidValue);
  if (sticky_error() != cudaSuccess) return sticky_error();
  auto* event = new CUevent_st;
  event->flags = flags;
  std::lock_guard<std::mutex> lock(st().mutex);
  st().events.insert(event);
  *e = event;
  return api_return(cudaSuccess);
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  {
    std::lock_guard<std::mutex> lock(st().mutex);
    if (e == nullptr || st().events.erase(e) == 0)
      return api_return(cudaErrorInvalidResourceHandle);
  }
  delete e;  // queued records hold their Record, not the event
  return api_return(cudaSuccess);
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  std::lock_guard<std::mutex> lock(st().mutex);
  if (e == nullptr || st().events.count(e) == 0) return api_return(cudaErrorInvalidResourceHandle);
  CUstream_st* stream = resolve_locked(s);
  if (stream == nullptr) return api_return(cudaErrorInvalidResourceHandle);
  auto r = std::make_shared<Record>();
  r->stream = stream;
  r->seq = push_locked(stream, "cudaEventRecord", [r] {
    r->ms = now_ms();  // host time at which the record ran
    r->ran = true;
  });
  e->record = std::move(r);
  return api_return(cudaSuccess);
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  if (!live_event(e)) return api_return(cudaErrorInvalidResourceHandle);
  counter_state().host_syncs++;
  std::shared_ptr<Record> r;
  {
    std::lock_guard<std::mutex> lock(st().mutex);
    r = e->record;
  }
  if (r) run_until(r->stream, r->seq);
  return api_return(sticky_error());
}

cudaError_t cudaEventQuery(cudaEvent_t e) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  if (!live_event(e)) return api_return(cudaErrorInvalidResourceHandle);
  std::shared_ptr<Record> r;
  {
    std::lock_guard<std::mutex> lock(st().mutex);
    r = e->record;
  }
  return r == nullptr || record_done(*r) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t stop) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  if (ms == nullptr) return api_return(cudaErrorInvalidValue);
  if (!live_event(start) || !live_event(stop)) return api_return(cudaErrorInvalidResourceHandle);
  if ((start->flags | stop->flags) & cudaEventDisableTiming)
    return api_return(cudaErrorInvalidResourceHandle);
  std::shared_ptr<Record> a, b;
  {
    std::lock_guard<std::mutex> lock(st().mutex);
    a = start->record;
    b = stop->record;
  }
  if (a == nullptr || b == nullptr) return api_return(cudaErrorInvalidResourceHandle);
  if (!record_done(*a) || !record_done(*b)) return cudaErrorNotReady;
  *ms = float(b->ms - a->ms);
  return api_return(cudaSuccess);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return copy(dst, src, bytes, kind, nullptr, "cudaMemcpy", true);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s) {
  return copy(dst, src, bytes, kind, s, "cudaMemcpyAsync", false);
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t s) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  const int n = device_count();
  if (dst_device < 0 || dst_device >= n || src_device < 0 || src_device >= n)
    return api_return(cudaErrorInvalidDevice);
  CUstream_st* stream = resolve(s);
  if (stream == nullptr) return api_return(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return api_return(cudaSuccess);
  if (!device_range_ok(dst, bytes, dst_device) || !device_range_ok(src, bytes, src_device))
    return call_error(cudaErrorInvalidValue, "cudaMemcpyPeerAsync: " + std::to_string(bytes) +
                                                 " bytes from " + describe_pointer(src) +
                                                 " (device " + std::to_string(src_device) +
                                                 ") to " + describe_pointer(dst) + " (device " +
                                                 std::to_string(dst_device) +
                                                 ") is not inside live allocations of "
                                                 "those devices");
  counter_state().bytes_d2d += int64_t(bytes);
  push(stream, "cudaMemcpyPeerAsync", [dst, src, bytes] { std::memmove(dst, src, bytes); });
  return api_return(cudaSuccess);
}

cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  if (sticky_error() != cudaSuccess) return sticky_error();
  CUstream_st* stream = resolve(s);
  if (stream == nullptr) return api_return(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return api_return(cudaSuccess);
  if (!device_range_ok(p, bytes, -1))
    return call_error(cudaErrorInvalidValue, "cudaMemset: " + std::to_string(bytes) + " bytes at " +
                                                 describe_pointer(p) +
                                                 " is not inside one live allocation");
  push(stream, "cudaMemset", [p, value, bytes] { std::memset(p, value, bytes); });
  return api_return(cudaSuccess);
}

cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  return cudaMemsetAsync(p, value, bytes, nullptr);
}
