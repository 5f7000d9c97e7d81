// CPU matmul through OpenBLAS (row-major cblas_?gemm, looped over the batch; cblas_?syrk).
#include <cblas.h>

#include "kernels/cpu_parallel.h"
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
  const SerialScope serial(g.m * g.n * g.k < kMinParallelMacs);
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

namespace {
void syrk_one(int64_t n, int64_t k, double alpha, const float* a, int64_t lda, double beta,
              float* c) {
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n), int(k), float(alpha), a, int(lda),
              float(beta), c, int(n));
}
void syrk_one(int64_t n, int64_t k, double alpha, const double* a, int64_t lda, double beta,
              double* c) {
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, int(n), int(k), alpha, a, int(lda), beta, c,
              int(n));
}
}  // namespace

template <typename T>
void syrk_cpu(int64_t n, int64_t k, double alpha, const T* a, int64_t lda, double beta, T* c) {
  if (n == 0) return;
  ND_CHECK(k <= INT32_MAX, "syrk_cpu: ", k, " rows exceed BLAS's int");
  {
    const SerialScope serial(n * n * k / 2 < kMinParallelMacs);
    syrk_one(n, k, alpha, a, lda, beta, c);
  }
  for (int64_t i = 0; i < n; ++i)  // mirror the upper triangle
    for (int64_t j = 0; j < i; ++j) c[i * n + j] = c[j * n + i];
}

template void syrk_cpu<float>(int64_t, int64_t, double, const float*, int64_t, double, float*);
template void syrk_cpu<double>(int64_t, int64_t, double, const double*, int64_t, double, double*);
template void gemm_cpu<float>(const GemmShape&, double, const float*, const float*, double, float*);
template void gemm_cpu<double>(const GemmShape&, double, const double*, const double*, double,
                               double*);

}  // namespace nd::kernels
