// The cuBLAS stand-in (cublas_v2.h): argument checks at the call, the arithmetic queued on the
// handle's stream. Products run in double through OpenBLAS on double copies of the float operands,
// so the only float rounding is the final store (and the TF32 rounding of the inputs when asked).
#include <cblas.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

struct cublasContext {
  cudaStream_t stream = nullptr;
  cublasMath_t mode = CUBLAS_DEFAULT_MATH;
};

namespace {

// Live handles, so a destroyed or made-up handle is refused rather than dereferenced.
std::mutex g_mutex;
// Never destroyed: handles may be used from exit-time code.
std::unordered_set<cublasContext*>& g_handles = *new std::unordered_set<cublasContext*>;

bool snapshot(cublasHandle_t h, cublasContext* out) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!h || !g_handles.count(h)) return false;
  *out = *h;
  return true;
}

// cuBLAS reports bad arguments on stderr the way the reference BLAS's xerbla does.
cublasStatus_t bad_arg(const char* fn, int position, const std::string& why) {
  std::fprintf(stderr, "** On entry to %s parameter number %d had an illegal value (%s)\n", fn,
               position, why.c_str());
  return CUBLAS_STATUS_INVALID_VALUE;
}

bool valid_op(cublasOperation_t op) {
  return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

// Round to nearest even on the 13 mantissa bits TF32 drops; Inf and NaN pass unchanged.
float to_tf32(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  if ((b & 0x7f800000u) != 0x7f800000u) {
    b += 0xfffu + ((b >> 13) & 1u);
    b &= ~0x1fffu;
  }
  float r;
  std::memcpy(&r, &b, sizeof r);
  return r;
}

// Elements spanned by a stored rows x cols matrix with leading dimension ld (0 when empty).
int64_t span(int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return int64_t(cols - 1) * ld + rows;
}

// Checks that every matrix of a strided batch lies in one live allocation; the union of their
// spans is one range since a strided batch is a single buffer.
bool check_operand(const float* p, int rows, int cols, int ld, long long stride, int batch,
                   const char* fn, const char* name) {
  const int64_t one = span(rows, cols, ld);
  if (one == 0 || batch <= 0) return true;
  const int64_t last = int64_t(batch - 1) * stride;
  const int64_t lo = std::min<int64_t>(0, last), hi = std::max<int64_t>(0, last) + one;
  const char* first = reinterpret_cast<const char*>(p) + lo * int64_t(sizeof(float));
  std::string what = std::string(fn) + " operand " + name + " (" + std::to_string(rows) + " x " +
                     std::to_string(cols) + ", ld " + std::to_string(ld);
  if (batch > 1) what += ", stride " + std::to_string(stride) + ", batch " + std::to_string(batch);
  what += ")";
  return nd_emu::check_device_range(first, size_t(hi - lo) * sizeof(float), what.c_str());
}

// A stored rows x cols float matrix as a dense column-major double matrix (ld = rows).
void load(const float* p, int rows, int cols, int ld, bool tf32, std::vector<double>& out) {
  out.resize(size_t(rows) * size_t(cols));
  for (int j = 0; j < cols; ++j) {
    const float* col = p + int64_t(j) * ld;
    double* dst = out.data() + size_t(j) * size_t(rows);
    for (int i = 0; i < rows; ++i) dst[i] = tf32 ? to_tf32(col[i]) : col[i];
  }
}

CBLAS_TRANSPOSE cblas_op(cublasOperation_t op) {
  return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans;
}

// One column-major GEMM on host-readable memory (inside queued work).
void gemm_one(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
              const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc,
              bool tf32) {
  std::vector<double> cd(size_t(m) * size_t(n), 0.0);
  // beta == 0: C is write-only, so NaN or garbage there cannot leak into the result.
  if (beta != 0.0f) {
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) cd[size_t(j) * m + i] = double(beta) * c[int64_t(j) * ldc + i];
  }
  // alpha == 0 or k == 0: A and B are not read (BLAS semantics).
  if (alpha != 0.0f && k > 0) {
    const bool na = ta == CUBLAS_OP_N, nb = tb == CUBLAS_OP_N;
    std::vector<double> ad, bd;
    load(a, na ? m : k, na ? k : m, lda, tf32, ad);
    load(b, nb ? k : n, nb ? n : k, ldb, tf32, bd);
    cblas_dgemm(CblasColMajor, cblas_op(ta), cblas_op(tb), m, n, k, double(alpha), ad.data(),
                na ? m : k, bd.data(), nb ? k : n, 1.0, cd.data(), m);
  }
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) c[int64_t(j) * ldc + i] = float(cd[size_t(j) * m + i]);
}

// The checks shared by Sgemm and its strided batched form; `shift` is 0 for Sgemm and counts
// the stride parameters before each position for the batched call.
cublasStatus_t check_gemm(const char* fn, bool batched, cublasOperation_t ta, cublasOperation_t tb,
                          int m, int n, int k, const float* alpha, int lda, int ldb,
                          const float* beta, int ldc, int batch) {
  const int sa = batched ? 1 : 0, sb = batched ? 2 : 0;
  if (!valid_op(ta)) return bad_arg(fn, 2, "transa " + std::to_string(int(ta)));
  if (!valid_op(tb)) return bad_arg(fn, 3, "transb " + std::to_string(int(tb)));
  if (m < 0) return bad_arg(fn, 4, "m " + std::to_string(m));
  if (n < 0) return bad_arg(fn, 5, "n " + std::to_string(n));
  if (k < 0) return bad_arg(fn, 6, "k " + std::to_string(k));
  if (!alpha) return bad_arg(fn, 7, "alpha is null");
  const int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
  if (lda < std::max(1, rows_a))
    return bad_arg(fn, 9,
                   "lda " + std::to_string(lda) + " < max(1, " + std::to_string(rows_a) + ")");
  if (ldb < std::max(1, rows_b))
    return bad_arg(fn, 11 + sa,
                   "ldb " + std::to_string(ldb) + " < max(1, " + std::to_string(rows_b) + ")");
  if (!beta) return bad_arg(fn, 12 + sb, "beta is null");
  if (ldc < std::max(1, m))
    return bad_arg(fn, 14 + sb,
                   "ldc " + std::to_string(ldc) + " < max(1, " + std::to_string(m) + ")");
  if (batch < 0) return bad_arg(fn, 18, "batchCount " + std::to_string(batch));
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t gemm_batched(const char* fn, bool batched, cublasHandle_t handle,
                            cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const float* alpha, const float* a, int lda, long long stride_a,
                            const float* b, int ldb, long long stride_b, const float* beta,
                            float* c, int ldc, long long stride_c, int batch) {
  cublasContext ctx;
  if (!snapshot(handle, &ctx)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const cublasStatus_t st =
      check_gemm(fn, batched, ta, tb, m, n, k, alpha, lda, ldb, beta, ldc, batch);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
  // Pointer mode host: the scalars are read now, as cuBLAS does.
  const float al = *alpha, be = *beta;
  const bool tf32 = (ctx.mode & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH;
  nd_emu::count_library_call();
  nd_emu::enqueue(ctx.stream, fn, [=] {
    const bool reads_ab = al != 0.0f && k > 0;
    const bool na = ta == CUBLAS_OP_N, nb = tb == CUBLAS_OP_N;
    if (reads_ab && !check_operand(a, na ? m : k, na ? k : m, lda, stride_a, batch, fn, "A"))
      return;
    if (reads_ab && !check_operand(b, nb ? k : n, nb ? n : k, ldb, stride_b, batch, fn, "B"))
      return;
    if (!check_operand(c, m, n, ldc, stride_c, batch, fn, "C")) return;
    for (int i = 0; i < batch; ++i)
      gemm_one(ta, tb, m, n, k, al, a + i * stride_a, lda, b + i * stride_b, ldb, be,
               c + i * stride_c, ldc, tf32);
  });
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  auto* h = new cublasContext;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_handles.insert(h);
  *handle = h;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!handle || !g_handles.erase(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete handle;  // queued work holds copies of what it needs, never the handle
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!handle || !g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* stream) {
  cublasContext ctx;
  if (!snapshot(handle, &ctx)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!stream) return CUBLAS_STATUS_INVALID_VALUE;
  *stream = ctx.stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!handle || !g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base = int(mode) & ~int(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
  if (base < CUBLAS_DEFAULT_MATH || base > CUBLAS_TF32_TENSOR_OP_MATH)
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  cublasContext ctx;
  if (!snapshot(handle, &ctx)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!mode) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = ctx.mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "the library was not initialized (null or destroyed handle)";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "an invalid value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "the device lacks a required architectural feature";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "the requested functionality is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "the requested functionality requires a license";
  }
  return "unknown cuBLAS status";
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float* alpha,
                           const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  return gemm_batched("cublasSgemm", false, handle, transa, transb, m, n, k, alpha, A, lda, 0, B,
                      ldb, 0, beta, C, ldc, 0, 1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k,
                                         const float* alpha, const float* A, int lda,
                                         long long int strideA, const float* B, int ldb,
                                         long long int strideB, const float* beta, float* C,
                                         int ldc, long long int strideC, int batchCount) {
  return gemm_batched("cublasSgemmStridedBatched", true, handle, transa, transb, m, n, k, alpha, A,
                      lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batchCount);
}

cublasStatus_t cublasSsyrk(cublasHandle_t handle, cublasFillMode_t uplo, cublasOperation_t trans,
                           int n, int k, const float* alpha, const float* A, int lda,
                           const float* beta, float* C, int ldc) {
  static const char* fn = "cublasSsyrk";
  cublasContext ctx;
  if (!snapshot(handle, &ctx)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER)
    return bad_arg(fn, 2, "uplo " + std::to_string(int(uplo)));
  if (!valid_op(trans)) return bad_arg(fn, 3, "trans " + std::to_string(int(trans)));
  if (n < 0) return bad_arg(fn, 4, "n " + std::to_string(n));
  if (k < 0) return bad_arg(fn, 5, "k " + std::to_string(k));
  if (!alpha) return bad_arg(fn, 6, "alpha is null");
  const bool nt = trans == CUBLAS_OP_N;
  const int rows_a = nt ? n : k;
  if (lda < std::max(1, rows_a))
    return bad_arg(fn, 8,
                   "lda " + std::to_string(lda) + " < max(1, " + std::to_string(rows_a) + ")");
  if (!beta) return bad_arg(fn, 9, "beta is null");
  if (ldc < std::max(1, n))
    return bad_arg(fn, 11, "ldc " + std::to_string(ldc) + " < max(1, " + std::to_string(n) + ")");
  if (n == 0) return CUBLAS_STATUS_SUCCESS;
  const float al = *alpha, be = *beta;
  // TF32 tensor-op math covers cuBLAS's single-precision routines, syrk included.
  const bool tf32 = (ctx.mode & 0xf) == CUBLAS_TF32_TENSOR_OP_MATH;
  nd_emu::count_library_call();
  nd_emu::enqueue(ctx.stream, fn, [=] {
    const bool reads_a = al != 0.0f && k > 0;
    if (reads_a && !check_operand(A, nt ? n : k, nt ? k : n, lda, 0, 1, fn, "A")) return;
    if (!check_operand(C, n, n, ldc, 0, 1, fn, "C")) return;
    const bool upper = uplo == CUBLAS_FILL_MODE_UPPER;
    // Only the uplo triangle is read (when beta != 0) and written.
    std::vector<double> cd(size_t(n) * size_t(n), 0.0);
    for (int j = 0; j < n; ++j) {
      const int i0 = upper ? 0 : j, i1 = upper ? j + 1 : n;
      for (int i = i0; i < i1 && be != 0.0f; ++i)
        cd[size_t(j) * n + i] = double(be) * C[int64_t(j) * ldc + i];
    }
    if (reads_a) {
      std::vector<double> ad;
      load(A, nt ? n : k, nt ? k : n, lda, tf32, ad);
      cblas_dsyrk(CblasColMajor, upper ? CblasUpper : CblasLower, nt ? CblasNoTrans : CblasTrans, n,
                  k, double(al), ad.data(), nt ? n : k, 1.0, cd.data(), n);
    }
    for (int j = 0; j < n; ++j) {
      const int i0 = upper ? 0 : j, i1 = upper ? j + 1 : n;
      for (int i = i0; i < i1; ++i) C[int64_t(j) * ldc + i] = float(cd[size_t(j) * n + i]);
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}
