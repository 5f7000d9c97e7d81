// main() of the multi-rank test binary, run by CTest under `mpirun -np 2`: starts the
// communication service, runs the Catch2 tests on every rank (each rank checks its own results;
// the tests issue the same collectives in the same order on all ranks) and fails when any rank
// failed. Without MPI in the build it reports "skipped" (77).
#include <cstdio>

#include "engine/comm.h"

#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

int main(int argc, char** argv) {
  nd::comm::init(argc, argv);
  if (!nd::comm::mpi_built()) {
    std::printf("skipped: built without MPI\n");
    return 77;
  }
  if (nd::comm::world_size() < 2) {
    std::fprintf(stderr, "run me with mpirun -np 2 (this process is a world of %d)\n",
                 nd::comm::world_size());
    nd::comm::finalize();
    return 1;
  }
  const int failed = Catch::Session().run(argc, argv);
  const int64_t any = nd::comm::all_reduce_max(int64_t(failed != 0));
  nd::comm::finalize();
  return any ? 1 : 0;
}
