// Devices of tensors (their element types are core/dtype.h).
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace nd {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const {
    return type == o.type && (is_cpu() || index == o.index);
  }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
};

// True when this binary was built with CUDA kernels.
bool cuda_built();
// Number of usable CUDA devices (0 without a driver, a device, or a CUDA build).
int cuda_device_count();
// True in the device-emulation build (emu/): its CUDA devices run on the CPU, for tests, so
// --device auto does not pick them; --device cuda does.
bool cuda_emulated();
// Waits for all queued work on `d` (a no-op for the CPU), e.g. before reading a clock.
void synchronize(Device d);
// GPU math of convolutions and GEMMs (kernels/common.h): TF32 tensor cores (--tf32) and
// deterministic cuDNN algorithms only (--deterministic). Both off by default.
struct GpuMath {
  bool tf32 = false;
  bool deterministic = false;
};
void set_gpu_math(const GpuMath& m);
GpuMath gpu_math();
// "auto" -> cuda:0 when a device exists, else cpu; "cpu"; "cuda" / "cuda:N". Throws on others.
Device parse_device(const std::string& spec);

}  // namespace nd
