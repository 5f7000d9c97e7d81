// Parallel loops of the CPU kernels on the one OpenMP pool (for kernels/*.cpp, which are built
// with OpenMP). Work is split by output element, never by the terms of a sum, so every result is
// the same whatever the number of threads.
#pragma once
#include <omp.h>

#include <cstdint>

#include "kernels/cpu_threads.h"

namespace nd::kernels {

// Calls body(begin, end) on contiguous ranges covering [0, n), one per thread; a single call
// body(0, n) when n * cost (elements touched per item) is too little work to share.
template <typename Body>
void parallel_ranges(int64_t n, int64_t cost, Body&& body) {
  if (n <= 0) return;
  if (n == 1 || !parallel_worth(n * cost) || omp_get_max_threads() == 1) {
    body(int64_t(0), n);
    return;
  }
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), threads = omp_get_num_threads();
    const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) body(begin, end);
  }
}

// While alive (and `on`), library calls on this thread (OpenBLAS, oneDNN) use one thread: for
// calls too small to pay for waking the pool.
class SerialScope {
 public:
  explicit SerialScope(bool on) : saved_(on ? omp_get_max_threads() : 0) {
    if (saved_ > 1) omp_set_num_threads(1);
  }
  ~SerialScope() {
    if (saved_ > 1) omp_set_num_threads(saved_);
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int saved_;
};

}  // namespace nd::kernels
