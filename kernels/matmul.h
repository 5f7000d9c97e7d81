// Matrix multiplication family, row-major: C = alpha * op(A) op(B) + beta * C, with op(X) = X or
// X^T. CPU: OpenBLAS (sgemm/dgemm); CUDA: cuBLAS with TF32 disabled. Batched variants take
// element strides between consecutive matrices.
#pragma once
#include "kernels/common.h"

namespace nd::kernels {

struct GemmShape {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;  // op(A): m x k, op(B): k x n, C: m x n
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

template <typename T>
void gemm_cpu(const GemmShape& g, double alpha, const T* a, const T* b, double beta, T* c);

void gemm_cuda(const GemmShape& g, double alpha, const float* a, const float* b, double beta,
               float* c, cudaStream_t s);

}  // namespace nd::kernels
