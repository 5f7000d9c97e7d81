// The CUDA runtime wrappers of cuda_runtime_api.h (device queries, raw allocation, copies, the one
// engine stream per device) and the per-device cuBLAS/cuDNN/cuSOLVER handles of cuda_check.h.
// Streams and handles are created lazily under a mutex and kept for the life of the process, in
// tables that are never destroyed: destroying them from static destructors could run after the
// CUDA runtime has shut down (and a destroyed table would leave LeakSanitizer no pointer to them).
#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda_check.h"
#include "kernels/cuda_runtime_api.h"

namespace nd::kernels {

namespace {
std::atomic<int64_t> g_kernel_launches{0};
std::atomic<int64_t> g_device_mallocs{0};
}  // namespace

namespace detail {
void count_kernel_launch() {
  ++g_kernel_launches;
}

void throw_launch_error(cudaError_t e, const char* kernel, const char* file, int line) {
  const std::string what = ::nd::detail::concat("launch of ", kernel);
  throw_cuda_error(e, what.c_str(), file, line);
}
}  // namespace detail

namespace {

// Makes `device` current for one scope and restores the previous device afterwards.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    ND_CUDA_CHECK(cudaGetDevice(&previous_));
    if (device != previous_) ND_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    int now = previous_;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

void check_device_index(int index) {
  const int count = cuda_device_count();
  ND_CHECK(index >= 0 && index < count, "CUDA device ", index, " does not exist (", count,
           " device(s) visible); pick an index in [0, ", count, ")");
}

int current_device() {
  int d = 0;
  ND_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// One lazily created object per device, guarded by a mutex.
template <typename H>
class PerDevice {
 public:
  template <typename Create>
  H get(int device, Create create) {
    std::lock_guard<std::mutex> lock(mu_);
    if (static_cast<int>(items_.size()) <= device) items_.resize(device + 1, H{});
    if (!items_[device]) items_[device] = create();
    return items_[device];
  }

 private:
  std::mutex mu_;
  std::vector<H> items_;
};

}  // namespace

int cuda_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error for a CPU-only run
    return 0;
  }
  return n;
}

void cuda_set_device(int index) {
  check_device_index(index);
  ND_CUDA_CHECK(cudaSetDevice(index));
}

int cuda_current_device() {
  return current_device();
}

std::string cuda_device_name(int index) {
  check_device_index(index);
  cudaDeviceProp prop{};
  ND_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  return std::string(prop.name);
}

void* cuda_malloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaSuccess) {
    ++g_device_mallocs;
    return p;
  }
  (void)cudaGetLastError();
  if (e != cudaErrorMemoryAllocation) {
    detail::throw_cuda_error(e, "cudaMalloc(&p, bytes)", __FILE__, __LINE__);
  }
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) (void)cudaGetLastError();
  int device = -1;
  (void)cudaGetDevice(&device);
  constexpr size_t kMiB = size_t(1) << 20;  // whole MiB: no exponent notation in the message
  throw OutOfMemoryError(nd::detail::concat("CUDA out of memory on device ", device,
                                            ": tried to allocate ", bytes, " bytes (", bytes / kMiB,
                                            " MiB) with ", free_bytes / kMiB, " MiB free of ",
                                            total_bytes / kMiB, " MiB; reduce --batch-size"));
}

void cuda_free(void* p) {
  if (p == nullptr) return;
  const cudaError_t e = cudaFree(p);
  // At process exit the runtime may already be gone; freeing then is harmless to skip.
  if (e == cudaErrorCudartUnloading || e == cudaErrorContextIsDestroyed) {
    (void)cudaGetLastError();
    return;
  }
  ND_CUDA_CHECK(e);
}

void* cuda_host_alloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
  if (e == cudaSuccess) return p;
  (void)cudaGetLastError();
  if (e != cudaErrorMemoryAllocation)
    detail::throw_cuda_error(e, "cudaHostAlloc(&p, bytes, cudaHostAllocDefault)", __FILE__,
                             __LINE__);
  throw OutOfMemoryError(nd::detail::concat("out of pinned host memory allocating ", bytes,
                                            " bytes; reduce --batch-size or --workers"));
}

namespace {
std::atomic<int64_t> g_host_syncs{0};
}  // namespace

int64_t cuda_host_syncs() {
  return g_host_syncs.load();
}

bool cuda_runtime_emulated() {
#ifdef ND_CUDA_EMULATION_RUNTIME
  return true;
#else
  return false;
#endif
}

CudaActivity cuda_activity() {
  CudaActivity a;
#ifdef ND_CUDA_EMULATION_RUNTIME
  // The emulator counts at the runtime and library APIs, below our wrappers.
  const nd_emu::Counters c = nd_emu::counters();
  a.kernel_launches = c.kernel_launches;
  a.library_calls = c.library_calls;
  a.host_syncs = c.host_syncs;
  a.device_allocations = c.device_allocations;
#else
  a.kernel_launches = g_kernel_launches.load();
  a.host_syncs = g_host_syncs.load();
  a.device_allocations = g_device_mallocs.load();
#endif
  return a;
}

void cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes == 0) return;
  ND_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
}

void cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes == 0) return;
  ND_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  ++g_host_syncs;
  ND_CUDA_CHECK(cudaStreamSynchronize(s));  // the caller reads dst right away
}

void cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (bytes == 0) return;
  ND_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
}

void cuda_memcpy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                      cudaStream_t s) {
  if (bytes == 0) return;
  ND_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, s));
}

void cuda_synchronize(cudaStream_t s) {
  ++g_host_syncs;
  ND_CUDA_CHECK(cudaStreamSynchronize(s));
}

namespace {
// Non-blocking: does not serialise with the legacy default stream used by other libraries.
cudaStream_t create_stream(int device) {
  DeviceGuard guard(device);
  cudaStream_t s = nullptr;
  ND_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}
}  // namespace

cudaStream_t cuda_stream(int device) {
  static PerDevice<cudaStream_t>& streams = *new PerDevice<cudaStream_t>;
  check_device_index(device);
  return streams.get(device, [device] { return create_stream(device); });
}

cudaStream_t cuda_copy_stream(int device) {
  static PerDevice<cudaStream_t>& streams = *new PerDevice<cudaStream_t>;
  check_device_index(device);
  return streams.get(device, [device] { return create_stream(device); });
}

size_t cuda_free_memory(int device) {
  check_device_index(device);
  DeviceGuard guard(device);
  size_t free_bytes = 0, total_bytes = 0;
  ND_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes;
}

cudaEvent_t cuda_event_create() {
  cudaEvent_t e = nullptr;
  ND_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

void cuda_event_destroy(cudaEvent_t e) {
  if (e == nullptr) return;
  const cudaError_t err = cudaEventDestroy(e);
  if (err == cudaErrorCudartUnloading || err == cudaErrorContextIsDestroyed) {
    (void)cudaGetLastError();
    return;
  }
  ND_CUDA_CHECK(err);
}

void cuda_event_record(cudaEvent_t e, cudaStream_t s) {
  ND_CUDA_CHECK(cudaEventRecord(e, s));
}

void cuda_event_synchronize(cudaEvent_t e) {
  ND_CUDA_CHECK(cudaEventSynchronize(e));
}

bool cuda_event_done(cudaEvent_t e) {
  const cudaError_t err = cudaEventQuery(e);
  if (err == cudaErrorNotReady) return false;  // a status, not an error: nothing to clear
  ND_CUDA_CHECK(err);
  return true;
}

void cuda_stream_wait_event(cudaStream_t s, cudaEvent_t e) {
  ND_CUDA_CHECK(cudaStreamWaitEvent(s, e, 0));
}

float cuda_event_elapsed_ms(cudaEvent_t start, cudaEvent_t stop) {
  float ms = 0;
  ND_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  return ms;
}

cublasHandle_t cublas_handle(cudaStream_t s) {
  static PerDevice<cublasHandle_t>& handles = *new PerDevice<cublasHandle_t>;
  cublasHandle_t h = handles.get(current_device(), [] {
    cublasHandle_t created = nullptr;
    ND_CUBLAS_CHECK(cublasCreate(&created));
    return created;
  });
  // CUBLAS_DEFAULT_MATH keeps FP32 GEMMs in full FP32 (no TF32 tensor cores), so GPU results
  // track the CPU reference; TF32 only when the math mode asks (--tf32). Set on every use so a
  // change of mode takes effect at once.
  ND_CUBLAS_CHECK(cublasSetMathMode(
      h, gpu_math_mode().tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  ND_CUBLAS_CHECK(cublasSetStream(h, s));
  return h;
}

cudnnHandle_t cudnn_handle(cudaStream_t s) {
  static PerDevice<cudnnHandle_t>& handles = *new PerDevice<cudnnHandle_t>;
  cudnnHandle_t h = handles.get(current_device(), [] {
    cudnnHandle_t created = nullptr;
    ND_CUDNN_CHECK(cudnnCreate(&created));
    return created;
  });
  ND_CUDNN_CHECK(cudnnSetStream(h, s));
  return h;
}

cusolverDnHandle_t cusolver_handle(cudaStream_t s) {
  static PerDevice<cusolverDnHandle_t>& handles = *new PerDevice<cusolverDnHandle_t>;
  cusolverDnHandle_t h = handles.get(current_device(), [] {
    cusolverDnHandle_t created = nullptr;
    ND_CUSOLVER_CHECK(cusolverDnCreate(&created));
    return created;
  });
  ND_CUSOLVER_CHECK(cusolverDnSetStream(h, s));
  return h;
}

}  // namespace nd::kernels
