// Threads of the CPU kernels. One OpenMP pool serves OpenBLAS (its OpenMP build, see
// CMakeLists.txt), oneDNN and the kernels' own parallel loops, so no second pool spins on the
// cores the next call needs. Results repeat bitwise for a given thread count: every parallel
// loop of ours splits its work by output element, never a reduction across threads.
#pragma once
#include <cstdint>

namespace nd::kernels {

// Parallel loops of ours run on one thread below this many elements of work: waking the pool
// costs more than it saves there (and far more on a loaded machine, where a woken thread may
// wait milliseconds for a core). Use as `#pragma omp parallel for if (parallel_worth(work))`.
constexpr int64_t kMinParallelWork = 1 << 15;
inline bool parallel_worth(int64_t work) {
  return work >= kMinParallelWork;
}

// Uses n >= 1 threads from now on (OpenMP, OpenBLAS).
void set_cpu_threads(int n);
int cpu_threads();
// The threads the machine offers this process (its CPU affinity).
int cpu_threads_available();

}  // namespace nd::kernels
