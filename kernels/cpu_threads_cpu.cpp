// The thread count of the CPU kernels (see cpu_threads.h).
#include "kernels/cpu_threads.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>

#include "core/error.h"

namespace nd::kernels {

void set_cpu_threads(int n) {
  ND_CHECK(n >= 1, "the number of CPU threads must be >= 1, got ", n);
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int cpu_threads() {
  return omp_get_max_threads();
}

int cpu_threads_available() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  const int n = CPU_COUNT(&set);
  return n >= 1 ? n : 1;
}

}  // namespace nd::kernels
