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

// Idle OpenMP threads should sleep, not spin: a spinning thread takes the core that the main
// thread, the loader or the next parallel region needs (on the shared 2-core machine, ResNet-18
// steps ran 2x slower and the Fashion-MNIST MLP burnt 60% more CPU with libgomp's default
// spinning). libgomp reads OMP_WAIT_POLICY only while the program loads, so when it is unset this
// sets OMP_WAIT_POLICY=PASSIVE and executes the program again with the same arguments (main()'s
// first call). It returns when the variable is set (by the user, or this is the second start) or
// the program cannot be executed again.
void restart_with_passive_wait(char** argv);

}  // namespace nd::kernels
