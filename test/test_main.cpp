// main() of the CPU test binary (shared Catch2 2/3 entry point).
#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

#include "engine/cpu_backend.h"

int main(int argc, char** argv) {
  nd::use_passive_thread_wait(argv);
  return Catch::Session().run(argc, argv);
}
