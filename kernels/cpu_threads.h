// Threads of the CPU kernels. One OpenMP pool of as many threads as cores serves OpenBLAS (its
// OpenMP build, see CMakeLists.txt), oneDNN and the kernels' own parallel loops, so no second
// pool spins on the cores the next call needs (OpenBLAS's own pthread pool spun in sched_yield
// for up to 0.1 s after each call). Work too small to pay for waking the pool runs on the calling
// thread, so during serial phases the pool's threads spin briefly and then sleep (libgomp's
// default wait policy: on the shared 2-core machine it beat OMP_WAIT_POLICY=PASSIVE by 1.5x on
// ResNet-18 steps, and with the thresholds below no policy slowed the Fashion-MNIST MLP).
// Results repeat bitwise for a given thread count: every parallel loop of ours splits its work
// by output element, never a reduction across threads.
#pragma once
#include <cstdint>

namespace nd::kernels {

// Parallel loops of ours run on one thread below this many elements of work: waking the pool
// costs more than it saves there (and far more on a loaded machine, where a woken thread may
// wait milliseconds for a core). Measured on the MLP steps (2 shared cores): 2^15 and 2^20 were
// slower than 2^18. Use as `#pragma omp parallel for if (parallel_worth(work))`.
constexpr int64_t kMinParallelWork = 1 << 18;
inline bool parallel_worth(int64_t work) {
  return work >= kMinParallelWork;
}
// The same for BLAS products, in multiply-adds (m n k): below 2^26 (about a millisecond on one
// core) OpenBLAS runs on the calling thread.
constexpr int64_t kMinParallelMacs = int64_t(1) << 26;

// Uses n >= 1 threads from now on (OpenMP, OpenBLAS).
void set_cpu_threads(int n);
int cpu_threads();
// The threads the machine offers this process (its CPU affinity).
int cpu_threads_available();

}  // namespace nd::kernels
