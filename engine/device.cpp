// Device helpers and the parsing of --device specs.
#include "engine/device.h"

#include "core/error.h"
#include "kernels/common.h"
#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace nd {

std::string Device::str() const {
  return is_cpu() ? "cpu" : "cuda:" + std::to_string(index);
}

bool cuda_built() {
#ifdef ND_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef ND_WITH_CUDA
  return kernels::cuda_device_count();
#else
  return 0;
#endif
}

bool cuda_emulated() {
#ifdef ND_CUDA_EMULATION
  return true;
#else
  return false;
#endif
}

void synchronize(Device d) {
#ifdef ND_WITH_CUDA
  if (d.is_cuda()) kernels::cuda_synchronize(kernels::cuda_stream(d.index));
#else
  (void)d;
#endif
}

void set_gpu_math(const GpuMath& m) {
  kernels::GpuMathMode mode;
  mode.tf32 = m.tf32, mode.deterministic = m.deterministic;
  kernels::set_gpu_math_mode(mode);
}

GpuMath gpu_math() {
  const kernels::GpuMathMode mode = kernels::gpu_math_mode();
  GpuMath m;
  m.tf32 = mode.tf32, m.deterministic = mode.deterministic;
  return m;
}

Device parse_device(const std::string& spec) {
  if (spec == "cpu") return Device::cpu();
  if (spec == "auto")
    return cuda_device_count() > 0 && !cuda_emulated() ? Device::cuda(0) : Device::cpu();
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    int index = 0;
    if (spec.size() > 5) {
      try {
        index = std::stoi(spec.substr(5));
      } catch (const std::exception&) {
        ND_FAIL("bad device '", spec, "': expected cpu, cuda, cuda:N or auto");
      }
    }
    ND_CHECK(cuda_built(), "--device ", spec,
             ": this binary was built without CUDA (nvcc not found at configure time); use "
             "--device cpu");
    const int count = cuda_device_count();
    ND_CHECK(count > 0, "--device ", spec, ": no CUDA device is visible; use --device cpu");
    ND_CHECK(index >= 0 && index < count, "--device ", spec, ": only ", count,
             " CUDA device(s) visible");
    return Device::cuda(index);
  }
  ND_FAIL("bad device '", spec, "': expected cpu, cuda, cuda:N or auto");
}

}  // namespace nd
