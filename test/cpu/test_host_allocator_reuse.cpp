// The host caching allocator (engine/allocator.cpp) hands a cached block out again only when it
// holds the whole request: sizes off the rounding granularity, reused at a larger size of the same
// rounding and at sizes that round differently, every requested byte written each time. The block
// sizes come from the allocator's counters; under AddressSanitizer (scripts/sanitize.sh) the writes
// also overrun a block that is too small, whatever the counters say.
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/allocator.h"
#include "test/catch.h"

using namespace nd;

namespace {

// A block of at least `bytes` from the host allocator, every byte of the request written.
struct Taken {
  unsigned char* ptr;
  int64_t block;  // its size, from bytes_in_use
  bool hit;       // served from the cache
};

Taken take(size_t bytes, unsigned char fill) {
  const AllocatorStats before = allocator_stats(Device::cpu());
  auto* p = static_cast<unsigned char*>(allocate(Device::cpu(), bytes));
  const AllocatorStats after = allocator_stats(Device::cpu());
  REQUIRE(p != nullptr);
  std::memset(p, fill, bytes);
  // Read back both ends: the writes are not dead stores.
  CHECK(p[0] == fill);
  CHECK(p[bytes - 1] == fill);
  return {p, after.bytes_in_use - before.bytes_in_use, after.cache_hits > before.cache_hits};
}

}  // namespace

TEST_CASE("the host cache never hands out a block smaller than the request", "[allocator]") {
  const Device cpu = Device::cpu();
  empty_cache(cpu);  // the cache then holds only what this test frees
  // The rounding granularity, from the block a 1-byte request gets.
  const Taken probe = take(1, 0x11);
  deallocate(cpu, probe.ptr, 1);
  empty_cache(cpu);
  const size_t unit = size_t(probe.block);
  REQUIRE(unit >= 1);
  auto rounded = [&](size_t bytes) { return (bytes + unit - 1) / unit * unit; };

  for (size_t size : {size_t(1), size_t(3), size_t(63), unit - 1, unit + 1, 3 * unit + 7,
                      10 * unit + unit / 2, 1000 * unit + 5}) {
    INFO("size " << size << ", granularity " << unit);
    REQUIRE(size % unit != 0);
    empty_cache(cpu);
    const Taken first = take(size, 0xa1);
    CHECK(first.block >= int64_t(size));
    CHECK(size_t(first.ptr) % 64 == 0);
    deallocate(cpu, first.ptr, size);

    // Larger, same rounding: the cached block comes back and holds it all.
    const size_t same = rounded(size);
    {
      INFO("again at " << same << " bytes");
      const Taken again = take(same, 0xb2);
      CHECK(again.hit);
      CHECK(again.ptr == first.ptr);
      CHECK(again.block >= int64_t(same));
      deallocate(cpu, again.ptr, same);
    }

    // One byte past the rounding: the cached block is a unit too small and must not come back.
    const size_t larger = rounded(size) + 1;
    {
      INFO("again at " << larger << " bytes");
      const Taken big = take(larger, 0xc3);
      CHECK(big.ptr != first.ptr);
      CHECK(big.block >= int64_t(larger));
      deallocate(cpu, big.ptr, larger);
    }

    // Smaller, rounding a unit lower: any cached block it gets must still hold it.
    if (size > unit) {
      const size_t smaller = size - unit;
      INFO("again at " << smaller << " bytes");
      const Taken small = take(smaller, 0xd4);
      CHECK(small.block >= int64_t(smaller));
      deallocate(cpu, small.ptr, smaller);
    }
  }
  empty_cache(cpu);
}
