// The replaced operator new / delete behind AllocationProbe (see alloc_probe.h).
#include "test/alloc_probe.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {

std::atomic<int> active_probes{0};
std::atomic<size_t> largest_request{0};

void* allocate(size_t bytes) {
  if (active_probes.load(std::memory_order_relaxed) > 0) {
    size_t seen = largest_request.load(std::memory_order_relaxed);
    while (bytes > seen && !largest_request.compare_exchange_weak(seen, bytes)) {
    }
  }
  if (void* p = std::malloc(bytes ? bytes : 1)) return p;
  throw std::bad_alloc();
}

}  // namespace

namespace nd::test {

AllocationProbe::AllocationProbe() {
  largest_request.store(0);
  active_probes.fetch_add(1);
}

AllocationProbe::~AllocationProbe() {
  active_probes.fetch_sub(1);
}

size_t AllocationProbe::largest() const {
  return largest_request.load();
}

}  // namespace nd::test

void* operator new(size_t bytes) {
  return allocate(bytes);
}
void* operator new[](size_t bytes) {
  return allocate(bytes);
}
// The nothrow forms too: otherwise they come from the sanitizer's runtime, and their memory
// would reach the free() below (AddressSanitizer reports that as a mismatch).
void* operator new(size_t bytes, const std::nothrow_t&) noexcept {
  try {
    return allocate(bytes);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](size_t bytes, const std::nothrow_t&) noexcept {
  try {
    return allocate(bytes);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}
