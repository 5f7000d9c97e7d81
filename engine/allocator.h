// Memory for tensors: a caching allocator for the host (64-byte aligned heap blocks) and one per
// CUDA device, each keeping freed blocks for reuse, so steady-state training makes no new
// allocation (no cudaMalloc, no heap growth or page faults on the host); their counters let tests
// assert that. All CUDA compute runs on one stream per device, so a freed block may be
// reused at once (stream order protects it); host-to-device copies run on a copy stream that
// first waits for the compute stream (engine/ops_copy.cpp). Pinned (page-locked) host memory,
// the source of asynchronous copies, is cached too, and a freed pinned block is handed out again
// only once the copies that read it have finished.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/device.h"

struct CUstream_st;  // cudaStream_t without the kernels' or CUDA's headers

namespace nd {

struct AllocatorStats {
  int64_t bytes_in_use = 0;  // held by live tensors
  int64_t peak_bytes_in_use = 0;
  int64_t bytes_reserved = 0;  // in use + cached
  int64_t device_mallocs = 0;  // cudaMalloc calls so far (CUDA) / heap allocations (CPU)
  int64_t cache_hits = 0;
};

void* allocate(Device d, size_t bytes);
void deallocate(Device d, void* p, size_t bytes);
AllocatorStats allocator_stats(Device d);
// Starts a new high-water mark: peak_bytes_in_use = bytes_in_use.
void reset_peak_bytes(Device d);
// Returns cached, unused blocks to the driver (CUDA) or the heap (CPU).
void empty_cache(Device d);

// Pinned host memory (CUDA builds only; throws otherwise).
void* allocate_pinned(size_t bytes);
void deallocate_pinned(void* p);
// The block starting at `p` is read by work queued on `stream`: it is not reused before that
// work has finished.
void note_pinned_use(void* p, CUstream_st* stream);
AllocatorStats pinned_stats();

}  // namespace nd
