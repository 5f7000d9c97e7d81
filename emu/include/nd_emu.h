// The device emulator's own interface, below the stand-in CUDA headers: kernel launches, shared
// memory, the calling fiber's coordinates, barriers and warp operations (used by the macros and
// inline functions of cuda_runtime.h), and what the library stand-ins (cuBLAS, cuDNN, cuSOLVER,
// NCCL) and the emulator's self-tests need: deferred stream work, device-pointer checks, faults,
// counters and the thread order. Included only through cuda_runtime.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace nd_emu {

// ---- where the calling CUDA thread is ---------------------------------------------------------
const uint3& current_thread_index();
const uint3& current_block_index();
const dim3& current_block_dim();
const dim3& current_grid_dim();

// ---- barriers and warp operations (device side) -----------------------------------------------
// Block barrier: waits until every live thread of the block has arrived at this same call site;
// threads waiting at different sites, or a thread that exits while others wait, is a fault naming
// both source locations (the launch fails with cudaErrorLaunchFailure; see last_fault_message).
void block_barrier(const char* file, int line);
// Warp barrier over the lanes of `mask`: each must exist, be live and call the same site.
void warp_barrier(unsigned mask, const char* file, int line);
enum class ShuffleKind { Index, Xor, Down, Up };
// Exchanges 8 bytes between the lanes of `mask` (a warp-level barrier, checked as above).
uint64_t shuffle_bits(unsigned mask, uint64_t bits, ShuffleKind kind, int arg, int width,
                      const char* file, int line);
template <typename T>
inline T shuffle(unsigned mask, T v, ShuffleKind kind, int arg, int width, const char* file,
                 int line) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shuffle_bits(mask, bits, kind, arg, width, file, line);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
unsigned ballot(unsigned mask, bool pred, const char* file, int line);
unsigned active_lane_mask();  // the lanes of the caller's warp that exist in the block

// ---- shared memory -----------------------------------------------------------------------------
// The block's dynamic shared memory (the launch's smem bytes), poisoned at every block start.
void* dynamic_shared_memory();
// A static __shared__ array of the block: one per `site` (a distinct static object per
// declaration), the same address for every thread of the block, poisoned at every block start.
void* static_shared_memory(const void* site, size_t bytes, size_t align, const char* name,
                           const char* file, int line);

// ---- launches ----------------------------------------------------------------------------------
struct LaunchConfig {
  dim3 grid;
  dim3 block;
  size_t shared_bytes;
  cudaStream_t stream;
  const char* kernel_name;  // as written at the launch site
  const char* file;
  int line;
};
// Checks a pointer argument of a kernel (index = its position): null, live device memory or
// pinned host memory pass; anything else is recorded as the launch's error (host pointer, freed
// device memory), naming the kernel and the call site.
void check_kernel_pointer(const LaunchConfig& cfg, int index, const void* p);
// Validates the configuration as the driver does (threads, block and grid limits, shared memory
// and the opt-in); on failure sets the last error and returns without queueing. Otherwise queues
// the grid on the stream: `body` runs once per CUDA thread. `kernel` identifies the function for
// cudaFuncSetAttribute.
void launch_kernel(const LaunchConfig& cfg, const void* kernel, std::function<void()> body);

template <typename... P>
struct KernelLaunch {
  void (*fn)(P...);
  LaunchConfig cfg;
  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    // Arguments are copied at the launch, as CUDA does: the grid runs later (deferred streams).
    auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(
        static_cast<std::decay_t<P>>(std::forward<A>(args))...);
    check_pointers(*params, std::index_sequence_for<P...>{});
    auto f = fn;
    launch_kernel(cfg, reinterpret_cast<const void*>(fn), [f, params] { std::apply(f, *params); });
  }

 private:
  template <typename Tuple, size_t... I>
  void check_pointers(const Tuple& t, std::index_sequence<I...>) const {
    (check_one(int(I), std::get<I>(t)), ...);
  }
  template <typename T>
  void check_one(int index, const T& v) const {
    if constexpr (std::is_pointer<T>::value)
      check_kernel_pointer(cfg, index, reinterpret_cast<const void*>(v));
  }
};
template <typename... P>
inline KernelLaunch<P...> make_launch(void (*fn)(P...), LaunchConfig cfg) {
  return KernelLaunch<P...>{fn, cfg};
}

// ---- for the library stand-ins and the self-tests ----------------------------------------------
// Queues host work on `s` (nullptr: the current device's default stream). Work runs in stream
// order, only when the stream is synchronised or waited on through an event, with device memory
// readable; it may call fault() to fail the stream's work.
void enqueue(cudaStream_t s, const char* what, std::function<void()> work);
int stream_device(cudaStream_t s);
// True when [p, p + bytes) lies inside one live device allocation; otherwise records a fault
// (cudaErrorIllegalAddress) naming `what` and returns false.
bool check_device_range(const void* p, size_t bytes, const char* what);
enum class MemoryKind { Null, Device, FreedDevice, PinnedHost, Host };
MemoryKind memory_kind(const void* p);
// Records a sticky fault: printed to stderr at once, returned by later runtime calls.
void fault(cudaError_t e, const std::string& message);
std::string last_fault_message();  // "" when none since the last clear_fault()
// Forgets a sticky fault (self-tests only: a real context would have to be torn down).
void clear_fault();

struct Counters {
  int64_t kernel_launches = 0;
  int64_t library_calls = 0;   // cuBLAS, cuDNN, cuSOLVER and NCCL calls that queue work
  int64_t host_syncs = 0;      // stream, event and device synchronisations, blocking copies
  int64_t device_allocations = 0;
  int64_t bytes_host_to_device = 0;
  int64_t bytes_device_to_host = 0;
  int64_t bytes_device_to_device = 0;
};
Counters counters();
void count_library_call();

// The order threads of a block run between barriers: ND_EMU_ORDER=natural|reverse|warp|random[:seed]
// (natural by default; random prints its seed). natural/reverse: all threads reach their next
// barrier or warp operation before released ones go on; warp: a warp that completes a warp
// operation runs on at once, warps taken in reverse order in even blocks and in index order in
// odd ones; random: a seeded shuffle at every release.
// Other settings, read once: ND_EMU_DEVICES (2), ND_EMU_DEVICE_MEMORY (bytes, 16 GiB),
// ND_EMU_WORKERS (threads running blocks, the host thread included; max(2, cores)),
// ND_EMU_STACK_KB (fiber stack, 128; 512 under ASan).
enum class ThreadOrder { Natural, Reverse, Warp, Random };
void set_thread_order(ThreadOrder order, uint64_t seed = 0);
ThreadOrder thread_order();
uint64_t thread_order_seed();  // the seed of the random order
const char* thread_order_name();

}  // namespace nd_emu

// Used by kernels/cuda_launch.h: the launch and the shared-memory declarations of kernels.
#define ND_EMU_LAUNCH(grid, block, smem, stream, ...)                                       \
  ::nd_emu::make_launch(__VA_ARGS__,                                                       \
                        ::nd_emu::LaunchConfig{dim3(grid), dim3(block), size_t(smem), stream, \
                                               #__VA_ARGS__, __FILE__, __LINE__})
#define ND_EMU_DYNAMIC_SHARED(type, name) \
  type* name = static_cast<type*>(::nd_emu::dynamic_shared_memory())
#define ND_EMU_SHARED(type, name, dims)                                                     \
  using nd_emu_shared_type_##name = type dims;                                              \
  static const char nd_emu_shared_site_##name = 0;                                          \
  nd_emu_shared_type_##name& name = *static_cast<nd_emu_shared_type_##name*>(               \
      ::nd_emu::static_shared_memory(&nd_emu_shared_site_##name,                            \
                                     sizeof(nd_emu_shared_type_##name),                     \
                                     alignof(nd_emu_shared_type_##name), #name, __FILE__, __LINE__))
