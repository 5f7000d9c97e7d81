// Errors of the emulated runtime: the per-thread last error, the process-wide sticky fault (as a
// real context's illegal-address or launch failure), their names, and the counters.
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "runtime_internal.h"

namespace nd_emu {
namespace detail {
namespace {

// Leaked on purpose: engine static destructors may still call into the runtime at exit.
struct FaultState {
  std::mutex mutex;
  std::atomic<int> sticky{cudaSuccess};
  std::string message;
};
FaultState& fault_state() {
  static FaultState* state = new FaultState;
  return *state;
}

thread_local cudaError_t t_last_error = cudaSuccess;

}  // namespace

cudaError_t sticky_error() {
  return cudaError_t(fault_state().sticky.load(std::memory_order_acquire));
}

cudaError_t api_return(cudaError_t e) {
  const cudaError_t sticky = sticky_error();
  if (sticky != cudaSuccess) return sticky;
  if (e != cudaSuccess && e != cudaErrorNotReady) t_last_error = e;
  return e;
}

void print_line(const std::string& message) {
  std::string line = "nd-emu: " + message + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

cudaError_t call_error(cudaError_t e, const std::string& message) {
  if (sticky_error() == cudaSuccess) print_line(message);
  return api_return(e);
}

AtomicCounters& counter_state() {
  static AtomicCounters* c = new AtomicCounters;
  return *c;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  return end != v ? int64_t(x) : fallback;
}

std::string site(const char* file, int line) {
  return std::string(file ? file : "?") + ":" + std::to_string(line);
}

}  // namespace detail

void fault(cudaError_t e, const std::string& message) {
  auto& s = detail::fault_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.sticky.load() != cudaSuccess) return;  // the first fault is the one reported
  s.message = message;
  s.sticky.store(e == cudaSuccess ? cudaErrorUnknown : e, std::memory_order_release);
  detail::print_line(message);
}

std::string last_fault_message() {
  auto& s = detail::fault_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.message;
}

void clear_fault() {
  auto& s = detail::fault_state();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.message.clear();
  s.sticky.store(cudaSuccess);
  detail::t_last_error = cudaSuccess;
}

Counters counters() {
  const auto& c = detail::counter_state();
  Counters out;
  out.kernel_launches = c.kernel_launches.load();
  out.library_calls = c.library_calls.load();
  out.host_syncs = c.host_syncs.load();
  out.device_allocations = c.device_allocations.load();
  out.bytes_host_to_device = c.bytes_h2d.load();
  out.bytes_device_to_host = c.bytes_d2h.load();
  out.bytes_device_to_device = c.bytes_d2d.load();
  return out;
}

void count_library_call() {
  detail::counter_state().library_calls++;
}

}  // namespace nd_emu

cudaError_t cudaGetLastError() {
  const cudaError_t sticky = nd_emu::detail::sticky_error();
  if (sticky != cudaSuccess) return sticky;
  const cudaError_t e = nd_emu::detail::t_last_error;
  nd_emu::detail::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() {
  const cudaError_t sticky = nd_emu::detail::sticky_error();
  return sticky != cudaSuccess ? sticky : nd_emu::detail::t_last_error;
}

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorCudartUnloading:
      return "cudaErrorCudartUnloading";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady:
      return "cudaErrorNotReady";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorContextIsDestroyed:
      return "cudaErrorContextIsDestroyed";
    case cudaErrorAssert:
      return "cudaErrorAssert";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported:
      return "cudaErrorNotSupported";
    case cudaErrorUnknown:
      return "cudaErrorUnknown";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInitializationError:
      return "initialization error";
    case cudaErrorCudartUnloading:
      return "driver shutting down";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorNotReady:
      return "device not ready";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorContextIsDestroyed:
      return "context is destroyed";
    case cudaErrorAssert:
      return "device-side assert triggered";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorUnknown:
      return "unknown error";
  }
  return "unrecognized error code";
}
