// Matrix multiplication family, row-major: C = alpha * op(A) op(B) + beta * C, with op(X) = X or
// X^T, and the symmetric A^T A. CPU: OpenBLAS (sgemm/dgemm, ssyrk/dsyrk); CUDA: cuBLAS with TF32
// disabled. Batched variants take element strides between consecutive matrices.
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

// The symmetric product C (n x n) = alpha A^T A + beta C of a row-major A (k x n, leading
// dimension lda) through BLAS ?syrk; both triangles of C are written.
template <typename T>
void syrk_cpu(int64_t n, int64_t k, double alpha, const T* a, int64_t lda, double beta, T* c);

void gemm_cuda(const GemmShape& g, double alpha, const float* a, const float* b, double beta,
               float* c, cudaStream_t s);

}  // namespace nd::kernels
