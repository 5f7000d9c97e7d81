// Self-tests of the device emulator's runtime (emu/src/runtime_*.cpp): kernels run as fibers with
// checked barriers, warp operations and shared memory; deferred streams; device memory that host
// code cannot touch; and a deliberately broken kernel or call for each fault class reported.
#include <cuda_runtime.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "test/catch.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ND_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(ND_TEST_ASAN)
#define ND_TEST_ASAN 1
#endif

namespace {

using nd_emu::ThreadOrder;

// Leaves no fault, error or order change behind for the next test.
struct Clean {
  ThreadOrder order = nd_emu::thread_order();
  uint64_t seed = nd_emu::thread_order_seed();
  Clean() { reset(); }
  ~Clean() {
    reset();
    nd_emu::set_thread_order(order, seed);
  }
  static void reset() {
    nd_emu::clear_fault();
    (void)cudaGetLastError();
  }
};

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(size_t count) : n(count) {
    REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  }
  ~DeviceBuffer() { (void)cudaFree(p); }
  void upload(const std::vector<T>& v) {
    REQUIRE(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  std::vector<T> download() const {
    std::vector<T> v(n);
    REQUIRE(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return v;
  }
};

// A launch that must fail with a sticky fault whose message names `parts`.
void require_fault(cudaError_t expected, const std::vector<std::string>& parts) {
  const cudaError_t e = cudaDeviceSynchronize();
  CHECK(e == expected);
  CHECK(cudaGetLastError() == expected);  // sticky: every call returns it
  const std::string message = nd_emu::last_fault_message();
  INFO(message);
  for (const auto& p : parts) CHECK(message.find(p) != std::string::npos);
  nd_emu::clear_fault();
}

// Runs `body` in a forked child; true when the child died abnormally (signal or nonzero exit).
template <typename F>
bool child_dies(F body, int* signal_out = nullptr) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);  // not the test framework's report
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (signal_out) *signal_out = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

// ---- kernels ------------------------------------------------------------------------------------

__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

__global__ void block_sum(const float* in, float* out, int n) {
  ND_EMU_SHARED(float, partial, [32]);
  const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  float v = warp_sum(i < n ? in[i] : 0.0f);
  if (t % 32 == 0) partial[t / 32] = v;
  __syncthreads();
  if (t < 32) {
    v = t < int(blockDim.x / 32) ? partial[t] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (t == 0) out[blockIdx.x] = v;
  }
}

// Bug: no barrier between writing the own slot and reading the neighbour's.
__global__ void neighbour_without_barrier(float* out) {
  ND_EMU_SHARED(float, slots, [256]);
  const int t = threadIdx.x;
  slots[t] = float(t);
  out[t] = t > 0 ? slots[t - 1] : 0.0f;
}

// Every thread reads all warp partials; the missing trailing barrier lets a warp that runs ahead
// overwrite a partial of the second reduction before slower warps have read the first.
__device__ float block_total(float v, float* partial) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < int(blockDim.x / 32); ++w) total += partial[w];
  return total;  // bug: no __syncthreads() before partial is reused
}

__global__ void two_totals(float* out) {
  ND_EMU_SHARED(float, partial, [32]);
  const float a = block_total(1.0f, partial);
  const float b = block_total(2.0f, partial);
  out[threadIdx.x] = a + b;
}

constexpr int kBarrierLineA = __LINE__ + 4;
constexpr int kBarrierLineB = __LINE__ + 6;
__global__ void divergent_barrier(float* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
    out[threadIdx.x] = 1;
  } else {
    __syncthreads();
    out[threadIdx.x] = 2;
  }
}

__global__ void exit_before_barrier(float* out) {
  if (threadIdx.x == 7) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void shuffle_with_mask(float* out, unsigned mask, int delta) {
  out[threadIdx.x] = __shfl_down_sync(mask, float(threadIdx.x), unsigned(delta));
}

__global__ void shuffle_then_barrier(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x < 16)
    v = __shfl_sync(0xffffffffu, v, 0);
  else
    __syncthreads();
  out[threadIdx.x] = v;
}

__global__ void shuffle_kinds(int* out) {
  const int t = threadIdx.x;
  out[4 * t + 0] = __shfl_sync(0xffffffffu, t, 3, 8);
  out[4 * t + 1] = __shfl_xor_sync(0xffffffffu, t, 5);
  out[4 * t + 2] = __shfl_up_sync(0xffffffffu, t, 2, 16);
  out[4 * t + 3] = int(__ballot_sync(0xffffffffu, t % 3 == 0));
}

__global__ void shared_overrun(float* out) {
  ND_EMU_SHARED(float, tile, [64]);
  const int t = threadIdx.x;  // launched with 65 threads: the last writes one past `tile`
  float* row = tile;
  row[t] = 1.0f;
  __syncthreads();
  out[t] = row[t % 64];
}

__global__ void write_index(float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n + 1) out[i] = float(i);  // bug when launched over n + 1 threads
}

__global__ void fill(float* out, float v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = v;
}

__global__ void twice(const float* in, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 2.0f * in[i];
}

__global__ void axpy(const float* x, const float* y, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = 2.0f * x[i] + y[i];
}

__global__ void use_dynamic_shared(float* out, int n) {
  ND_EMU_DYNAMIC_SHARED(float, smem);
  for (int i = threadIdx.x; i < n; i += blockDim.x) smem[i] = float(i);
  __syncthreads();
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += smem[n - 1 - i];
  out[threadIdx.x] = s;
}

__global__ void count_up(unsigned long long* total, int* hits) {
  atomicAdd(total, (unsigned long long)(blockIdx.x * blockDim.x + threadIdx.x));
  atomicAdd(hits, 1);
}

}  // namespace

// ---- tests --------------------------------------------------------------------------------------

TEST_CASE("emu runtime: block reduction is right under every thread order", "[emu]") {
  Clean clean;
  const int n = 256 * 40 + 17;
  std::vector<float> in(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) in[size_t(i)] = float(i % 13);
  const int blocks = (n + 255) / 256;
  double expected = 0;
  for (float v : in) expected += v;
  DeviceBuffer<float> d_in{size_t(n)}, d_out{size_t(blocks)};
  d_in.upload(in);
  for (ThreadOrder order :
       {ThreadOrder::Natural, ThreadOrder::Reverse, ThreadOrder::Warp, ThreadOrder::Random}) {
    nd_emu::set_thread_order(order, 1234);
    ND_EMU_LAUNCH(blocks, 256, 0, nullptr, block_sum)(d_in.p, d_out.p, n);
    REQUIRE(cudaGetLastError() == cudaSuccess);
    double sum = 0;
    for (float v : d_out.download()) sum += v;
    INFO(nd_emu::thread_order_name());
    CHECK(sum == expected);
  }
}

TEST_CASE("emu runtime: the thread order exposes a missing barrier", "[emu]") {
  Clean clean;
  DeviceBuffer<float> out(256);
  auto neighbour_ok = [&] {
    ND_EMU_LAUNCH(1, 256, 0, nullptr, neighbour_without_barrier)(out.p);
    const auto v = out.download();
    for (int t = 1; t < 256; ++t)
      if (v[size_t(t)] != float(t - 1)) return false;
    return true;
  };
  auto totals_ok = [&] {
    ND_EMU_LAUNCH(1, 256, 0, nullptr, two_totals)(out.p);
    for (float v : out.download())
      if (v != 8.0f * 32 * 3) return false;
    return true;
  };
  nd_emu::set_thread_order(ThreadOrder::Natural);
  CHECK(neighbour_ok());  // passes by luck in index order
  CHECK(totals_ok());
  nd_emu::set_thread_order(ThreadOrder::Reverse);
  CHECK_FALSE(neighbour_ok());
  CHECK(totals_ok());  // reverse order alone misses the missing trailing barrier
  nd_emu::set_thread_order(ThreadOrder::Warp);
  CHECK_FALSE(neighbour_ok());
  CHECK_FALSE(totals_ok());  // one warp running ahead catches it
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST_CASE("emu runtime: divergent barriers and early exits are faults", "[emu]") {
  Clean clean;
  DeviceBuffer<float> out(64);
  ND_EMU_LAUNCH(dim3(3), 64, 0, nullptr, divergent_barrier)(out.p);
  require_fault(cudaErrorLaunchFailure, {"barrier divergence", "divergent_barrier",
                                         "test_emu_runtime.cpp:" + std::to_string(kBarrierLineA),
                                         "test_emu_runtime.cpp:" + std::to_string(kBarrierLineB)});
  ND_EMU_LAUNCH(1, 64, 0, nullptr, exit_before_barrier)(out.p);
  require_fault(cudaErrorLaunchFailure, {"thread 7 exited", "waits at __syncthreads"});
  nd_emu::set_thread_order(ThreadOrder::Reverse);  // the exit comes first: still reported
  ND_EMU_LAUNCH(1, 64, 0, nullptr, exit_before_barrier)(out.p);
  require_fault(cudaErrorLaunchFailure, {"exited", "exit_before_barrier"});
  ND_EMU_LAUNCH(1, 32, 0, nullptr, shuffle_then_barrier)(out.p);
  require_fault(cudaErrorLaunchFailure, {"__syncthreads", "warp operation"});
  CHECK(cudaDeviceSynchronize() == cudaSuccess);  // cleared
}

TEST_CASE("emu runtime: warp shuffles follow CUDA and check their masks", "[emu]") {
  Clean clean;
  DeviceBuffer<int> out(32 * 4);
  ND_EMU_LAUNCH(1, 32, 0, nullptr, shuffle_kinds)(out.p);
  const auto v = out.download();
  unsigned ballot = 0;
  for (int t = 0; t < 32; t += 3) ballot |= 1u << t;
  for (int t = 0; t < 32; ++t) {
    CHECK(v[size_t(4 * t)] == (t & ~7) + 3);
    CHECK(v[size_t(4 * t + 1)] == (t ^ 5));
    CHECK(v[size_t(4 * t + 2)] == (t % 16 >= 2 ? t - 2 : t));
    CHECK(unsigned(v[size_t(4 * t + 3)]) == ballot);
  }
  DeviceBuffer<float> f(32);
  ND_EMU_LAUNCH(1, 32, 0, nullptr, shuffle_with_mask)(f.p, 0x0000ffffu, 0);
  require_fault(cudaErrorLaunchFailure, {"excludes the caller", "shuffle_with_mask"});
  ND_EMU_LAUNCH(1, 16, 0, nullptr, shuffle_with_mask)(f.p, 0xffffffffu, 1);
  require_fault(cudaErrorLaunchFailure, {"do not exist"});
  ND_EMU_LAUNCH(1, 16, 0, nullptr, shuffle_with_mask)(f.p, 0x0000ffffu, 8);
  require_fault(cudaErrorLaunchFailure, {"reads lane 16", "not in the mask"});
  ND_EMU_LAUNCH(1, 16, 0, nullptr, shuffle_with_mask)(f.p, 0x0000ffffu, 0);
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("emu runtime: shared and global overruns are reported", "[emu]") {
  Clean clean;
  DeviceBuffer<float> out(65);
#if defined(ND_TEST_ASAN)
  // ASan poisons the canary gaps and reports (and aborts) at the overrunning store.
  CHECK(child_dies([&] {
    ND_EMU_LAUNCH(1, 65, 0, nullptr, shared_overrun)(out.p);
    (void)cudaDeviceSynchronize();
  }));
  DeviceBuffer<float> small(100);
  CHECK(child_dies([&] {
    ND_EMU_LAUNCH(1, 128, 0, nullptr, write_index)(small.p, 100);
    (void)cudaDeviceSynchronize();
  }));
#else
  ND_EMU_LAUNCH(1, 65, 0, nullptr, shared_overrun)(out.p);
  require_fault(cudaErrorIllegalAddress, {"shared memory overrun past `tile`", "shared_overrun"});
  DeviceBuffer<float> small(100);
  ND_EMU_LAUNCH(1, 128, 0, nullptr, write_index)(small.p, 100);
  require_fault(cudaErrorIllegalAddress,
                {"write_index", "past the end of the 400-byte allocation"});
#endif
}

TEST_CASE("emu runtime: launch configuration is validated like the driver's", "[emu]") {
  Clean clean;
  DeviceBuffer<float> out(2048);
  REQUIRE(cudaMemset(out.p, 0, 2048 * sizeof(float)) == cudaSuccess);
  const int64_t launches = nd_emu::counters().kernel_launches;
  ND_EMU_LAUNCH(1, 2048, 0, nullptr, fill)(out.p, 1.0f, 2048);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);  // not sticky
  ND_EMU_LAUNCH(dim3(1, 1, 0), 32, 0, nullptr, fill)(out.p, 1.0f, 2048);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  ND_EMU_LAUNCH(1, dim3(1, 1, 65), 0, nullptr, fill)(out.p, 1.0f, 2048);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(nd_emu::counters().kernel_launches == launches);
  for (float v : out.download()) REQUIRE(v == 0.0f);  // the kernel never ran

  const int n = 64 * 1024 / 4;
  ND_EMU_LAUNCH(1, 128, n * sizeof(float), nullptr, use_dynamic_shared)(out.p, n);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  REQUIRE(cudaFuncSetAttribute(use_dynamic_shared, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               n * int(sizeof(float))) == cudaSuccess);
  ND_EMU_LAUNCH(1, 128, n * sizeof(float), nullptr, use_dynamic_shared)(out.p, n);
  CHECK(cudaGetLastError() == cudaSuccess);
  const auto v = out.download();
  double total = 0;
  for (int t = 0; t < 128; ++t) total += v[size_t(t)];
  CHECK(total == double(n) * (n - 1) / 2);
  ND_EMU_LAUNCH(1, 128, 232448 + 4, nullptr, use_dynamic_shared)(out.p, n);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
}

TEST_CASE("emu runtime: bad kernel pointers and host access to device memory", "[emu]") {
  Clean clean;
  std::vector<float> host(64);
  ND_EMU_LAUNCH(1, 64, 0, nullptr, fill)(host.data(), 1.0f, 64);
  require_fault(cudaErrorIllegalAddress, {"fill", "argument #1", "host pointer"});

  float* freed = nullptr;
  REQUIRE(cudaMalloc(&freed, 256) == cudaSuccess);
  REQUIRE(cudaFree(freed) == cudaSuccess);
  CHECK(nd_emu::memory_kind(freed) == nd_emu::MemoryKind::FreedDevice);
  ND_EMU_LAUNCH(1, 64, 0, nullptr, fill)(freed, 1.0f, 64);
  require_fault(cudaErrorIllegalAddress, {"freed device memory"});
  CHECK(cudaFree(freed) == cudaErrorInvalidValue);  // double free: an error, not sticky
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);

  DeviceBuffer<float> d(16);
  CHECK(nd_emu::memory_kind(d.p) == nd_emu::MemoryKind::Device);
  CHECK(nd_emu::memory_kind(host.data()) == nd_emu::MemoryKind::Host);
  CHECK(nd_emu::memory_kind(nullptr) == nd_emu::MemoryKind::Null);
  CHECK(nd_emu::check_device_range(d.p, 64, "test"));
  CHECK_FALSE(nd_emu::check_device_range(d.p + 1, 64, "test range"));
  CHECK(nd_emu::last_fault_message().find("test range") != std::string::npos);
  nd_emu::clear_fault();

  int sig = 0;
  volatile float* p = d.p;
  CHECK(child_dies([p] { std::printf("%f\n", double(p[0])); }, &sig));
#if !defined(ND_TEST_ASAN)
  CHECK(sig == SIGSEGV);
#endif
}

// Neither buffer is a launch argument: the kernel reaches them through a table in device memory.
__global__ void copy_through_table(float* const* table, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) table[1][i] = table[0][i] * 2.0f;
}

TEST_CASE("emu runtime: memory reached through device pointers opens on demand, then closes",
          "[emu]") {
  Clean clean;
  DeviceBuffer<float> src(1000), dst(1000);
  DeviceBuffer<float*> table(2);
  ND_EMU_LAUNCH(4, 256, 0, nullptr, fill)(src.p, 1.5f, 1000);
  table.upload({src.p, dst.p});
  ND_EMU_LAUNCH(4, 256, 0, nullptr, copy_through_table)(table.p, 1000);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  for (float v : dst.download()) REQUIRE(v == 3.0f);
  // After the work, memory the kernel opened is closed to host code again.
  for (float* q : {src.p, dst.p}) {
    int sig = 0;
    volatile float* p = q;
    CHECK(child_dies([p] { std::printf("%f\n", double(p[0])); }, &sig));
#if !defined(ND_TEST_ASAN)
    CHECK(sig == SIGSEGV);
#endif
  }
}

TEST_CASE("emu runtime: copies check direction and ranges", "[emu]") {
  Clean clean;
  DeviceBuffer<float> d(16);
  std::vector<float> h(32, 1.0f), h2(32);
  CHECK(cudaMemcpy(h2.data(), h.data(), 64, cudaMemcpyHostToDevice) ==
        cudaErrorInvalidMemcpyDirection);
  CHECK(cudaMemcpy(h.data(), d.p, 64, cudaMemcpyHostToDevice) == cudaErrorInvalidMemcpyDirection);
  CHECK(cudaMemcpy(d.p, h.data(), 128, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(d.p, h.data(), 64, cudaMemcpyHostToDevice) == cudaSuccess);  // not sticky
  CHECK(cudaMemcpy(h2.data(), d.p, 64, cudaMemcpyDefault) == cudaSuccess);
  CHECK(h2[15] == 1.0f);
}

TEST_CASE("emu runtime: streams are deferred and ordered only by events", "[emu]") {
  Clean clean;
  const int n = 1000;
  cudaStream_t a, b;
  REQUIRE(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking) == cudaSuccess);
  cudaEvent_t written;
  REQUIRE(cudaEventCreateWithFlags(&written, cudaEventDisableTiming) == cudaSuccess);
  DeviceBuffer<float> buf(n), out(n);
  for (bool wait : {false, true}) {
    ND_EMU_LAUNCH(4, 256, 0, a, fill)(buf.p, 3.0f, n);
    REQUIRE(cudaEventRecord(written, a) == cudaSuccess);
    if (wait) REQUIRE(cudaStreamWaitEvent(b, written, 0) == cudaSuccess);
    ND_EMU_LAUNCH(4, 256, 0, b, twice)(buf.p, out.p, n);
    CHECK(cudaEventQuery(written) == cudaErrorNotReady);
    REQUIRE(cudaStreamSynchronize(b) == cudaSuccess);
    std::vector<float> h(n);
    REQUIRE(cudaMemcpyAsync(h.data(), out.p, n * sizeof(float), cudaMemcpyDeviceToHost, b) ==
            cudaSuccess);  // pageable: returns with the data
    INFO("with cudaStreamWaitEvent: " << wait);
    CHECK((h[0] == 6.0f) == wait);  // without the wait, b read the buffer before a wrote it
    REQUIRE(cudaStreamSynchronize(a) == cudaSuccess);
    CHECK(cudaEventQuery(written) == cudaSuccess);
    REQUIRE(cudaMemset(buf.p, 0xFF, n * sizeof(float)) == cudaSuccess);
  }
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, written, written) == cudaErrorInvalidResourceHandle);
  cudaEvent_t t0, t1;
  REQUIRE(cudaEventCreate(&t0) == cudaSuccess);
  REQUIRE(cudaEventCreate(&t1) == cudaSuccess);
  REQUIRE(cudaEventRecord(t0, a) == cudaSuccess);
  ND_EMU_LAUNCH(4, 256, 0, a, fill)(buf.p, 3.0f, n);
  REQUIRE(cudaEventRecord(t1, a) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, t0, t1) == cudaErrorNotReady);
  CHECK(cudaStreamQuery(a) == cudaErrorNotReady);
  REQUIRE(cudaEventSynchronize(t1) == cudaSuccess);
  CHECK(cudaStreamQuery(a) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, t0, t1) == cudaSuccess);
  CHECK(ms >= 0.0f);
  for (cudaEvent_t e : {written, t0, t1}) CHECK(cudaEventDestroy(e) == cudaSuccess);
  CHECK(cudaStreamDestroy(a) == cudaSuccess);
  CHECK(cudaStreamDestroy(b) == cudaSuccess);
}

TEST_CASE("emu runtime: pinned sources are read when the copy runs", "[emu]") {
  Clean clean;
  const int n = 64;
  float* pinned = nullptr;
  REQUIRE(cudaHostAlloc(&pinned, n * sizeof(float), cudaHostAllocDefault) == cudaSuccess);
  CHECK(nd_emu::memory_kind(pinned) == nd_emu::MemoryKind::PinnedHost);
  std::vector<float> pageable(n, 1.0f);
  DeviceBuffer<float> from_pinned(n), from_pageable(n);
  cudaStream_t s;
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  for (int i = 0; i < n; ++i) pinned[i] = 1.0f;
  REQUIRE(cudaMemcpyAsync(from_pinned.p, pinned, n * sizeof(float), cudaMemcpyHostToDevice, s) ==
          cudaSuccess);
  REQUIRE(cudaMemcpyAsync(from_pageable.p, pageable.data(), n * sizeof(float),
                          cudaMemcpyHostToDevice, s) == cudaSuccess);
  for (int i = 0; i < n; ++i) pinned[i] = pageable[size_t(i)] = 2.0f;  // reused too early
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(from_pinned.download()[0] == 2.0f);    // the bug shows
  CHECK(from_pageable.download()[0] == 1.0f);  // staged at the call, as CUDA does
  // D2H into pinned memory is deferred until the stream runs.
  REQUIRE(cudaMemcpyAsync(pinned, from_pageable.p, n * sizeof(float), cudaMemcpyDeviceToHost, s) ==
          cudaSuccess);
  CHECK(pinned[0] == 2.0f);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(pinned[0] == 1.0f);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
}

TEST_CASE("emu runtime: library work runs in stream order with device memory", "[emu]") {
  Clean clean;
  DeviceBuffer<float> d(8);
  bool ran = false;
  float* p = d.p;
  nd_emu::enqueue(nullptr, "test work", [&ran, p] {
    REQUIRE(nd_emu::check_device_range(p, 8 * sizeof(float), "test work"));
    for (int i = 0; i < 8; ++i) p[i] = float(i);
    ran = true;
  });
  CHECK_FALSE(ran);
  CHECK(nd_emu::stream_device(nullptr) == 0);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(ran);
  CHECK(d.download()[7] == 7.0f);
  nd_emu::enqueue(nullptr, "bad work", [p] { nd_emu::check_device_range(p, 9 * 4, "bad work"); });
  require_fault(cudaErrorIllegalAddress, {"bad work", "past the end"});
}

TEST_CASE("emu runtime: two devices, peer copies and memory info", "[emu]") {
  Clean clean;
  int count = 0;
  REQUIRE(cudaGetDeviceCount(&count) == cudaSuccess);
  REQUIRE(count >= 2);
  cudaDeviceProp prop;
  REQUIRE(cudaGetDeviceProperties(&prop, 1) == cudaSuccess);
  CHECK(std::string(prop.name) == "nd-emu device 1 (emulated sm_90)");
  CHECK(prop.warpSize == 32);
  CHECK(prop.sharedMemPerBlockOptin == 232448);
  const int n = 1024;
  std::vector<float> h(n);
  for (int i = 0; i < n; ++i) h[size_t(i)] = float(i);
  DeviceBuffer<float> on0(n);
  on0.upload(h);
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  size_t free_before = 0, total = 0;
  REQUIRE(cudaMemGetInfo(&free_before, &total) == cudaSuccess);
  float* on1 = nullptr;
  REQUIRE(cudaMalloc(&on1, n * sizeof(float)) == cudaSuccess);
  size_t free_after = 0;
  REQUIRE(cudaMemGetInfo(&free_after, &total) == cudaSuccess);
  CHECK(free_before - free_after == n * sizeof(float));
  cudaStream_t s1;
  REQUIRE(cudaStreamCreate(&s1) == cudaSuccess);
  CHECK(nd_emu::stream_device(s1) == 1);
  REQUIRE(cudaMemcpyPeerAsync(on1, 1, on0.p, 0, n * sizeof(float), s1) == cudaSuccess);
  ND_EMU_LAUNCH(4, 256, 0, s1, twice)(on1, on1, n);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  ND_EMU_LAUNCH(4, 256, 0, s1, twice)(on1, on1, n);  // a stream of another device
  CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
  REQUIRE(cudaStreamSynchronize(s1) == cudaSuccess);
  std::vector<float> back(n);
  REQUIRE(cudaMemcpy(back.data(), on1, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(back[100] == 200.0f);
  CHECK(cudaMemcpyPeerAsync(on1, 0, on0.p, 0, 4, nullptr) == cudaErrorInvalidValue);
  CHECK(cudaStreamDestroy(s1) == cudaSuccess);
  CHECK(cudaFree(on1) == cudaSuccess);
  CHECK(cudaSetDevice(7) == cudaErrorInvalidDevice);
}

TEST_CASE("emu runtime: counters and atomics", "[emu]") {
  Clean clean;
  const nd_emu::Counters before = nd_emu::counters();
  unsigned long long* total = nullptr;
  int* hits = nullptr;
  REQUIRE(cudaMalloc(&total, sizeof *total) == cudaSuccess);
  REQUIRE(cudaMalloc(&hits, sizeof *hits) == cudaSuccess);
  REQUIRE(cudaMemset(total, 0, sizeof *total) == cudaSuccess);
  REQUIRE(cudaMemset(hits, 0, sizeof *hits) == cudaSuccess);
  const int blocks = 64, threads = 256;
  ND_EMU_LAUNCH(blocks, threads, 0, nullptr, count_up)(total, hits);
  unsigned long long sum = 0;
  int count = 0;
  REQUIRE(cudaMemcpy(&sum, total, sizeof sum, cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(&count, hits, sizeof count, cudaMemcpyDeviceToHost) == cudaSuccess);
  const unsigned long long m = blocks * threads;
  CHECK(sum == m * (m - 1) / 2);
  CHECK(count == blocks * threads);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const nd_emu::Counters after = nd_emu::counters();
  CHECK(after.kernel_launches - before.kernel_launches == 1);
  CHECK(after.device_allocations - before.device_allocations == 2);
  CHECK(after.host_syncs - before.host_syncs == 3);
  CHECK(after.bytes_device_to_host - before.bytes_device_to_host == 12);
  nd_emu::count_library_call();
  CHECK(nd_emu::counters().library_calls - before.library_calls == 1);
  CHECK(cudaFree(total) == cudaSuccess);
  CHECK(cudaFree(hits) == cudaSuccess);
}

TEST_CASE("emu runtime: a sticky fault is returned by every call until cleared", "[emu]") {
  Clean clean;
  nd_emu::fault(cudaErrorIllegalAddress, "test fault");
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 16) == cudaErrorIllegalAddress);
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
  CHECK(cudaGetLastError() == cudaErrorIllegalAddress);
  CHECK(std::string(cudaGetErrorName(cudaErrorIllegalAddress)) == "cudaErrorIllegalAddress");
  CHECK(std::string(cudaGetErrorString(cudaErrorInvalidConfiguration)) ==
        "invalid configuration argument");
  nd_emu::clear_fault();
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(cudaMalloc(&p, 16) == cudaSuccess);
  CHECK(cudaFree(p) == cudaSuccess);
}

TEST_CASE("emu runtime: a large elementwise grid is fast", "[emu]") {
  Clean clean;
  const int n = 16384 * 256;
  DeviceBuffer<float> x(n), y(n), out(n);
  REQUIRE(cudaMemset(x.p, 0, n * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMemset(y.p, 0, n * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const auto t0 = std::chrono::steady_clock::now();
  ND_EMU_LAUNCH(16384, 256, 0, nullptr, axpy)(x.p, y.p, out.p, n);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("nd-emu: elementwise grid of 16384 x 256 threads: %.3f s\n", s);
  CHECK(s < 5.0);
  CHECK(out.download()[12345] == 0.0f);
  // Barriers and shuffles: every thread gets its own fiber.
#if defined(ND_TEST_ASAN)
  const int blocks = 256;
#else
  const int blocks = 2048;
#endif
  const auto t1 = std::chrono::steady_clock::now();
  ND_EMU_LAUNCH(blocks, 256, 0, nullptr, block_sum)(x.p, out.p, blocks * 256);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const double r = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  std::printf("nd-emu: block reduction of %d x 256 threads: %.3f s\n", blocks, r);
  CHECK(r < 10.0);
}
