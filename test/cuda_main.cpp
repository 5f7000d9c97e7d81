// main() of the CUDA test binary: exits 77 ("skipped") when no CUDA device is usable, unless
// ND_REQUIRE_GPU=1 makes that a failure (the GPU machine's check must not pass vacuously).
// Listing the test cases (and --help) needs no device, so scripts/gpu_check.sh --dry-run can
// exercise its per-case loop on a machine without a GPU.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/device.h"

#if __has_include(<catch2/catch_session.hpp>)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

namespace {
bool lists_only(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strncmp(a, "--list", 6) == 0 || std::strcmp(a, "-l") == 0 ||
        std::strcmp(a, "-h") == 0 || std::strcmp(a, "--help") == 0 || std::strcmp(a, "-?") == 0)
      return true;
  }
  return false;
}
}  // namespace

int main(int argc, char** argv) {
  if (lists_only(argc, argv)) return Catch::Session().run(argc, argv);
  const char* require = std::getenv("ND_REQUIRE_GPU");
  const bool required = require && std::strcmp(require, "1") == 0;
  if (!nd::cuda_built() || nd::cuda_device_count() == 0) {
    const char* why = nd::cuda_built() ? "no CUDA device" : "built without CUDA";
    if (required) {
      std::fprintf(stderr, "FAILED: ND_REQUIRE_GPU=1 but %s\n", why);
      return 1;
    }
    std::printf("skipped: %s\n", why);
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
