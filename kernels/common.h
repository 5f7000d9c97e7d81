// Types every kernel family shares: the CUDA stream handle (declared without the CUDA headers so
// CPU-only builds compile), the scratch-memory interface that engine/ implements, and the
// broadcast layout of elementwise ops. Kernels see raw pointers and sizes, never engine types.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/constants.h"
#include "core/error.h"

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;  // identical to the CUDA runtime's own typedef
struct CUevent_st;
typedef struct CUevent_st* cudaEvent_t;  // likewise

namespace nd::kernels {

// How the CUDA kernels of cuBLAS and cuDNN may compute: TF32 tensor cores for float32
// convolutions and GEMMs (off: full FP32, close to the CPU reference), and only deterministic
// cuDNN algorithms (bitwise repeatable). Process-wide; no effect on the CPU kernels.
struct GpuMathMode {
  bool tf32 = false;
  bool deterministic = false;
};
void set_gpu_math_mode(const GpuMathMode& m);
GpuMathMode gpu_math_mode();

// Temporary device memory for one call (cuDNN workspaces, reduction buffers). Buffers stay valid
// until the Scratch object is destroyed; engine/ backs it with the caching allocator.
class Scratch {
 public:
  virtual ~Scratch() = default;
  virtual void* get(size_t bytes) = 0;
};

// Output is contiguous with `shape`; a and b are read through their own strides, where a stride
// of 0 broadcasts that dimension.
struct BroadcastLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride_a[kMaxDims] = {};
  int64_t stride_b[kMaxDims] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
};

// A strided view to be copied into a contiguous buffer of the same shape.
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
};

}  // namespace nd::kernels
