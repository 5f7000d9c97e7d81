// libFuzzer entry point of one harness, chosen at compile time (-DND_FUZZ_HARNESS=fuzz_idx etc.;
// see CMakeLists.txt and scripts/fuzz.sh).
#include "test/fuzz/harnesses.h"

#ifndef ND_FUZZ_HARNESS
#error "define ND_FUZZ_HARNESS as the harness function (fuzz_idx, fuzz_image, ...)"
#endif

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)nd::fuzz::ND_FUZZ_HARNESS(data, size);
  return 0;
}
