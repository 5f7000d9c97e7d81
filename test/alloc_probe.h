// The largest single allocation made through operator new while a probe is alive, so tests can
// assert that a reader of a damaged file never allocates more than the file justifies (a header
// claiming a terabyte fails before allocating). test/alloc_probe.cpp replaces the global operator
// new of the test binary with one that records the request size while probes exist (and calls
// malloc, so the sanitizers still see every allocation). Allocations of other threads count too.
#pragma once
#include <cstddef>

namespace nd::test {

class AllocationProbe {
 public:
  AllocationProbe();
  ~AllocationProbe();
  AllocationProbe(const AllocationProbe&) = delete;
  AllocationProbe& operator=(const AllocationProbe&) = delete;
  // Bytes of the largest operator new request since this probe began.
  size_t largest() const;
};

}  // namespace nd::test
