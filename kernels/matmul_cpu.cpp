// CPU matmul through OpenBLAS (row-major cblas_?gemm, looped over the batch).
#include <cblas.h>

#include "kernels/matmul.h"

namespace nd::kernels {

namespace {
void gemm_one(const GemmShape& g, double alpha, const float* a, const float* b, double beta,
              float* c) {
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, int(g.m), int(g.n), int(g.k), float(alpha), a,
              int(g.lda), b, int(g.ldb), float(beta), c, int(g.ldc));
}
void gemm_one(const GemmShape& g, double alpha, const double* a, const double* b, double beta,
              double* c) {
  cblas_dgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, int(g.m), int(g.n), int(g.k), alpha, a,
              int(g.lda), b, int(g.ldb), beta, c, int(g.ldc));
}
}  // namespace

template <typename T>
void gemm_cpu(const GemmShape& g, double alpha, const T* a, const T* b, double beta, T* c) {
  if (g.m == 0 || g.n == 0) return;
  for (int64_t i = 0; i < g.batch; ++i) {
    T* ci = c + i * g.stride_c;
    if (g.k == 0) {  // op(A) op(B) is empty: C = beta * C, overwritten with 0 when beta == 0
      for (int64_t r = 0; r < g.m; ++r)
        for (int64_t col = 0; col < g.n; ++col) {
          T& v = ci[r * g.ldc + col];
          v = beta == 0 ? T(0) : T(beta) * v;  // 0 * NaN garbage would stay NaN
        }
      continue;
    }
    gemm_one(g, alpha, a + i * g.stride_a, b + i * g.stride_b, beta, ci);
  }
}

template void gemm_cpu<float>(const GemmShape&, double, const float*, const float*, double, float*);
template void gemm_cpu<double>(const GemmShape&, double, const double*, const double*, double,
                               double*);

}  // namespace nd::kernels
