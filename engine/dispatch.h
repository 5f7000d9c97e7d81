// Internal to engine/: picks the CPU reference (with T = float or double) or the CUDA kernel
// (float32, on the tensor's device stream) for an op. A CUDA tensor never falls back to the CPU.
#pragma once
#include <initializer_list>

#include "engine/profile.h"
#include "engine/tensor.h"
#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace nd::detail {

// The one branch between the CPU and CUDA: cpu() on the host, cuda(stream) with the stream of
// `device` made current. Every op, copies and transfers included, passes here (and through the
// profiler's scope). Ops on raw bytes of any dtype (copies, casts, fills) call it directly.
template <typename CpuFn, typename CudaFn>
void dispatch_device(const char* op, Device device, CpuFn&& cpu, CudaFn&& cuda) {
  profile::OpScope scope(op, device);
  if (device.is_cuda()) {
#ifdef ND_WITH_CUDA
    kernels::cuda_set_device(device.index);
    cuda(kernels::cuda_stream(device.index));
#else
    (void)cuda;
    ND_FAIL(op, ": tensor on ", device.str(), " but this build has no CUDA support");
#endif
    return;
  }
  cpu();
}

// Floating-point ops: cpu(tag) is called with a float or double tag value; cuda(stream) with
// the device's stream (CUDA kernels take float32 only).
template <typename CpuFn, typename CudaFn>
void dispatch(const char* op, const Tensor& t, CpuFn&& cpu, CudaFn&& cuda) {
  if (t.device().is_cuda())
    ND_CHECK(t.dtype() == DType::F32, op, " on CUDA supports float32 only, got ",
             dtype_name(t.dtype()));
  dispatch_device(
      op, t.device(),
      [&] {
        switch (t.dtype()) {
          case DType::F32:
            cpu(float{});
            return;
          case DType::F64:
            cpu(double{});
            return;
          default:
            ND_FAIL(op, " needs a floating-point tensor, got ", dtype_name(t.dtype()));
        }
      },
      cuda);
}

inline void check_same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t || !t->defined()) continue;
    if (!first) {
      first = t;
      continue;
    }
    ND_CHECK(t->device() == first->device(), op, ": tensors on different devices (",
             first->device().str(), " and ", t->device().str(), ")");
    ND_CHECK(t->dtype() == first->dtype() || !is_floating(t->dtype()), op, ": mixed dtypes ",
             dtype_name(first->dtype()), " and ", dtype_name(t->dtype()));
  }
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

}  // namespace nd::detail
