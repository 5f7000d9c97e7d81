// The thread count of the CPU kernels (see cpu_threads.h).
#include "kernels/cpu_threads.h"

#include <cblas.h>
#include <omp.h>
#include <sched.h>

#include <cstdlib>

#include "kernels/error.h"

namespace {

// Idle OpenMP threads sleep instead of spinning: a spinning thread steals the core that the main
// thread or the next parallel region needs (on 2 shared cores, ResNet-18 steps ran 2x slower
// with libgomp's default spinning). libgomp reads its settings once, while the program loads; an
// entry of the executable's preinit array runs before that, so the defaults are set there
// (libgomp 12 keeps spinning under OMP_WAIT_POLICY=PASSIVE unless GOMP_SPINCOUNT is 0). Settings
// the user made win.
void default_to_passive_wait(int, char**, char**) {
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);
  setenv("GOMP_SPINCOUNT", "0", /*overwrite=*/0);
}
__attribute__((section(".preinit_array"),
               used)) void (*const nd_preinit_wait_policy)(int, char**,
                                                           char**) = default_to_passive_wait;

}  // namespace

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
