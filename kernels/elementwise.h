// Elementwise family: unary activations and their backward, broadcasting binary arithmetic,
// y = alpha * x + beta, fill, strided copy and dtype casts. CPU versions are templated on
// float/double (double serves the gradient checks); CUDA versions are float32 only except copy,
// fill and cast which move any element type.
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

enum class UnaryOp { Relu, Sigmoid, Tanh, Exp, Log, Sqrt, Neg, Square, Silu, Abs };
enum class BinaryOp { Add, Sub, Mul, Div };

// Element type codes for copy/fill/cast (same order as nd::DType).
enum class ElemType { F32, F64, I32, I64, U8 };
size_t elem_size(ElemType t);

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
void fill_cpu(void* y, ElemType t, int64_t n, double value);
// Gather a strided view (element offsets relative to src) into contiguous dst.
void copy_strided_cpu(const void* src, void* dst, ElemType t, const StridedLayout& l);
// The reverse: contiguous src written into the strided view l of dst (no overlapping elements).
void scatter_strided_cpu(const void* src, void* dst, ElemType t, const StridedLayout& l);
void cast_cpu(const void* src, ElemType from, void* dst, ElemType to, int64_t n);

void unary_forward_cuda(UnaryOp op, const float* x, float* y, int64_t n, cudaStream_t s);
void unary_backward_cuda(UnaryOp op, const float* x, const float* y, const float* dy, float* dx,
                         int64_t n, cudaStream_t s);
void binary_forward_cuda(BinaryOp op, const float* a, const float* b, float* out,
                         const BroadcastLayout& l, cudaStream_t s);
void affine_cuda(const float* x, float* y, int64_t n, double alpha, double beta, cudaStream_t s);
void fill_cuda(void* y, ElemType t, int64_t n, double value, cudaStream_t s);
void copy_strided_cuda(const void* src, void* dst, ElemType t, const StridedLayout& l,
                       cudaStream_t s);
void scatter_strided_cuda(const void* src, void* dst, ElemType t, const StridedLayout& l,
                          cudaStream_t s);
void cast_cuda(const void* src, ElemType from, void* dst, ElemType to, int64_t n, cudaStream_t s);

}  // namespace nd::kernels
