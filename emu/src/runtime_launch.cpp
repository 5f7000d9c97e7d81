// Kernel launches: driver-like validation, pointer-argument checks, the thread order setting and
// the worker pool that spreads a grid's blocks (each block then runs as fibers, runtime_block.cpp).
#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "runtime_internal.h"

namespace nd_emu {
namespace detail {
namespace {

constexpr size_t kStaticSmemLimit = 48 * 1024;
constexpr size_t kOptinSmemLimit = 232448;

struct OrderState {
  std::once_flag env_once;
  std::atomic<int> order{int(ThreadOrder::Natural)};
  std::atomic<uint64_t> seed{0};
};
OrderState& order_state() {
  static OrderState* s = new OrderState;
  return *s;
}

uint64_t pick_seed() {
  const uint64_t seed = (uint64_t(std::random_device{}()) << 32) ^ std::random_device{}();
  print_line("thread order random, seed " + std::to_string(seed));
  return seed;
}

void read_order_env() {
  OrderState& s = order_state();
  std::call_once(s.env_once, [&s] {
    const char* env = std::getenv("ND_EMU_ORDER");
    if (env == nullptr || *env == '\0') return;
    const std::string v = env;
    if (v == "natural") {
      s.order = int(ThreadOrder::Natural);
    } else if (v == "reverse") {
      s.order = int(ThreadOrder::Reverse);
    } else if (v == "warp") {
      s.order = int(ThreadOrder::Warp);
    } else if (v.rfind("random", 0) == 0) {
      s.order = int(ThreadOrder::Random);
      const size_t colon = v.find(':');
      s.seed = colon == std::string::npos ? pick_seed() : std::stoull(v.substr(colon + 1));
    } else {
      print_line("ND_EMU_ORDER=" + v + " is not natural|reverse|warp|random[:seed]; using natural");
    }
  });
}

std::mutex& attr_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}
std::map<const void*, int>& max_dynamic_smem() {
  static auto* m = new std::map<const void*, int>;
  return *m;
}

// Pointer arguments of the launch being made on this host thread (set by check_kernel_pointer).
thread_local std::vector<const void*> t_pointer_args;

std::string dims(const dim3& d) {
  return "(" + std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z) + ")";
}

std::string launch_name(const LaunchConfig& cfg) {
  return std::string(cfg.kernel_name ? cfg.kernel_name : "?") + " at " + site(cfg.file, cfg.line);
}

// The grid's blocks go to every executor: the host thread that runs the stream and the workers.
// Leaked and never joined, so exit-time code can still run grids.
struct Pool {
  std::mutex mutex;
  std::condition_variable wake, done;
  Grid* job = nullptr;
  uint64_t generation = 0;
  int participants = 0;
  std::atomic<uint64_t> next{0};
  uint64_t total = 0;
  int workers = 0;
};

void work_on(Pool& pool, Grid& grid, uint64_t total) {
  while (!grid.aborted.load(std::memory_order_relaxed)) {
    const uint64_t b = pool.next.fetch_add(1, std::memory_order_relaxed);
    if (b >= total) break;
    if (!run_block(grid, b)) grid.aborted = true;
  }
}

void worker_main(Pool* pool) {
  uint64_t seen = 0;
  for (;;) {
    std::unique_lock<std::mutex> lock(pool->mutex);
    pool->wake.wait(lock, [&] { return pool->generation != seen; });
    seen = pool->generation;
    Grid* grid = pool->job;
    if (grid == nullptr) continue;
    const uint64_t total = pool->total;
    pool->participants++;
    lock.unlock();
    work_on(*pool, *grid, total);
    lock.lock();
    if (--pool->participants == 0) pool->done.notify_all();
  }
}

Pool& pool() {
  static Pool* p = [] {
    auto* pool = new Pool;
    const int64_t hw = std::max<int64_t>(2, std::thread::hardware_concurrency());
    pool->workers = int(std::max<int64_t>(1, env_int("ND_EMU_WORKERS", hw) - 1));
    for (int i = 0; i < pool->workers; ++i) std::thread(worker_main, pool).detach();
    return pool;
  }();
  return *p;
}

}  // namespace

ThreadOrder order_for_run(uint64_t* seed) {
  read_order_env();
  *seed = order_state().seed.load();
  return ThreadOrder(order_state().order.load());
}

void run_grid(Grid& grid) {
  const dim3& g = grid.cfg.grid;
  const uint64_t total = uint64_t(g.x) * g.y * g.z;
  Pool& p = pool();
  for (const void* arg : grid.pointer_args) open_allocation(arg);  // the rest open on first touch
  if (total == 1) {
    if (!run_block(grid, 0)) grid.aborted = true;
  } else {
    {
      std::lock_guard<std::mutex> lock(p.mutex);
      p.job = &grid;
      p.total = total;
      p.next = 0;
      p.generation++;
    }
    p.wake.notify_all();
    work_on(p, grid, total);
    std::unique_lock<std::mutex> lock(p.mutex);
    p.job = nullptr;
    p.done.wait(lock, [&] { return p.participants == 0; });
  }
  if (sticky_error() == cudaSuccess)
    for (const void* arg : grid.pointer_args) check_overrun(arg, ("kernel " + grid.kernel).c_str());
}

}  // namespace detail

void set_thread_order(ThreadOrder order, uint64_t seed) {
  detail::read_order_env();  // an explicit setting wins over the environment
  auto& s = detail::order_state();
  if (order == ThreadOrder::Random && seed == 0) seed = detail::pick_seed();
  s.seed = seed;
  s.order = int(order);
}

ThreadOrder thread_order() {
  uint64_t seed;
  return detail::order_for_run(&seed);
}

uint64_t thread_order_seed() {
  uint64_t seed;
  detail::order_for_run(&seed);
  return seed;
}

const char* thread_order_name() {
  switch (thread_order()) {
    case ThreadOrder::Natural:
      return "natural";
    case ThreadOrder::Reverse:
      return "reverse";
    case ThreadOrder::Warp:
      return "warp";
    case ThreadOrder::Random:
      return "random";
  }
  return "natural";
}

void check_kernel_pointer(const LaunchConfig& cfg, int index, const void* p) {
  if (detail::sticky_error() != cudaSuccess) return;
  const MemoryKind kind = memory_kind(p);
  if (kind == MemoryKind::Device) detail::t_pointer_args.push_back(p);
  if (kind == MemoryKind::Host || kind == MemoryKind::FreedDevice)
    fault(cudaErrorIllegalAddress, "kernel " + detail::launch_name(cfg) + ": argument #" +
                                       std::to_string(index + 1) + " is " +
                                       detail::describe_pointer(p));
}

void launch_kernel(const LaunchConfig& cfg, const void* kernel, std::function<void()> body) {
  using namespace detail;
  std::vector<const void*> pointer_args;
  pointer_args.swap(t_pointer_args);
  if (sticky_error() != cudaSuccess) return;  // a bad pointer argument, or an earlier fault
  const dim3 &b = cfg.block, &g = cfg.grid;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64) {
    call_error(cudaErrorInvalidConfiguration, "launch of " + launch_name(cfg) + ": block " +
                                                  dims(b) + " (" + std::to_string(threads) +
                                                  " threads; at most 1024, and 1024x1024x64)");
    return;
  }
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
    call_error(cudaErrorInvalidConfiguration,
               "launch of " + launch_name(cfg) + ": grid " + dims(g) +
                   " (each dimension >= 1, at most 2147483647x65535x65535)");
    return;
  }
  if (cfg.shared_bytes > kStaticSmemLimit) {
    int optin = 0;
    {
      std::lock_guard<std::mutex> lock(attr_mutex());
      auto it = max_dynamic_smem().find(kernel);
      if (it != max_dynamic_smem().end()) optin = it->second;
    }
    if (cfg.shared_bytes > kOptinSmemLimit || cfg.shared_bytes > size_t(optin)) {
      call_error(cudaErrorInvalidValue,
                 "launch of " + launch_name(cfg) + ": " + std::to_string(cfg.shared_bytes) +
                     " bytes of dynamic shared memory (over 49152 needs cudaFuncSetAttribute("
                     "cudaFuncAttributeMaxDynamicSharedMemorySize), and at most 232448)");
      return;
    }
  }
  const int device = stream_device(cfg.stream);
  if (device != current_device()) {
    call_error(cudaErrorInvalidResourceHandle,
               "launch of " + launch_name(cfg) + " on a stream of device " +
                   std::to_string(device) + " while device " + std::to_string(current_device()) +
                   " is current");
    return;
  }
  static std::atomic<uint64_t> serial{0};
  auto grid = std::make_shared<Grid>();
  grid->cfg = cfg;
  grid->kernel = cfg.kernel_name ? cfg.kernel_name : "?";
  grid->body = std::move(body);
  grid->pointer_args = std::move(pointer_args);
  grid->serial = ++serial;
  if (push_work(
          cfg.stream, "kernel", [grid] { run_grid(*grid); }, nullptr) != cudaSuccess) {
    call_error(cudaErrorInvalidResourceHandle,
               "launch of " + launch_name(cfg) + ": invalid stream");
    return;
  }
  counter_state().kernel_launches++;
}

}  // namespace nd_emu

cudaError_t cudaFuncSetAttributeEmu(const void* kernel, cudaFuncAttribute attr, int value) {
  using namespace nd_emu::detail;
  if (kernel == nullptr) return api_return(cudaErrorInvalidValue);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || size_t(value) > kOptinSmemLimit) return api_return(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(attr_mutex());
    max_dynamic_smem()[kernel] = value;
  }
  return api_return(cudaSuccess);
}
