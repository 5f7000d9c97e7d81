// Emulated device memory and devices. Each device owns a large PROT_NONE address reservation that
// allocations are carved from and never reused, so a stale pointer always reads as "freed device
// memory". An allocation is its own page run (data at the start, a canary in the slack after the
// requested size, one guard page after), PROT_NONE except while queued device work runs, so host
// code that dereferences device memory gets SIGSEGV as it would on a GPU system.
// Without ASan an allocation opens on demand while device work runs: its first touch faults, the
// SIGSEGV handler opens it and the access is retried, and the end of the work closes only what was
// opened. Opening every live allocation instead costs two mprotect calls per allocation and launch,
// each a TLB shootdown on every core the process's threads run on: most of the emulated suite's
// time on a small machine with OpenMP and BLAS threads about.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime_internal.h"

namespace nd_emu {
namespace detail {
namespace {

constexpr size_t kArenaBytes = size_t(1) << 40;  // address space per device, never reused
constexpr size_t kMinSlack = 64;                 // canary bytes at least, even for whole pages
constexpr unsigned char kCanary = 0xA5;

size_t page_size() {
  static const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return page;
}
size_t round_up(size_t v, size_t to) {
  return (v + to - 1) / to * to;
}

struct Rec {
  size_t size = 0;
  size_t mapped = 0;
  int device = 0;
};

struct Arena {
  uintptr_t base = 0;
  size_t used = 0;
};

// Leaked on purpose: tensors are freed from engine static destructors after main returns.
struct MemState {
  std::mutex mutex;
  std::map<uintptr_t, Rec> live;
  std::map<uintptr_t, Rec> freed;
  std::map<uintptr_t, size_t> pinned;
  std::vector<Arena> arenas;
  std::vector<size_t> live_bytes;
  int access_depth = 0;
  std::vector<uintptr_t> opened;  // on-demand openings of the current device work (non-ASan)
};
MemState& mem() {
  static MemState* state = [] {
    auto* s = new MemState;
    s->arenas.resize(size_t(device_count()));
    s->live_bytes.resize(size_t(device_count()));
    s->opened.reserve(1 << 16);  // the SIGSEGV handler appends without allocating
    return s;
  }();
  return *state;
}

// The record whose pages (guard page included) hold p, in `recs`.
const std::pair<const uintptr_t, Rec>* find_in(const std::map<uintptr_t, Rec>& recs, uintptr_t p) {
  auto it = recs.upper_bound(p);
  if (it == recs.begin()) return nullptr;
  --it;
  return p < it->first + it->second.mapped + page_size() ? &*it : nullptr;
}

std::string hex(uintptr_t p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIxPTR, p);
  return buf;
}

void protect(uintptr_t base, const Rec& r, int prot);

// Non-ASan: while device work runs, a fault on a live allocation's pages (its guard page aside)
// opens that allocation and retries the access; any other SIGSEGV on device memory says what was
// touched, then dies as before. The mutex is never held while device memory is touched, so
// waiting for it here cannot deadlock; the wait is bounded all the same.
struct sigaction g_previous_segv;

// A fault that is not an opening goes to the handler ours was put in front of, or kills.
void pass_on(int sig, siginfo_t* info, void* context) {
  const struct sigaction previous = g_previous_segv;
  if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction != nullptr)
    previous.sa_sigaction(sig, info, context);
  else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN)
    previous.sa_handler(sig);
  else
    signal(sig, SIG_DFL);  // the retried access dies the usual way
}

void on_segv(int sig, siginfo_t* info, void* context) {
  if (info->si_code <= 0) {  // raised again by a crash reporter: die
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  const uintptr_t p = uintptr_t(info->si_addr);
  char buf[256];
  int n = std::snprintf(buf, sizeof buf, "nd-emu: segmentation fault at %" PRIxPTR "\n", p);
  MemState& s = mem();
  bool locked = false;
  for (int tries = 0; tries < 1000000 && !(locked = s.mutex.try_lock()); ++tries) sched_yield();
  if (locked && s.access_depth > 0 && info->si_code == SEGV_ACCERR) {
    const auto* r = find_in(s.live, p);
    if (r && p < r->first + r->second.mapped && s.opened.size() < s.opened.capacity()) {
      protect(r->first, r->second, PROT_READ | PROT_WRITE);
      s.opened.push_back(r->first);
      s.mutex.unlock();
      return;  // the access is retried on open pages
    }
  }
  if (locked) {
    if (auto* r = find_in(s.live, p)) {
      const bool past_end = p >= r->first + r->second.size;
      n = std::snprintf(buf, sizeof buf,
                        "nd-emu: %s 0x%" PRIxPTR " (%zu-byte allocation at 0x%" PRIxPTR ")\n",
                        past_end ? "access past the end of device memory at"
                                 : "host code dereferenced device memory at",
                        p, r->second.size, r->first);
    } else if (auto* f = find_in(s.freed, p)) {
      n = std::snprintf(buf, sizeof buf,
                        "nd-emu: use of freed device memory at 0x%" PRIxPTR
                        " (%zu-byte allocation at 0x%" PRIxPTR ")\n",
                        p, f->second.size, f->first);
    }
    s.mutex.unlock();
  }
  if (n > 0) (void)!write(2, buf, size_t(std::min(n, int(sizeof buf) - 1)));
  pass_on(sig, info, context);
}

// Called under the mutex as device work starts: a handler installed since (a test framework's
// crash reporter, MPI's) is put behind ours, which passes on every fault that is not an opening.
void install_segv_handler() {
#if !defined(ND_EMU_ASAN)
  struct sigaction now {};
  if (sigaction(SIGSEGV, nullptr, &now) != 0) return;
  if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_segv) return;
  struct sigaction act {};
  act.sa_sigaction = on_segv;
  act.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&act.sa_mask);
  sigaction(SIGSEGV, &act, &g_previous_segv);
#endif
}

constexpr bool kOpenOnDemand =
#if defined(ND_EMU_ASAN)
    false;  // ASan owns SIGSEGV
#else
    true;
#endif

// Opens the allocation at `base` for the rest of the current device work (under the mutex).
void open_now(MemState& s, uintptr_t base, const Rec& r) {
  protect(base, r, PROT_READ | PROT_WRITE);
  if (s.access_depth > 0) s.opened.push_back(base);
}

void protect(uintptr_t base, const Rec& r, int prot) {
  if (mprotect(reinterpret_cast<void*>(base), r.mapped, prot) != 0) {
    print_line("mprotect failed on device memory at " + hex(base));
    std::abort();
  }
}

// The first overwritten slack byte after the allocation, or nullptr. Needs readable pages.
const unsigned char* overwritten_canary(uintptr_t base, const Rec& r) {
#if defined(ND_EMU_ASAN)
  (void)base, (void)r;
  return nullptr;  // ASan poisons the slack and reports the write itself
#else
  const auto* c = reinterpret_cast<const unsigned char*>(base);
  for (size_t i = r.size; i < r.mapped; ++i)
    if (c[i] != kCanary) return c + i;
  return nullptr;
#endif
}

}  // namespace

int device_count() {
  static const int n = int(std::clamp<int64_t>(env_int("ND_EMU_DEVICES", 2), 1, 16));
  return n;
}

int& current_device() {
  thread_local int device = 0;
  return device;
}

size_t device_total_memory() {
  static const size_t total =
      size_t(std::max<int64_t>(env_int("ND_EMU_DEVICE_MEMORY", int64_t(16) << 30), 1 << 20));
  return total;
}

size_t device_live_bytes(int device) {
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.live_bytes[size_t(device)];
}

bool find_allocation(const void* p, AllocView* out) {
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  const auto* r = find_in(s.live, uintptr_t(p));
  const bool live = r != nullptr;
  if (!r) r = find_in(s.freed, uintptr_t(p));
  if (!r) return false;
  *out = AllocView{r->first, r->second.size, r->second.mapped, r->second.device, live};
  return true;
}

bool is_pinned(const void* p, size_t bytes) {
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.pinned.upper_bound(uintptr_t(p));
  if (it == s.pinned.begin()) return false;
  --it;
  return uintptr_t(p) + bytes <= it->first + it->second && uintptr_t(p) < it->first + it->second;
}

void open_device_access() {
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.access_depth++ != 0) return;
  if (kOpenOnDemand)
    install_segv_handler();
  else
    for (const auto& [base, r] : s.live) protect(base, r, PROT_READ | PROT_WRITE);
}

void close_device_access() {
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (--s.access_depth != 0) return;
  if (kOpenOnDemand) {
    std::sort(s.opened.begin(), s.opened.end());
    s.opened.erase(std::unique(s.opened.begin(), s.opened.end()), s.opened.end());
    for (uintptr_t base : s.opened) {
      auto it = s.live.find(base);  // freed ones are fresh PROT_NONE pages already
      if (it != s.live.end()) protect(base, it->second, PROT_NONE);
    }
    s.opened.clear();
  } else {
    for (const auto& [base, r] : s.live) protect(base, r, PROT_NONE);
  }
}

void open_allocation(const void* p) {
  if (!kOpenOnDemand) return;
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.access_depth == 0) return;
  if (const auto* r = find_in(s.live, uintptr_t(p))) open_now(s, r->first, r->second);
}

void check_overrun(const void* p, const char* who) {
  MemState& s = mem();
  std::string message;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    const auto* r = find_in(s.live, uintptr_t(p));
    if (!r) return;
    if (s.access_depth == 0 || kOpenOnDemand) open_now(s, r->first, r->second);
    const unsigned char* bad = overwritten_canary(r->first, r->second);
    if (bad) {
      message = std::string(who) + " wrote past the end of the " + std::to_string(r->second.size) +
                "-byte allocation at " + hex(r->first) + " (byte " +
                std::to_string(uintptr_t(bad) - r->first) + ")";
      // Restored so that one overrun is reported once.
      std::memset(const_cast<unsigned char*>(bad), kCanary,
                  r->first + r->second.mapped - uintptr_t(bad));
    }
    if (s.access_depth == 0) protect(r->first, r->second, PROT_NONE);
  }
  if (!message.empty()) fault(cudaErrorIllegalAddress, message);
}

std::string describe_pointer(const void* p) {
  if (p == nullptr) return "a null pointer";
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  const uintptr_t a = uintptr_t(p);
  if (const auto* r = find_in(s.live, a)) {
    const std::string where = "the " + std::to_string(r->second.size) + "-byte allocation at " +
                              hex(r->first) + " (device " + std::to_string(r->second.device) + ")";
    if (a < r->first + r->second.size)
      return "device memory at offset " + std::to_string(a - r->first) + " of " + where;
    return "device memory " + std::to_string(a - r->first - r->second.size) +
           " bytes past the end of " + where;
  }
  if (const auto* f = find_in(s.freed, a))
    return "freed device memory (" + hex(a) + ", in a freed " + std::to_string(f->second.size) +
           "-byte allocation)";
  auto it = s.pinned.upper_bound(a);
  if (it != s.pinned.begin() && a < std::prev(it)->first + std::prev(it)->second)
    return "pinned host memory at " + hex(a);
  return "a host pointer (" + hex(a) + ")";
}

}  // namespace detail

MemoryKind memory_kind(const void* p) {
  if (p == nullptr) return MemoryKind::Null;
  detail::AllocView v;
  if (detail::find_allocation(p, &v)) return v.live ? MemoryKind::Device : MemoryKind::FreedDevice;
  if (detail::is_pinned(p, 1)) return MemoryKind::PinnedHost;
  return MemoryKind::Host;
}

bool check_device_range(const void* p, size_t bytes, const char* what) {
  detail::AllocView v;
  const uintptr_t a = uintptr_t(p);
  if (p != nullptr && detail::find_allocation(p, &v) && v.live &&
      a < v.base + v.size + (bytes == 0) && a + bytes <= v.base + v.size) {
    detail::open_allocation(p);  // library stand-ins and MPI read it without faulting
    return true;
  }
  std::string message =
      std::string(what) + ": " + std::to_string(bytes) + " bytes at " + detail::describe_pointer(p);
  if (p != nullptr && v.live && a + bytes > v.base + v.size)
    message += ", which runs past the end of the allocation";
  fault(cudaErrorIllegalAddress, message);
  return false;
}

}  // namespace nd_emu

using nd_emu::detail::api_return;
using nd_emu::detail::call_error;
using nd_emu::detail::mem;

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return api_return(cudaErrorInvalidValue);
  *count = nd_emu::detail::device_count();
  return api_return(cudaSuccess);
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= nd_emu::detail::device_count())
    return api_return(cudaErrorInvalidDevice);
  nd_emu::detail::current_device() = device;
  return api_return(cudaSuccess);
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return api_return(cudaErrorInvalidValue);
  *device = nd_emu::detail::current_device();
  return api_return(cudaSuccess);
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return api_return(cudaErrorInvalidValue);
  if (device < 0 || device >= nd_emu::detail::device_count())
    return api_return(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "nd-emu device %d (emulated sm_90)", device);
  prop->totalGlobalMem = nd_emu::detail::device_total_memory();
  prop->sharedMemPerBlock = 49152;
  prop->sharedMemPerBlockOptin = 232448;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->multiProcessorCount = 132;
  prop->major = 9;
  prop->minor = 0;
  prop->unifiedAddressing = 1;
  return api_return(cudaSuccess);
}

cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer) {
  const int n = nd_emu::detail::device_count();
  if (can == nullptr) return api_return(cudaErrorInvalidValue);
  if (device < 0 || device >= n || peer < 0 || peer >= n) return api_return(cudaErrorInvalidDevice);
  *can = device != peer;
  return api_return(cudaSuccess);
}

cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned int) {
  if (peer < 0 || peer >= nd_emu::detail::device_count() ||
      peer == nd_emu::detail::current_device())
    return api_return(cudaErrorInvalidDevice);
  return api_return(cudaSuccess);
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (free_bytes == nullptr || total_bytes == nullptr) return api_return(cudaErrorInvalidValue);
  const size_t total = nd_emu::detail::device_total_memory();
  const size_t live = nd_emu::detail::device_live_bytes(nd_emu::detail::current_device());
  *total_bytes = total;
  *free_bytes = live < total ? total - live : 0;
  return api_return(cudaSuccess);
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  using namespace nd_emu::detail;
  if (p == nullptr) return api_return(cudaErrorInvalidValue);
  *p = nullptr;
  if (sticky_error() != cudaSuccess) return sticky_error();
  if (bytes == 0) return api_return(cudaSuccess);
  install_segv_handler();
  const int device = current_device();
  const size_t page = page_size();
  if (bytes > (size_t(1) << 46)) return api_return(cudaErrorMemoryAllocation);
  Rec r;
  r.size = bytes;
  r.mapped = round_up(bytes + kMinSlack, page);
  r.device = device;
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.live_bytes[size_t(device)] + bytes > device_total_memory())
    return api_return(cudaErrorMemoryAllocation);
  Arena& arena = s.arenas[size_t(device)];
  if (arena.base == 0) {
    void* base =
        mmap(nullptr, kArenaBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED)
      return call_error(cudaErrorMemoryAllocation,
                        "cudaMalloc: cannot reserve device address space");
    arena.base = uintptr_t(base);
  }
  if (arena.used + r.mapped + page > kArenaBytes)
    return call_error(cudaErrorMemoryAllocation,
                      "cudaMalloc: device address space exhausted (addresses are never reused)");
  const uintptr_t base = arena.base + arena.used;
  arena.used += r.mapped + page;  // the guard page stays PROT_NONE from the reservation
  void* data = mmap(reinterpret_cast<void*>(base), r.mapped, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  if (data == MAP_FAILED) return api_return(cudaErrorMemoryAllocation);
  std::memset(data, 0xFF, bytes);  // NaN: reading memory never written shows
  std::memset(static_cast<char*>(data) + bytes, kCanary, r.mapped - bytes);
#if defined(ND_EMU_ASAN)
  ASAN_POISON_MEMORY_REGION(static_cast<char*>(data) + bytes, r.mapped - bytes);
#endif
  if (s.access_depth == 0 || kOpenOnDemand) protect(base, r, PROT_NONE);
  s.live.emplace(base, r);
  s.live_bytes[size_t(device)] += bytes;
  counter_state().device_allocations++;
  *p = data;
  return api_return(cudaSuccess);
}

cudaError_t cudaFree(void* p) {
  using namespace nd_emu::detail;
  if (p == nullptr) return api_return(cudaSuccess);
  AllocView v;
  if (!find_allocation(p, &v) || v.base != uintptr_t(p))
    return call_error(cudaErrorInvalidValue, "cudaFree: " + describe_pointer(p) +
                                                 " is not the start of a device allocation");
  if (!v.live)
    return call_error(cudaErrorInvalidValue,
                      "cudaFree: double free of device memory at " + hex(uintptr_t(p)));
  flush_device(v.device);  // cudaFree waits for the device, so queued users finish first
  check_overrun(p, "device work");
  MemState& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.live.find(uintptr_t(p));
  if (it == s.live.end()) return api_return(cudaErrorInvalidValue);  // freed meanwhile
  const Rec r = it->second;
  s.live.erase(it);
#if defined(ND_EMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(p, r.mapped);
#endif
  // Fresh PROT_NONE pages: the memory is released and later touches fault.
  mmap(p, r.mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  s.freed.emplace(uintptr_t(p), r);
  s.live_bytes[size_t(r.device)] -= r.size;
  return api_return(cudaSuccess);
}

cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int) {
  if (p == nullptr) return api_return(cudaErrorInvalidValue);
  *p = nullptr;
  if (nd_emu::detail::sticky_error() != cudaSuccess) return nd_emu::detail::sticky_error();
  void* q = nullptr;
  if (posix_memalign(&q, 256, std::max<size_t>(bytes, 1)) != 0)
    return api_return(cudaErrorMemoryAllocation);
  auto& s = mem();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.pinned[uintptr_t(q)] = std::max<size_t>(bytes, 1);
  *p = q;
  return api_return(cudaSuccess);
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  return cudaHostAlloc(p, bytes, cudaHostAllocDefault);
}

cudaError_t cudaFreeHost(void* p) {
  if (p == nullptr) return api_return(cudaSuccess);
  // Like CUDA's, waits for the devices: a queued copy may still read the buffer.
  for (int d = 0; d < nd_emu::detail::device_count(); ++d) nd_emu::detail::flush_device(d);
  auto& s = mem();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    auto it = s.pinned.find(uintptr_t(p));
    if (it != s.pinned.end()) {
      s.pinned.erase(it);
      std::free(p);
      return api_return(cudaSuccess);
    }
  }
  return call_error(cudaErrorInvalidValue,
                    "cudaFreeHost: " + nd_emu::detail::describe_pointer(p) +
                        " was not allocated by cudaHostAlloc/cudaMallocHost");
}
