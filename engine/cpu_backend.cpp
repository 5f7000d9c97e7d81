// The CPU backend choices (see cpu_backend.h).
#include "engine/cpu_backend.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "kernels/conv.h"
#include "kernels/cpu_threads.h"

namespace nd {

namespace {

// The value of `var` among `choices` (the first is the default when unset).
int env_choice(const char* var, std::initializer_list<const char*> choices) {
  const char* v = std::getenv(var);
  if (!v || !*v) return 0;
  int i = 0;
  std::string names;
  for (const char* c : choices) {
    if (std::string(v) == c) return i;
    names += (i ? " | " : "") + std::string(c);
    ++i;
  }
  ND_FAIL(var, "=", v, " is not one of ", names);
}

std::atomic<int>& conv_choice() {
  static std::atomic<int> choice{[] {
    const int c = env_choice("ND_CPU_CONV", {"onednn", "ref"});
    return c == 0 && !kernels::conv2d_onednn_available() ? 1 : c;
  }()};
  return choice;
}

std::atomic<int>& deconv_choice() {
  static std::atomic<int> choice{env_choice("ND_CPU_DECONV", {"blas", "ref"})};
  return choice;
}

}  // namespace

CpuConvPath cpu_conv_path() {
  return conv_choice() == 0 ? CpuConvPath::OneDnn : CpuConvPath::Reference;
}

void set_cpu_conv_path(CpuConvPath p) {
  ND_CHECK(p == CpuConvPath::Reference || onednn_available(),
           "this build has no oneDNN: install libdnnl-dev and reconfigure");
  conv_choice() = p == CpuConvPath::OneDnn ? 0 : 1;
}

bool onednn_available() {
  return kernels::conv2d_onednn_available();
}

CpuDeconvPath cpu_deconv_path() {
  return deconv_choice() == 0 ? CpuDeconvPath::Blas : CpuDeconvPath::Reference;
}

void set_cpu_deconv_path(CpuDeconvPath p) {
  deconv_choice() = p == CpuDeconvPath::Blas ? 0 : 1;
}

void set_cpu_threads(int n) {
  kernels::set_cpu_threads(n);
}

int cpu_threads() {
  return kernels::cpu_threads();
}

int cpu_threads_available() {
  return kernels::cpu_threads_available();
}

int default_cpu_threads() {
  // OMP_NUM_THREADS may be a list ("4,2": nested levels): its first entry is the outer pool.
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && n >= 1 && n <= 4096 && (*end == '\0' || *end == ',')) return int(n);
  }
  return cpu_threads_available();
}

}  // namespace nd
