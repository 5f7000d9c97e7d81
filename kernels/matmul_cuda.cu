// CUDA matmul family (see matmul.h): row-major, optionally batched C = alpha op(A) op(B) + beta C
// through cuBLAS. cuBLAS is column-major and a row-major matrix with leading dimension ld is the
// column-major view of its transpose, so we compute C^T = op(B)^T op(A)^T: pass B before A and
// swap m and n, keeping each operand's own trans flag. The handle runs with CUBLAS_DEFAULT_MATH
// (set in cuda_runtime.cu), so no TF32 is used and results track the CPU reference.
#include <climits>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/matmul.h"

namespace nd::kernels {

namespace {

// k == 0: op(A) op(B) is empty, so C = beta * C (0 when beta == 0, as BLAS does).
__global__ void scale_c_kernel(float* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c,
                               int64_t total, float beta) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t col = t % n;
    const int64_t row = (t / n) % m;
    const int64_t batch = t / (n * m);
    float* p = c + batch * stride_c + row * ldc + col;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

bool fits_int(int64_t v) {
  return v >= 0 && v <= INT_MAX;
}

}  // namespace

void gemm_cuda(const GemmShape& g, double alpha, const float* a, const float* b, double beta,
               float* c, cudaStream_t s) {
  ND_CHECK(fits_int(g.m) && fits_int(g.n) && fits_int(g.k) && fits_int(g.lda) && fits_int(g.ldb) &&
               fits_int(g.ldc) && fits_int(g.batch),
           "gemm_cuda: sizes must lie in [0, INT_MAX] for cuBLAS (m ", g.m, ", n ", g.n, ", k ",
           g.k, ", lda ", g.lda, ", ldb ", g.ldb, ", ldc ", g.ldc, ", batch ", g.batch, ")");
  if (g.m == 0 || g.n == 0 || g.batch == 0) return;
  const float alpha_f = static_cast<float>(alpha);
  const float beta_f = static_cast<float>(beta);
  if (g.k == 0) {
    const int64_t total = g.batch * g.m * g.n;
    constexpr int kBlock = 256;
    ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, s, scale_c_kernel)
    (c, g.m, g.n, g.ldc, g.stride_c, total, beta_f);
    return;
  }
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = static_cast<int>(g.m), n = static_cast<int>(g.n), k = static_cast<int>(g.k);
  const int lda = static_cast<int>(g.lda), ldb = static_cast<int>(g.ldb);
  const int ldc = static_cast<int>(g.ldc);
  cublasHandle_t h = cublas_handle(s);
  if (g.batch == 1) {
    ND_CUBLAS_CHECK(cublasSgemm(h, op_b, op_a, n, m, k, &alpha_f, b, ldb, a, lda, &beta_f, c, ldc));
  } else {
    ND_CUBLAS_CHECK(cublasSgemmStridedBatched(
        h, op_b, op_a, n, m, k, &alpha_f, b, ldb, static_cast<long long>(g.stride_b), a, lda,
        static_cast<long long>(g.stride_a), &beta_f, c, ldc, static_cast<long long>(g.stride_c),
        static_cast<int>(g.batch)));
  }
}

}  // namespace nd::kernels
