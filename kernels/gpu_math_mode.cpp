// The process-wide GPU math mode of common.h. Kept in a plain C++ file so CPU-only builds link
// it too (the flags then have no effect).
#include <atomic>

#include "kernels/common.h"

namespace nd::kernels {

namespace {
std::atomic<bool> g_tf32{false}, g_deterministic{false};
}  // namespace

void set_gpu_math_mode(const GpuMathMode& m) {
  g_tf32 = m.tf32;
  g_deterministic = m.deterministic;
}

GpuMathMode gpu_math_mode() {
  return {g_tf32.load(), g_deterministic.load()};
}

}  // namespace nd::kernels
