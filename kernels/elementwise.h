// Elementwise family: unary activations and their backward, broadcasting binary arithmetic,
// y = alpha * x + beta, fill, strided copy and dtype casts. CPU versions are templated on
// float/double (double serves the gradient checks); CUDA versions are float32 only except copy,
// fill and cast which move any element type.
#pragma once
#include "core/dtype.h"
#include "kernels/common.h"

namespace nd::kernels {

enum class UnaryOp { Relu, Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Square, Silu, Abs };
enum class BinaryOp { Add, Sub, Mul, Div };

template <typename T>
void unary_forward_cpu(UnaryOp op, const T* x, T* y, int64_t n);
// dx = dy * f'(x); y = f(x) is passed because sigmoid/tanh/exp/sqrt derive from it.
template <typename T>
void unary_backward_cpu(UnaryOp op, const T* x, const T* y, const T* dy, T* dx, int64_t n);
template <typename T>
void binary_forward_cpu(BinaryOp op, const T* a, const T* b, T* out, const BroadcastLayout& l);
template <typename T>
void affine_cpu(const T* x, T* y, int64_t n, double alpha, double beta);

// Fill n elements of type t with value (converted to t).
void fill_cpu(void* y, DType t, int64_t n, double value);
// Gather a strided view (element offsets relative to src) into contiguous dst.
void copy_strided_cpu(const void* src, void* dst, DType t, const StridedLayout& l);
// The reverse: contiguous src written into the strided view l of dst (no overlapping elements).
void scatter_strided_cpu(const void* src, void* dst, DType t, const StridedLayout& l);
void cast_cpu(const void* src, DType from, void* dst, DType to, int64_t n);

void unary_forward_cuda(UnaryOp op, const float* x, float* y, int64_t n, cudaStream_t s);
void unary_backward_cuda(UnaryOp op, const float* x, const float* y, const float* dy, float* dx,
                         int64_t n, cudaStream_t s);
void binary_forward_cuda(BinaryOp op, const float* a, const float* b, float* out,
                         const BroadcastLayout& l, cudaStream_t s);
void affine_cuda(const float* x, float* y, int64_t n, double alpha, double beta, cudaStream_t s);
void fill_cuda(void* y, DType t, int64_t n, double value, cudaStream_t s);
void copy_strided_cuda(const void* src, void* dst, DType t, const StridedLayout& l, cudaStream_t s);
void scatter_strided_cuda(const void* src, void* dst, DType t, const StridedLayout& l,
                          cudaStream_t s);
void cast_cuda(const void* src, DType from, void* dst, DType to, int64_t n, cudaStream_t s);

}  // namespace nd::kernels
