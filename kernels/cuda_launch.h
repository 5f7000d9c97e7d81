// The one launch form and the shared-memory declarations of every CUDA kernel, so the same .cu
// sources compile with nvcc and in the device-emulation build (emu/, whose cuda_runtime.h
// defines ND_EMU_LAUNCH):
//   ND_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...);  // launch, then check it
//   ND_SHARED(float, tile, [32][33]);   // __shared__ float tile[32][33];
//   ND_DYNAMIC_SHARED(float, smem);     // extern __shared__ float smem[];
// The kernel comes last so a template-id with commas needs no parentheses. The check throws
// nd::Error for a bad configuration (and for an earlier sticky fault), as ND_CUDA_CHECK does.
#pragma once
#include <cuda_runtime.h>

namespace nd::kernels::detail {

[[noreturn]] void throw_launch_error(cudaError_t e, const char* kernel, const char* file, int line);
void count_kernel_launch();  // for cuda_activity()

// Checks the launch of the full expression it is part of when it ends.
class LaunchCheck {
 public:
  LaunchCheck(const char* kernel, const char* file, int line)
      : kernel_(kernel), file_(file), line_(line) {
    count_kernel_launch();
  }
  ~LaunchCheck() noexcept(false) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw_launch_error(e, kernel_, file_, line_);
  }
  LaunchCheck(const LaunchCheck&) = delete;
  LaunchCheck& operator=(const LaunchCheck&) = delete;

 private:
  const char* kernel_;
  const char* file_;
  int line_;
};

}  // namespace nd::kernels::detail

#if defined(ND_EMU_LAUNCH)
#define ND_KERNEL_LAUNCH_(grid, block, smem, stream, ...) \
  ND_EMU_LAUNCH(grid, block, smem, stream, __VA_ARGS__)
#define ND_SHARED(type, name, dims) ND_EMU_SHARED(type, name, dims)
#define ND_DYNAMIC_SHARED(type, name) ND_EMU_DYNAMIC_SHARED(type, name)
#else
#define ND_KERNEL_LAUNCH_(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#define ND_SHARED(type, name, dims) __shared__ type name dims
#define ND_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

#define ND_LAUNCH(grid, block, smem, stream, ...)                       \
  ::nd::kernels::detail::LaunchCheck(#__VA_ARGS__, __FILE__, __LINE__), \
      ND_KERNEL_LAUNCH_(grid, block, smem, stream, __VA_ARGS__)
