// Check macros for CUDA-side code, plus the per-device library handles and the grid-size helper.
// ND_CUDA_CHECK, ND_CUBLAS_CHECK, ND_CUDNN_CHECK and ND_CUSOLVER_CHECK throw nd::Error carrying the
// failed statement and the library's error name and text (and file:line with ND_DEBUG=1); a
// failed device allocation throws nd::OutOfMemoryError. Kernels launch through ND_LAUNCH
// (kernels/cuda_launch.h), which checks the launch. Included only by .cu files: it pulls in the
// CUDA, cuBLAS, cuDNN and cuSOLVER headers.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/common.h"
#include "kernels/cuda_launch.h"

namespace nd::kernels {

namespace detail {

inline const char* cusolver_status_name(cusolverStatus_t s) {
  switch (s) {
    case CUSOLVER_STATUS_SUCCESS:
      return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED:
      return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED:
      return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE:
      return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH:
      return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR:
      return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED:
      return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR:
      return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_ZERO_PIVOT:
      return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_LICENSE:
      return "CUSOLVER_STATUS_INVALID_LICENSE";
    case CUSOLVER_STATUS_INVALID_WORKSPACE:
      return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default:
      return "CUSOLVER_STATUS_<other>";
  }
}

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* stmt, const char* file,
                                          int line) {
  // Clear a non-sticky error so the next unrelated check does not report it again.
  (void)cudaGetLastError();
  std::string msg = ::nd::detail::location_prefix(file, line) +
                    ::nd::detail::concat(stmt, " failed: ", cudaGetErrorName(e), " (",
                                         cudaGetErrorString(e), ")");
  if (e == cudaErrorMemoryAllocation) {
    throw ::nd::OutOfMemoryError(msg + "; the GPU is out of memory: reduce --batch-size");
  }
  throw ::nd::Error(msg);
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t e, const char* stmt, const char* file,
                                            int line) {
  std::string msg = ::nd::detail::location_prefix(file, line) +
                    ::nd::detail::concat(stmt, " failed: ", cublasGetStatusName(e), " (",
                                         cublasGetStatusString(e), ")");
  if (e == CUBLAS_STATUS_ALLOC_FAILED) throw ::nd::OutOfMemoryError(msg);
  throw ::nd::Error(msg);
}

[[noreturn]] inline void throw_cudnn_error(cudnnStatus_t e, const char* stmt, const char* file,
                                           int line) {
  std::string msg =
      ::nd::detail::location_prefix(file, line) +
      ::nd::detail::concat(stmt, " failed: ", cudnnGetErrorString(e), " (status ", int(e), ")");
  if (e == CUDNN_STATUS_ALLOC_FAILED) throw ::nd::OutOfMemoryError(msg);
  throw ::nd::Error(msg);
}

[[noreturn]] inline void throw_cusolver_error(cusolverStatus_t e, const char* stmt,
                                              const char* file, int line) {
  std::string msg =
      ::nd::detail::location_prefix(file, line) +
      ::nd::detail::concat(stmt, " failed: ", cusolver_status_name(e), " (status ", int(e), ")");
  if (e == CUSOLVER_STATUS_ALLOC_FAILED) throw ::nd::OutOfMemoryError(msg);
  throw ::nd::Error(msg);
}

}  // namespace detail

// Library handles for the current device, created on first use (one per device, guarded by a
// mutex) and bound to stream s on every call. All engine work on a device shares one stream, so
// rebinding per call is safe; they live for the whole process.
cublasHandle_t cublas_handle(cudaStream_t s);
cudnnHandle_t cudnn_handle(cudaStream_t s);
cusolverDnHandle_t cusolver_handle(cudaStream_t s);

// Blocks for a grid-stride loop over n items: enough to fill an H100/H200 many times over, capped
// so launches stay cheap; kernels loop over the rest, so any int64 n works. Never returns 0.
inline int grid_for(int64_t n, int block) {
  constexpr int64_t kMaxBlocks = 16384;
  const int64_t blocks = (n + block - 1) / block;
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

}  // namespace nd::kernels

#define ND_CUDA_CHECK(stmt)                                                        \
  do {                                                                             \
    const cudaError_t nd_err_ = (stmt);                                            \
    if (nd_err_ != cudaSuccess)                                                    \
      ::nd::kernels::detail::throw_cuda_error(nd_err_, #stmt, __FILE__, __LINE__); \
  } while (0)

#define ND_CUBLAS_CHECK(stmt)                                                        \
  do {                                                                               \
    const cublasStatus_t nd_err_ = (stmt);                                           \
    if (nd_err_ != CUBLAS_STATUS_SUCCESS)                                            \
      ::nd::kernels::detail::throw_cublas_error(nd_err_, #stmt, __FILE__, __LINE__); \
  } while (0)

#define ND_CUDNN_CHECK(stmt)                                                        \
  do {                                                                              \
    const cudnnStatus_t nd_err_ = (stmt);                                           \
    if (nd_err_ != CUDNN_STATUS_SUCCESS)                                            \
      ::nd::kernels::detail::throw_cudnn_error(nd_err_, #stmt, __FILE__, __LINE__); \
  } while (0)

#define ND_CUSOLVER_CHECK(stmt)                                                        \
  do {                                                                                 \
    const cusolverStatus_t nd_err_ = (stmt);                                           \
    if (nd_err_ != CUSOLVER_STATUS_SUCCESS)                                            \
      ::nd::kernels::detail::throw_cusolver_error(nd_err_, #stmt, __FILE__, __LINE__); \
  } while (0)
