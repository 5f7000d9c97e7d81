// The caching allocators of host and CUDA memory, with counters (see allocator.h).
#include "engine/allocator.h"
#include "engine/device_scratch.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace nd {

namespace {

constexpr size_t kAlignment = 512;  // rounding of CUDA block sizes; keeps the cache reusable

struct Pool {
  std::mutex mutex;
  AllocatorStats stats;
  std::multimap<size_t, void*> free_blocks;  // size -> cached block
  std::unordered_map<void*, size_t> in_use;  // block -> its size
};

constexpr int kMaxDevices = 16;
// The pools live until the process ends and are never destroyed: tensors in static objects may
// be freed after any destructor of ours has run, and the cached blocks stay reachable from here,
// so LeakSanitizer does not count them (a destroyed map would have dropped the only pointers).
Pool& pool(Device d) {
  static Pool* const cpu_pool = new Pool;
  static Pool* const cuda_pools = new Pool[kMaxDevices];
  if (d.is_cpu()) return *cpu_pool;
  ND_CHECK(d.index >= 0 && d.index < kMaxDevices, "device index out of range: ", d.index);
  return cuda_pools[d.index];
}

void note_alloc(AllocatorStats& s, size_t bytes) {
  s.bytes_in_use += int64_t(bytes);
  if (s.bytes_in_use > s.peak_bytes_in_use) s.peak_bytes_in_use = s.bytes_in_use;
}

size_t round_up(size_t bytes) {
  return (bytes + kAlignment - 1) / kAlignment * kAlignment;
}

// Cached host memory up to this much is never given back (see allocate()).
constexpr int64_t kHostCacheFloor = int64_t(256) << 20;

// Host blocks: 64-byte aligned (whole cache lines, AVX-512 loads) from the heap.
void* host_malloc(size_t size) {
  return std::aligned_alloc(64, size);
}

void release_cached_host(Pool& p) {
  for (auto& [size, ptr] : p.free_blocks) {
    std::free(ptr);
    p.stats.bytes_reserved -= int64_t(size);
  }
  p.free_blocks.clear();
}

// A cached block of at least `size` bytes and at most twice that (best fit), or null.
void* take_cached(Pool& p, size_t size) {
  auto it = p.free_blocks.lower_bound(size);
  if (it == p.free_blocks.end() || it->first > 2 * size) return nullptr;
  const size_t block = it->first;
  void* ptr = it->second;
  p.free_blocks.erase(it);
  p.in_use.emplace(ptr, block);
  note_alloc(p.stats, block);
  p.stats.cache_hits++;
  return ptr;
}

#ifdef ND_WITH_CUDA
void release_cached(Device d, Pool& p) {
  kernels::cuda_set_device(d.index);
  kernels::cuda_synchronize(kernels::cuda_stream(d.index));
  for (auto& [size, ptr] : p.free_blocks) {
    kernels::cuda_free(ptr);
    p.stats.bytes_reserved -= int64_t(size);
  }
  p.free_blocks.clear();
}
#endif

}  // namespace

void* allocate(Device d, size_t bytes) {
  Pool& p = pool(d);
  const size_t size = round_up(std::max<size_t>(bytes, 1));
  if (d.is_cpu()) {
    // Cached like CUDA memory: freeing and taking heap blocks every step made glibc return and
    // re-map the memory, a page fault per touched page (most of the MLP's system time).
    std::lock_guard<std::mutex> lock(p.mutex);
    if (void* ptr = take_cached(p, size)) return ptr;
    // A miss while the cache holds more than the high-water mark of live memory (new shapes, e.g.
    // the next network of a test): give the cache back rather than grow without bound. Steady
    // training misses nothing, so it never gets here.
    const int64_t cached = p.stats.bytes_reserved - p.stats.bytes_in_use;
    if (cached > std::max(kHostCacheFloor, p.stats.peak_bytes_in_use)) release_cached_host(p);
    void* ptr = host_malloc(size);
    if (!ptr) {
      release_cached_host(p);  // give the cache back and try once more
      ptr = host_malloc(size);
    }
    if (!ptr)
      throw OutOfMemoryError(detail::concat("out of host memory allocating ", bytes, " bytes"));
    p.stats.device_mallocs++;
    p.stats.bytes_reserved += int64_t(size);
    p.in_use.emplace(ptr, size);
    note_alloc(p.stats, size);
    return ptr;
  }
#ifdef ND_WITH_CUDA
  std::lock_guard<std::mutex> lock(p.mutex);
  if (void* ptr = take_cached(p, size)) return ptr;
  kernels::cuda_set_device(d.index);
  void* ptr = nullptr;
  try {
    ptr = kernels::cuda_malloc(size);
  } catch (const OutOfMemoryError&) {
    release_cached(d, p);  // give the cache back and try once more
    ptr = kernels::cuda_malloc(size);
  }
  p.stats.device_mallocs++;
  p.stats.bytes_reserved += int64_t(size);
  p.in_use.emplace(ptr, size);
  note_alloc(p.stats, size);
  return ptr;
#else
  ND_FAIL("this build has no CUDA support; cannot allocate on ", d.str());
#endif
}

void deallocate(Device d, void* ptr, size_t) {
  if (!ptr) return;
  Pool& p = pool(d);
  std::lock_guard<std::mutex> lock(p.mutex);
  auto it = p.in_use.find(ptr);
  ND_CHECK(it != p.in_use.end(), "freeing a ", d.is_cpu() ? "host" : "CUDA",
           " block the allocator does not know");
  p.stats.bytes_in_use -= int64_t(it->second);
  p.free_blocks.emplace(it->second, ptr);
  p.in_use.erase(it);
}

AllocatorStats allocator_stats(Device d) {
  Pool& p = pool(d);
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.stats;
}

void reset_peak_bytes(Device d) {
  Pool& p = pool(d);
  std::lock_guard<std::mutex> lock(p.mutex);
  p.stats.peak_bytes_in_use = p.stats.bytes_in_use;
}

void empty_cache(Device d) {
  Pool& p = pool(d);
  std::lock_guard<std::mutex> lock(p.mutex);
  if (d.is_cpu()) {
    release_cached_host(p);
    return;
  }
#ifdef ND_WITH_CUDA
  release_cached(d, p);
#endif
}

// ---------------------------------------------------------------- pinned host memory

namespace {

struct PinnedBlock {
  size_t size = 0;
#ifdef ND_WITH_CUDA
  cudaEvent_t last_use = nullptr;  // recorded after the last copy that reads the block
  bool used = false;
#endif
};

struct PinnedPool {
  std::mutex mutex;
  AllocatorStats stats;
  std::unordered_map<void*, PinnedBlock> blocks;  // every block, in use or cached
  std::multimap<size_t, void*> free_blocks;
};

PinnedPool& pinned_pool() {  // never destroyed, as pool() above
  static PinnedPool* const p = new PinnedPool;
  return *p;
}

}  // namespace

void* allocate_pinned(size_t bytes) {
#ifdef ND_WITH_CUDA
  PinnedPool& p = pinned_pool();
  const size_t size = round_up(std::max<size_t>(bytes, 1));
  std::lock_guard<std::mutex> lock(p.mutex);
  for (auto it = p.free_blocks.lower_bound(size);
       it != p.free_blocks.end() && it->first <= 2 * size; ++it) {
    PinnedBlock& b = p.blocks.at(it->second);
    if (b.used && !kernels::cuda_event_done(b.last_use)) continue;  // a copy still reads it
    void* ptr = it->second;
    p.free_blocks.erase(it);
    note_alloc(p.stats, b.size);
    p.stats.cache_hits++;
    return ptr;
  }
  void* ptr = kernels::cuda_host_alloc(size);
  p.blocks[ptr].size = size;
  p.stats.device_mallocs++;
  p.stats.bytes_reserved += int64_t(size);
  note_alloc(p.stats, size);
  return ptr;
#else
  (void)bytes;
  ND_FAIL("pinned host memory needs a CUDA build; this build has no CUDA support");
#endif
}

void deallocate_pinned(void* ptr) {
  if (!ptr) return;
  PinnedPool& p = pinned_pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  auto it = p.blocks.find(ptr);
  ND_CHECK(it != p.blocks.end(), "freeing a pinned block the allocator does not know");
  p.stats.bytes_in_use -= int64_t(it->second.size);
  p.free_blocks.emplace(it->second.size, ptr);
}

void note_pinned_use(void* ptr, CUstream_st* stream) {
#ifdef ND_WITH_CUDA
  PinnedPool& p = pinned_pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  auto it = p.blocks.find(ptr);
  ND_CHECK(it != p.blocks.end(), "a copy from pinned memory the allocator does not know");
  PinnedBlock& b = it->second;
  if (!b.last_use) b.last_use = kernels::cuda_event_create();
  kernels::cuda_event_record(b.last_use, stream);
  b.used = true;
#else
  (void)ptr;
  (void)stream;
#endif
}

AllocatorStats pinned_stats() {
  PinnedPool& p = pinned_pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.stats;
}

DeviceScratch::~DeviceScratch() {
  for (auto& [ptr, bytes] : blocks_) deallocate(device_, ptr, bytes);
}

void* DeviceScratch::get(size_t bytes) {
  void* p = allocate(device_, bytes);
  blocks_.emplace_back(p, bytes);
  return p;
}

}  // namespace nd
