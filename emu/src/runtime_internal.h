// Private interface between the emulator runtime's parts: errors (runtime_errors.cpp), device
// memory (runtime_memory.cpp), streams (runtime_streams.cpp) and kernel execution
// (runtime_launch.cpp, runtime_block.cpp).
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ND_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(ND_EMU_ASAN)
#define ND_EMU_ASAN 1
#endif
#if defined(ND_EMU_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace nd_emu::detail {

// ---- errors (runtime_errors.cpp) ----------------------------------------------------------------
cudaError_t sticky_error();
// Every API call ends here: a sticky fault wins; otherwise a failure becomes the last error.
cudaError_t api_return(cudaError_t e);
// A synchronous argument error: printed (naming the call) and returned, not sticky.
cudaError_t call_error(cudaError_t e, const std::string& message);
void print_line(const std::string& message);  // "nd-emu: message" on stderr

struct AtomicCounters {
  std::atomic<int64_t> kernel_launches{0}, library_calls{0}, host_syncs{0}, device_allocations{0},
      bytes_h2d{0}, bytes_d2h{0}, bytes_d2d{0};
};
AtomicCounters& counter_state();

// Reads an environment variable as an integer (with a default).
int64_t env_int(const char* name, int64_t fallback);

// ---- device memory (runtime_memory.cpp) ---------------------------------------------------------
int device_count();
int& current_device();  // per host thread
size_t device_total_memory();
size_t device_live_bytes(int device);

struct AllocView {
  uintptr_t base = 0;
  size_t size = 0;    // as requested
  size_t mapped = 0;  // data pages, the slack after `size` included
  int device = -1;
  bool live = false;
};
// The allocation whose mapped pages (or guard page) hold p, live or freed.
bool find_allocation(const void* p, AllocView* out);
bool is_pinned(const void* p, size_t bytes);
// Makes live allocations readable and writable while queued work runs (nests): each on its first
// touch (or open_allocation), every one at once under ASan.
void open_device_access();
void close_device_access();
// Opens the live allocation holding p for the rest of the current device work, if any.
void open_allocation(const void* p);
// Checks the canary after the allocation holding p; faults naming `who` when it was overwritten.
void check_overrun(const void* p, const char* who);
std::string describe_pointer(const void* p);

// ---- streams (runtime_streams.cpp) --------------------------------------------------------------
// Flushes every stream of `device` (cudaFree synchronises the device as CUDA's does).
void flush_device(int device);

// ---- kernel execution (runtime_launch.cpp, runtime_block.cpp) -----------------------------------
struct Grid {
  LaunchConfig cfg;
  std::string kernel;
  std::function<void()> body;
  std::vector<const void*> pointer_args;  // checked for overruns after the grid
  uint64_t serial = 0;                    // seeds the random order per grid
  std::atomic<bool> aborted{false};
};
void run_grid(Grid& grid);  // on the calling host thread and the worker pool
// Runs one block on the calling thread's fiber scheduler; false when it faulted.
bool run_block(Grid& grid, uint64_t linear_block);
ThreadOrder order_for_run(uint64_t* seed);
std::string site(const char* file, int line);

}  // namespace nd_emu::detail

namespace nd_emu::detail {
// Queues `work` on stream `s` (nullptr / cudaStreamLegacy: the current device's default stream);
// cudaErrorInvalidResourceHandle for a destroyed or unknown stream. `device`: the stream's.
cudaError_t push_work(cudaStream_t s, const char* what, std::function<void()> work, int* device);
}  // namespace nd_emu::detail
