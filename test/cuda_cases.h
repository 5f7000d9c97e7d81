// Shared by the CUDA tests (test/cuda): the small-sizes switch of the sanitizer runs and a skip
// that passes with Catch2 2.x and 3.x. Header-only.
//
// scripts/gpu_check.sh runs compute-sanitizer (memcheck over the test cases tagged [memcheck],
// racecheck over those tagged [racecheck]) with ND_TEST_SMALL=1; the sanitizers slow kernels by
// one to two orders of magnitude, so under it every test leaves out its large cases (above
// roughly 1M elements, a batch of 128, or Newton-Schulz on n >= 576) and keeps the small ones,
// which cover every kernel and every code path of its shape table.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "test/catch.h"

namespace nd::test {

// True when the environment has ND_TEST_SMALL=1.
inline bool small_sizes_only() {
  const char* v = std::getenv("ND_TEST_SMALL");
  return v && std::strcmp(v, "1") == 0;
}

// Under ND_TEST_SMALL=1, a case is large when its largest tensor has 500k elements or more (the
// 2^20-element and 1024 x 1024 cases of the elementwise tables, the "large case" of each op
// family) or its batch is 128 or more.
constexpr int64_t kSmallMaxElements = 500000;
constexpr int64_t kSmallMaxBatch = 128;

// Whether to leave out a case of `largest_tensor_elements` (and `batch`, where it has one).
inline bool left_out_when_small(int64_t largest_tensor_elements, int64_t batch = 0) {
  return small_sizes_only() &&
         (largest_tensor_elements >= kSmallMaxElements || batch >= kSmallMaxBatch);
}

}  // namespace nd::test

// Ends the current test case as skipped, with a message, and passes. Not Catch2 3's SKIP: a run
// in which every selected test was skipped exits 4 there, which scripts/gpu_check.sh (one case
// per process; 0 and 77 pass) would count as a failure.
#define ND_SKIP_TEST(msg)     \
  do {                        \
    WARN("SKIPPED: " << msg); \
    return;                   \
  } while (0)
