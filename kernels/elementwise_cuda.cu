// CUDA elementwise family (see elementwise.h): unary activations and their backward, broadcasting
// binary arithmetic, y = alpha * x + beta (float32), and fill, strided copy and casts for every
// element type. All kernels use grid-stride loops so int64 sizes work. Strided layouts are first
// coalesced on the host (size-1 dims dropped, mergeable neighbours fused) so most calls reach the
// contiguous fast path or need few index divisions.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda_check.h"
#include "kernels/elementwise.h"

namespace nd::kernels {

namespace {

constexpr int kBlock = 256;

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__device__ __forceinline__ float sigmoidf(float x) {
  return 1.0f / (1.0f + expf(-x));
}

template <UnaryOp Op>
__device__ __forceinline__ float unary_value(float x) {
  if constexpr (Op == UnaryOp::Relu) return x > 0.0f ? x : 0.0f;
  if constexpr (Op == UnaryOp::Sigmoid) return sigmoidf(x);
  if constexpr (Op == UnaryOp::Tanh) return tanhf(x);
  if constexpr (Op == UnaryOp::Exp) return expf(x);
  if constexpr (Op == UnaryOp::Log) return logf(x);
  if constexpr (Op == UnaryOp::Sqrt) return sqrtf(x);
  if constexpr (Op == UnaryOp::Neg) return -x;
  if constexpr (Op == UnaryOp::Square) return x * x;
  if constexpr (Op == UnaryOp::Silu) return x * sigmoidf(x);
  if constexpr (Op == UnaryOp::Abs) return fabsf(x);
  return 0.0f;
}

// dx = dy * f'(x), using y = f(x) where the derivative is cheaper from it.
template <UnaryOp Op>
__device__ __forceinline__ float unary_grad(float x, float y, float dy) {
  if constexpr (Op == UnaryOp::Relu) return x > 0.0f ? dy : 0.0f;
  if constexpr (Op == UnaryOp::Sigmoid) return dy * y * (1.0f - y);
  if constexpr (Op == UnaryOp::Tanh) return dy * (1.0f - y * y);
  if constexpr (Op == UnaryOp::Exp) return dy * y;
  if constexpr (Op == UnaryOp::Log) return dy / x;
  if constexpr (Op == UnaryOp::Sqrt) return dy * 0.5f / y;
  if constexpr (Op == UnaryOp::Neg) return -dy;
  if constexpr (Op == UnaryOp::Square) return dy * 2.0f * x;
  if constexpr (Op == UnaryOp::Silu) {
    const float s = sigmoidf(x);
    return dy * s * (1.0f + x * (1.0f - s));
  }
  if constexpr (Op == UnaryOp::Abs) return x > 0.0f ? dy : (x < 0.0f ? -dy : 0.0f);
  return 0.0f;
}

// No __restrict__ on elementwise kernels: callers may run them in place (y == x).
template <UnaryOp Op>
__global__ void unary_forward_kernel(const float* x, float* y, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) y[i] = unary_value<Op>(x[i]);
}

template <UnaryOp Op>
__global__ void unary_backward_kernel(const float* x, const float* y, const float* dy, float* dx,
                                      int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    // Only read the inputs the derivative needs (the caller may pass null for the others).
    const bool needs_x = Op == UnaryOp::Relu || Op == UnaryOp::Log || Op == UnaryOp::Square ||
                         Op == UnaryOp::Silu || Op == UnaryOp::Abs;
    const bool needs_y =
        Op == UnaryOp::Sigmoid || Op == UnaryOp::Tanh || Op == UnaryOp::Exp || Op == UnaryOp::Sqrt;
    const float xi = needs_x ? x[i] : 0.0f;
    const float yi = needs_y ? y[i] : 0.0f;
    dx[i] = unary_grad<Op>(xi, yi, dy[i]);
  }
}

template <BinaryOp Op>
__device__ __forceinline__ float binary_value(float a, float b) {
  if constexpr (Op == BinaryOp::Add) return a + b;
  if constexpr (Op == BinaryOp::Sub) return a - b;
  if constexpr (Op == BinaryOp::Mul) return a * b;
  if constexpr (Op == BinaryOp::Div) return a / b;
  return 0.0f;
}

template <BinaryOp Op>
__global__ void binary_contiguous_kernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    out[i] = binary_value<Op>(a[i], b[i]);
  }
}

// General broadcast: split the linear output index into coordinates (last dim fastest) and dot
// them with each operand's strides. Idx is int32 when numel fits, since 64-bit division is slow;
// memory offsets stay int64 either way.
template <BinaryOp Op, typename Idx>
__global__ void binary_strided_kernel(const float* a, const float* b, float* out, BroadcastLayout l,
                                      int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    Idx rem = static_cast<Idx>(i);
    int64_t off_a = 0, off_b = 0;
    for (int d = l.ndim - 1; d > 0; --d) {
      const Idx size = static_cast<Idx>(l.shape[d]);
      const Idx coord = rem % size;
      rem /= size;
      off_a += coord * l.stride_a[d];
      off_b += coord * l.stride_b[d];
    }
    if (l.ndim > 0) {  // the outermost coordinate is what remains
      off_a += rem * l.stride_a[0];
      off_b += rem * l.stride_b[0];
    }
    out[i] = binary_value<Op>(a[off_a], b[off_b]);
  }
}

__global__ void affine_kernel(const float* x, float* y, int64_t n, float alpha, float beta) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) y[i] = alpha * x[i] + beta;
}

template <typename T>
__global__ void fill_kernel(T* y, int64_t n, T value) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) y[i] = value;
}

// Gather (dst contiguous, src read through l) or, with kScatter, the reverse.
template <typename T, typename Idx, bool kScatter>
__global__ void copy_strided_kernel(const T* src, T* dst, StridedLayout l, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) {
    Idx rem = static_cast<Idx>(i);
    int64_t off = 0;
    for (int d = l.ndim - 1; d > 0; --d) {
      const Idx size = static_cast<Idx>(l.shape[d]);
      off += (rem % size) * l.stride[d];
      rem /= size;
    }
    if (l.ndim > 0) off += rem * l.stride[0];
    if (kScatter) {
      dst[off] = src[i];
    } else {
      dst[i] = src[off];
    }
  }
}

template <typename From, typename To>
__global__ void cast_kernel(const From* src, To* dst, int64_t n) {
  for (int64_t i = thread_index(); i < n; i += thread_stride()) dst[i] = static_cast<To>(src[i]);
}

// Drop size-1 dims and fuse neighbours (outer p, inner d) whose strides satisfy
// stride[p] == stride[d] * shape[d] for both operands; the contiguous output always fuses.
BroadcastLayout coalesce(const BroadcastLayout& in) {
  BroadcastLayout out;
  for (int d = 0; d < in.ndim; ++d) {
    if (in.shape[d] == 1) continue;
    if (out.ndim > 0) {
      const int p = out.ndim - 1;
      if (out.stride_a[p] == in.stride_a[d] * in.shape[d] &&
          out.stride_b[p] == in.stride_b[d] * in.shape[d]) {
        out.shape[p] *= in.shape[d];
        out.stride_a[p] = in.stride_a[d];
        out.stride_b[p] = in.stride_b[d];
        continue;
      }
    }
    out.shape[out.ndim] = in.shape[d];
    out.stride_a[out.ndim] = in.stride_a[d];
    out.stride_b[out.ndim] = in.stride_b[d];
    ++out.ndim;
  }
  return out;
}

StridedLayout coalesce(const StridedLayout& in) {
  StridedLayout out;
  for (int d = 0; d < in.ndim; ++d) {
    if (in.shape[d] == 1) continue;
    if (out.ndim > 0) {
      const int p = out.ndim - 1;
      if (out.stride[p] == in.stride[d] * in.shape[d]) {
        out.shape[p] *= in.shape[d];
        out.stride[p] = in.stride[d];
        continue;
      }
    }
    out.shape[out.ndim] = in.shape[d];
    out.stride[out.ndim] = in.stride[d];
    ++out.ndim;
  }
  return out;
}

constexpr int64_t kInt32Max = 2147483647;

template <BinaryOp Op>
void launch_binary(const float* a, const float* b, float* out, const BroadcastLayout& in,
                   cudaStream_t s) {
  const int64_t n = in.numel();
  const BroadcastLayout l = coalesce(in);
  const int grid = grid_for(n, kBlock);
  const bool contiguous = l.ndim == 0 || (l.ndim == 1 && l.stride_a[0] == 1 && l.stride_b[0] == 1);
  if (contiguous) {
    ND_LAUNCH(grid, kBlock, 0, s, binary_contiguous_kernel<Op>)(a, b, out, n);
  } else if (n <= kInt32Max) {
    ND_LAUNCH(grid, kBlock, 0, s, binary_strided_kernel<Op, int32_t>)(a, b, out, l, n);
  } else {
    ND_LAUNCH(grid, kBlock, 0, s, binary_strided_kernel<Op, int64_t>)(a, b, out, l, n);
  }
}

template <typename T>
void launch_fill(void* y, int64_t n, T value, cudaStream_t s) {
  ND_LAUNCH(grid_for(n, kBlock), kBlock, 0, s, fill_kernel<T>)(static_cast<T*>(y), n, value);
}

template <typename T, bool kScatter>
void launch_copy_strided(const void* src, void* dst, const StridedLayout& l, int64_t n,
                         cudaStream_t s) {
  const int grid = grid_for(n, kBlock);
  const T* from = static_cast<const T*>(src);
  T* to = static_cast<T*>(dst);
  if (n <= kInt32Max) {
    ND_LAUNCH(grid, kBlock, 0, s, copy_strided_kernel<T, int32_t, kScatter>)(from, to, l, n);
  } else {
    ND_LAUNCH(grid, kBlock, 0, s, copy_strided_kernel<T, int64_t, kScatter>)(from, to, l, n);
  }
}

template <typename From, typename To>
void launch_cast(const void* src, void* dst, int64_t n, cudaStream_t s) {
  ND_LAUNCH(grid_for(n, kBlock), kBlock, 0, s, cast_kernel<From, To>)
  (static_cast<const From*>(src), static_cast<To*>(dst), n);
}

template <typename From>
void cast_from(const void* src, void* dst, DType to, int64_t n, cudaStream_t s) {
  switch (to) {
    case DType::F32:
      launch_cast<From, float>(src, dst, n, s);
      return;
    case DType::F64:
      launch_cast<From, double>(src, dst, n, s);
      return;
    case DType::I32:
      launch_cast<From, int32_t>(src, dst, n, s);
      return;
    case DType::I64:
      launch_cast<From, int64_t>(src, dst, n, s);
      return;
    case DType::U8:
      launch_cast<From, uint8_t>(src, dst, n, s);
      return;
  }
  ND_FAIL("cast_cuda: unknown target element type ", static_cast<int>(to));
}

// Calls f(std::integral_constant<UnaryOp, op>{}) so a runtime op picks a compile-time kernel.
template <typename F>
void with_unary_op(UnaryOp op, F&& f) {
  using std::integral_constant;
  switch (op) {
    case UnaryOp::Relu:
      return f(integral_constant<UnaryOp, UnaryOp::Relu>{});
    case UnaryOp::Sigmoid:
      return f(integral_constant<UnaryOp, UnaryOp::Sigmoid>{});
    case UnaryOp::Tanh:
      return f(integral_constant<UnaryOp, UnaryOp::Tanh>{});
    case UnaryOp::Exp:
      return f(integral_constant<UnaryOp, UnaryOp::Exp>{});
    case UnaryOp::Log:
      return f(integral_constant<UnaryOp, UnaryOp::Log>{});
    case UnaryOp::Sqrt:
      return f(integral_constant<UnaryOp, UnaryOp::Sqrt>{});
    case UnaryOp::Neg:
      return f(integral_constant<UnaryOp, UnaryOp::Neg>{});
    case UnaryOp::Square:
      return f(integral_constant<UnaryOp, UnaryOp::Square>{});
    case UnaryOp::Silu:
      return f(integral_constant<UnaryOp, UnaryOp::Silu>{});
    case UnaryOp::Abs:
      return f(integral_constant<UnaryOp, UnaryOp::Abs>{});
  }
  ND_FAIL("unknown UnaryOp ", static_cast<int>(op));
}

}  // namespace

void unary_forward_cuda(UnaryOp op, const float* x, float* y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const int grid = grid_for(n, kBlock);
  with_unary_op(op, [&](auto tag) {
    ND_LAUNCH(grid, kBlock, 0, s, unary_forward_kernel<decltype(tag)::value>)(x, y, n);
  });
}

void unary_backward_cuda(UnaryOp op, const float* x, const float* y, const float* dy, float* dx,
                         int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const int grid = grid_for(n, kBlock);
  with_unary_op(op, [&](auto tag) {
    ND_LAUNCH(grid, kBlock, 0, s, unary_backward_kernel<decltype(tag)::value>)(x, y, dy, dx, n);
  });
}

void binary_forward_cuda(BinaryOp op, const float* a, const float* b, float* out,
                         const BroadcastLayout& l, cudaStream_t s) {
  ND_CHECK(l.ndim >= 0 && l.ndim <= kMaxDims, "binary_forward_cuda: ndim ", l.ndim, " outside [0, ",
           kMaxDims, "]");
  if (l.numel() <= 0) return;
  switch (op) {
    case BinaryOp::Add:
      launch_binary<BinaryOp::Add>(a, b, out, l, s);
      return;
    case BinaryOp::Sub:
      launch_binary<BinaryOp::Sub>(a, b, out, l, s);
      return;
    case BinaryOp::Mul:
      launch_binary<BinaryOp::Mul>(a, b, out, l, s);
      return;
    case BinaryOp::Div:
      launch_binary<BinaryOp::Div>(a, b, out, l, s);
      return;
  }
  ND_FAIL("binary_forward_cuda: unknown op ", static_cast<int>(op));
}

void affine_cuda(const float* x, float* y, int64_t n, double alpha, double beta, cudaStream_t s) {
  if (n <= 0) return;
  ND_LAUNCH(grid_for(n, kBlock), kBlock, 0, s, affine_kernel)
  (x, y, n, static_cast<float>(alpha), static_cast<float>(beta));
}

void fill_cuda(void* y, DType t, int64_t n, double value, cudaStream_t s) {
  if (n <= 0) return;
  // +0 is all-zero bytes in every element type: a memset is the cheapest fill.
  if (value == 0.0 && !std::signbit(value)) {
    ND_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(n) * dtype_size(t), s));
    return;
  }
  switch (t) {
    case DType::F32:
      launch_fill<float>(y, n, static_cast<float>(value), s);
      return;
    case DType::F64:
      launch_fill<double>(y, n, value, s);
      return;
    case DType::I32:
      launch_fill<int32_t>(y, n, static_cast<int32_t>(value), s);
      return;
    case DType::I64:
      launch_fill<int64_t>(y, n, static_cast<int64_t>(value), s);
      return;
    case DType::U8:
      launch_fill<uint8_t>(y, n, static_cast<uint8_t>(value), s);
      return;
  }
  ND_FAIL("fill_cuda: unknown element type ", static_cast<int>(t));
}

namespace {
template <bool kScatter>
void copy_strided_any(const char* what, const void* src, void* dst, DType t,
                      const StridedLayout& in, cudaStream_t s) {
  ND_CHECK(in.ndim >= 0 && in.ndim <= kMaxDims, what, ": ndim ", in.ndim, " outside [0, ", kMaxDims,
           "]");
  const int64_t n = in.numel();
  if (n <= 0) return;
  const size_t esize = dtype_size(t);
  const StridedLayout l = coalesce(in);
  if (l.ndim == 0 || (l.ndim == 1 && l.stride[0] == 1)) {  // already contiguous
    ND_CUDA_CHECK(
        cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * esize, cudaMemcpyDeviceToDevice, s));
    return;
  }
  switch (esize) {
    case 1:
      launch_copy_strided<uint8_t, kScatter>(src, dst, l, n, s);
      return;
    case 4:
      launch_copy_strided<uint32_t, kScatter>(src, dst, l, n, s);
      return;
    case 8:
      launch_copy_strided<uint64_t, kScatter>(src, dst, l, n, s);
      return;
  }
  ND_FAIL(what, ": unsupported element size ", esize);
}
}  // namespace

void copy_strided_cuda(const void* src, void* dst, DType t, const StridedLayout& l,
                       cudaStream_t s) {
  copy_strided_any<false>("copy_strided_cuda", src, dst, t, l, s);
}

void scatter_strided_cuda(const void* src, void* dst, DType t, const StridedLayout& l,
                          cudaStream_t s) {
  copy_strided_any<true>("scatter_strided_cuda", src, dst, t, l, s);
}

void cast_cuda(const void* src, DType from, void* dst, DType to, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  if (from == to) {
    ND_CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * dtype_size(from),
                                  cudaMemcpyDeviceToDevice, s));
    return;
  }
  switch (from) {
    case DType::F32:
      cast_from<float>(src, dst, to, n, s);
      return;
    case DType::F64:
      cast_from<double>(src, dst, to, n, s);
      return;
    case DType::I32:
      cast_from<int32_t>(src, dst, to, n, s);
      return;
    case DType::I64:
      cast_from<int64_t>(src, dst, to, n, s);
      return;
    case DType::U8:
      cast_from<uint8_t>(src, dst, to, n, s);
      return;
  }
  ND_FAIL("cast_cuda: unknown source element type ", static_cast<int>(from));
}

}  // namespace nd::kernels
