// The emulator's cuBLAS, cuSOLVER and NCCL stand-ins against plain double loops written here, and
// their argument and operand-extent checks.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <nccl.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test/catch.h"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A device buffer with host copies in and out (device memory is not host-readable here).
template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  size_t n = 0;
  explicit DeviceBuffer(const std::vector<T>& host) : n(host.size()) {
    REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
    REQUIRE(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  std::vector<T> get() const {
    std::vector<T> host(n);
    REQUIRE(cudaMemcpy(host.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return host;
  }
};

std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// Column-major reference: C = alpha op(A) op(B) + beta C in double (beta == 0: C not read).
void reference_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const float* a, int lda,
                    const float* b, int ldb, double beta, std::vector<double>& c, int ldc,
                    const std::vector<float>& c0) {
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      double sum = 0.0;
      for (int l = 0; l < k; ++l) {
        const double av = ta ? a[l + int64_t(i) * lda] : a[i + int64_t(l) * lda];
        const double bv = tb ? b[j + int64_t(l) * ldb] : b[l + int64_t(j) * ldb];
        sum += av * bv;
      }
      c[i + size_t(j) * ldc] = alpha * sum + (beta == 0.0 ? 0.0 : beta * c0[i + size_t(j) * ldc]);
    }
}

float tf32_round(float x) {  // the test's own TF32 rounding (nearest even on 13 dropped bits)
  uint32_t b;
  std::memcpy(&b, &x, 4);
  const uint32_t dropped = b & 0x1fffu, keep = b & ~0x1fffu;
  uint32_t r = keep;
  if (dropped > 0x1000u || (dropped == 0x1000u && (keep & 0x2000u))) r += 0x2000u;
  float out;
  std::memcpy(&out, &r, 4);
  return out;
}

struct Handle {
  cublasHandle_t h = nullptr;
  Handle() { REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS); }
  ~Handle() { cublasDestroy(h); }
};

}  // namespace

TEST_CASE("emu cublasSgemm matches a double loop for every transposition", "[emu][cublas]") {
  Handle h;
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  REQUIRE(cublasSetStream(h.h, s) == CUBLAS_STATUS_SUCCESS);
  cudaStream_t got_stream = nullptr;
  REQUIRE(cublasGetStream(h.h, &got_stream) == CUBLAS_STATUS_SUCCESS);
  CHECK(got_stream == s);
  const int m = 5, n = 7, k = 6;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int rows_a = ta ? k : m, cols_a = ta ? m : k;
      const int rows_b = tb ? n : k, cols_b = tb ? k : n;
      const int lda = rows_a + 3, ldb = rows_b + 2, ldc = m + 4;
      const std::vector<float> a = random_floats(size_t(lda) * cols_a, 1 + ta);
      const std::vector<float> b = random_floats(size_t(ldb) * cols_b, 3 + tb);
      const std::vector<float> c0 = random_floats(size_t(ldc) * n, 7);
      DeviceBuffer<float> da(a), db(b), dc(c0);
      const float alpha = 1.5f, beta = -0.5f;
      const auto calls = nd_emu::counters().library_calls;
      REQUIRE(cublasSgemm(h.h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n,
                          k, &alpha, da.p, lda, db.p, ldb, &beta, dc.p,
                          ldc) == CUBLAS_STATUS_SUCCESS);
      CHECK(nd_emu::counters().library_calls == calls + 1);
      REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
      const std::vector<float> c = dc.get();
      std::vector<double> ref(c0.begin(), c0.end());
      reference_gemm(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, ref, ldc, c0);
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < ldc; ++i) {
          const size_t at = i + size_t(j) * ldc;
          INFO("ta " << ta << " tb " << tb << " i " << i << " j " << j);
          if (i < m)
            CHECK(std::abs(c[at] - ref[at]) <= 1e-5 * std::max(1.0, std::abs(ref[at])));
          else
            CHECK(c[at] == c0[at]);  // rows past m inside ldc stay untouched
        }
    }
  cudaStreamDestroy(s);
}

TEST_CASE("emu cublasSgemm with beta 0 never reads C", "[emu][cublas]") {
  Handle h;
  const int m = 4, n = 3, k = 5;
  const std::vector<float> a = random_floats(m * k, 11), b = random_floats(k * n, 12);
  DeviceBuffer<float> da(a), db(b), dc(std::vector<float>(m * n, kNaN));
  const float alpha = 2.0f, beta = 0.0f;
  REQUIRE(cublasSgemm(h.h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, da.p, m, db.p, k, &beta, dc.p,
                      m) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<float> c = dc.get();
  std::vector<double> ref(m * n);
  reference_gemm(false, false, m, n, k, alpha, a.data(), m, b.data(), k, 0.0, ref, m, {});
  for (int i = 0; i < m * n; ++i) {
    REQUIRE(std::isfinite(c[i]));
    CHECK(std::abs(c[i] - ref[i]) <= 1e-5 * std::max(1.0, std::abs(ref[i])));
  }
  // k == 0: C = beta C, here 0 from NaN.
  REQUIRE(cublasSgemm(h.h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, 0, &alpha, da.p, m, db.p, 1, &beta, dc.p,
                      m) == CUBLAS_STATUS_SUCCESS);
  DeviceBuffer<float> nan_c(std::vector<float>(m * n, kNaN));
  REQUIRE(cublasSgemm(h.h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, 0, &alpha, da.p, m, db.p, 1, &beta,
                      nan_c.p, m) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  for (float v : nan_c.get()) CHECK(v == 0.0f);
}

TEST_CASE("emu cublasSgemmStridedBatched", "[emu][cublas]") {
  Handle h;
  const int m = 3, n = 4, k = 5, batch = 3;
  const int lda = k + 1, ldb = n + 1, ldc = m + 2;  // A transposed (k x m), B transposed (n x k)
  const long long sa = lda * m + 7, sb = ldb * k + 3, sc = ldc * n + 5;
  const std::vector<float> a = random_floats(sa * batch, 21), b = random_floats(sb * batch, 22);
  const std::vector<float> c0 = random_floats(sc * batch, 23);
  DeviceBuffer<float> da(a), db(b), dc(c0);
  const float alpha = 0.75f, beta = 0.25f;
  REQUIRE(cublasSgemmStridedBatched(h.h, CUBLAS_OP_T, CUBLAS_OP_T, m, n, k, &alpha, da.p, lda, sa,
                                    db.p, ldb, sb, &beta, dc.p, ldc, sc,
                                    batch) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<float> c = dc.get();
  for (int q = 0; q < batch; ++q) {
    std::vector<float> cq(c0.begin() + q * sc, c0.begin() + (q + 1) * sc);
    std::vector<double> ref(cq.begin(), cq.end());
    reference_gemm(true, true, m, n, k, alpha, a.data() + q * sa, lda, b.data() + q * sb, ldb, beta,
                   ref, ldc, cq);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const size_t at = i + size_t(j) * ldc;
        CHECK(std::abs(c[q * sc + at] - ref[at]) <= 1e-5 * std::max(1.0, std::abs(ref[at])));
      }
  }
  // The gaps between the batch's C matrices are untouched.
  CHECK(c[sc - 1] == c0[sc - 1]);
}

TEST_CASE("emu cublasSsyrk writes only its triangle", "[emu][cublas]") {
  Handle h;
  for (int upper = 0; upper < 2; ++upper)
    for (int trans = 0; trans < 2; ++trans) {
      const int n = 6, k = 4, lda = (trans ? k : n) + 2, ldc = n + 3;
      const std::vector<float> a = random_floats(size_t(lda) * (trans ? n : k), 31 + trans);
      const std::vector<float> c0 = random_floats(size_t(ldc) * n, 33);
      DeviceBuffer<float> da(a), dc(c0);
      const float alpha = 0.5f, beta = 2.0f;
      REQUIRE(cublasSsyrk(h.h, upper ? CUBLAS_FILL_MODE_UPPER : CUBLAS_FILL_MODE_LOWER,
                          trans ? CUBLAS_OP_T : CUBLAS_OP_N, n, k, &alpha, da.p, lda, &beta, dc.p,
                          ldc) == CUBLAS_STATUS_SUCCESS);
      REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
      const std::vector<float> c = dc.get();
      // op(A) op(A)^T is op(A) times op(A) transposed: the gemm reference with B = A.
      std::vector<double> ref(c0.begin(), c0.end());
      reference_gemm(trans, !trans, n, n, k, alpha, a.data(), lda, a.data(), lda, beta, ref, ldc,
                     c0);
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < ldc; ++i) {
          const size_t at = i + size_t(j) * ldc;
          const bool in_triangle = i < n && (upper ? i <= j : i >= j);
          INFO("upper " << upper << " trans " << trans << " i " << i << " j " << j);
          if (in_triangle)
            CHECK(std::abs(c[at] - ref[at]) <= 1e-5 * std::max(1.0, std::abs(ref[at])));
          else
            CHECK(c[at] == c0[at]);
        }
    }
  // beta 0: NaN in C is not read.
  const int n = 3, k = 2;
  DeviceBuffer<float> da(random_floats(n * k, 35)), dc(std::vector<float>(n * n, kNaN));
  const float alpha = 1.0f, beta = 0.0f;
  REQUIRE(cublasSsyrk(h.h, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, n, k, &alpha, da.p, n, &beta, dc.p,
                      n) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<float> c = dc.get();
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < n; ++i) CHECK(std::isnan(c[i + j * n]) == (i > j));
}

TEST_CASE("emu cuBLAS refuses bad arguments at the call", "[emu][cublas]") {
  Handle h;
  DeviceBuffer<float> buf(std::vector<float>(64, 1.0f));
  float* p = buf.p;
  const float one = 1.0f;
  const auto N = CUBLAS_OP_N, T = CUBLAS_OP_T;
  const auto bad = CUBLAS_STATUS_INVALID_VALUE;
  const auto calls = nd_emu::counters().library_calls;
  // Sgemm (m 4, n 3, k 2 fit lda 4, ldb 2, ldc 4).
  CHECK(cublasSgemm(h.h, N, N, 4, 3, 2, &one, p, 4, p, 2, &one, p, 4) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasSgemm(h.h, cublasOperation_t(7), N, 4, 3, 2, &one, p, 4, p, 2, &one, p, 4) == bad);
  CHECK(cublasSgemm(h.h, N, cublasOperation_t(-1), 4, 3, 2, &one, p, 4, p, 2, &one, p, 4) == bad);
  CHECK(cublasSgemm(h.h, N, N, -1, 3, 2, &one, p, 4, p, 2, &one, p, 4) == bad);
  CHECK(cublasSgemm(h.h, N, N, 4, -1, 2, &one, p, 4, p, 2, &one, p, 4) == bad);
  CHECK(cublasSgemm(h.h, N, N, 4, 3, -1, &one, p, 4, p, 2, &one, p, 4) == bad);
  CHECK(cublasSgemm(h.h, N, N, 4, 3, 2, &one, p, 3, p, 2, &one, p, 4) == bad);  // lda < m
  CHECK(cublasSgemm(h.h, T, N, 4, 3, 2, &one, p, 1, p, 2, &one, p, 4) == bad);  // lda < k
  CHECK(cublasSgemm(h.h, N, N, 4, 3, 2, &one, p, 4, p, 1, &one, p, 4) == bad);  // ldb < k
  CHECK(cublasSgemm(h.h, N, T, 4, 3, 2, &one, p, 4, p, 2, &one, p, 4) == bad);  // ldb < n
  CHECK(cublasSgemm(h.h, N, N, 4, 3, 2, &one, p, 4, p, 2, &one, p, 3) == bad);  // ldc < m
  CHECK(cublasSgemm(h.h, N, N, 0, 0, 0, &one, p, 0, p, 1, &one, p, 1) == bad);  // lda < 1
  CHECK(cublasSgemm(h.h, N, N, 4, 3, 2, nullptr, p, 4, p, 2, &one, p, 4) == bad);
  CHECK(cublasSgemm(h.h, N, N, 4, 3, 2, &one, p, 4, p, 2, nullptr, p, 4) == bad);
  CHECK(cublasSgemm(nullptr, N, N, 4, 3, 2, &one, p, 4, p, 2, &one, p, 4) ==
        CUBLAS_STATUS_NOT_INITIALIZED);
  // Strided batched.
  CHECK(cublasSgemmStridedBatched(h.h, N, N, 2, 2, 2, &one, p, 2, 4, p, 2, 4, &one, p, 2, 4, -1) ==
        bad);
  CHECK(cublasSgemmStridedBatched(h.h, N, N, 2, 2, 2, &one, p, 1, 4, p, 2, 4, &one, p, 2, 4, 2) ==
        bad);
  CHECK(cublasSgemmStridedBatched(h.h, N, N, 2, 2, 2, &one, p, 2, 4, p, 2, 4, &one, p, 2, 4, 0) ==
        CUBLAS_STATUS_SUCCESS);
  // Ssyrk.
  const auto U = CUBLAS_FILL_MODE_UPPER;
  CHECK(cublasSsyrk(h.h, CUBLAS_FILL_MODE_FULL, N, 3, 2, &one, p, 3, &one, p, 3) == bad);
  CHECK(cublasSsyrk(h.h, U, cublasOperation_t(9), 3, 2, &one, p, 3, &one, p, 3) == bad);
  CHECK(cublasSsyrk(h.h, U, N, -1, 2, &one, p, 3, &one, p, 3) == bad);
  CHECK(cublasSsyrk(h.h, U, N, 3, -1, &one, p, 3, &one, p, 3) == bad);
  CHECK(cublasSsyrk(h.h, U, N, 3, 2, &one, p, 2, &one, p, 3) == bad);  // lda < n
  CHECK(cublasSsyrk(h.h, U, T, 3, 2, &one, p, 1, &one, p, 3) == bad);  // lda < k
  CHECK(cublasSsyrk(h.h, U, N, 3, 2, &one, p, 3, &one, p, 2) == bad);  // ldc < n
  CHECK(cublasSetMathMode(h.h, cublasMath_t(5)) == bad);
  // Only the one valid Sgemm queued work.
  CHECK(nd_emu::counters().library_calls == calls + 1);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  // A destroyed handle is no handle.
  cublasHandle_t gone = nullptr;
  REQUIRE(cublasCreate(&gone) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasDestroy(gone) == CUBLAS_STATUS_SUCCESS);
  CHECK(cublasSetStream(gone, nullptr) == CUBLAS_STATUS_NOT_INITIALIZED);
  CHECK(std::string(cublasGetStatusName(bad)) == "CUBLAS_STATUS_INVALID_VALUE");
  CHECK(std::string(cublasGetStatusString(CUBLAS_STATUS_SUCCESS)) == "success");
}

TEST_CASE("emu cuBLAS reports an operand that overruns its allocation", "[emu][cublas]") {
  Handle h;
  const int m = 4, n = 3, k = 5;
  DeviceBuffer<float> da(random_floats(m * k, 41)), db(random_floats(k * n, 42));
  DeviceBuffer<float> dc(std::vector<float>(m * n, 0.0f));
  const float one = 1.0f, zero = 0.0f;
  nd_emu::clear_fault();
  // ldb k + 1 is a legal argument, but B then spans (n - 1)(k + 1) + k > k n floats.
  REQUIRE(cublasSgemm(h.h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da.p, m, db.p, k + 1, &zero,
                      dc.p, m) == CUBLAS_STATUS_SUCCESS);
  CHECK(cudaDeviceSynchronize() != cudaSuccess);
  const std::string msg = nd_emu::last_fault_message();
  INFO(msg);
  CHECK(msg.find("cublasSgemm") != std::string::npos);
  CHECK(msg.find("operand B") != std::string::npos);
  nd_emu::clear_fault();
  (void)cudaGetLastError();
  // A batch whose last matrix runs past the end.
  REQUIRE(cublasSgemmStridedBatched(h.h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, da.p, 2, 18, db.p,
                                    2, 0, &zero, dc.p, 2, 4, 2) == CUBLAS_STATUS_SUCCESS);
  CHECK(cudaDeviceSynchronize() != cudaSuccess);
  CHECK(nd_emu::last_fault_message().find("operand A") != std::string::npos);
  nd_emu::clear_fault();
  (void)cudaGetLastError();
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
}

TEST_CASE("emu cuBLAS TF32 math rounds the inputs", "[emu][cublas]") {
  Handle h;
  cublasMath_t mode;
  REQUIRE(cublasGetMathMode(h.h, &mode) == CUBLAS_STATUS_SUCCESS);
  CHECK(mode == CUBLAS_DEFAULT_MATH);
  // 1 x 1 x 1 products show the rounding itself: ties go to the even 10-bit mantissa.
  const float one = 1.0f, zero = 0.0f;
  const std::vector<float> cases = {1.0f + 0x1p-11f, 1.0f + 0x1p-11f + 0x1p-23f,
                                    1.0f + 0x1p-10f + 0x1p-11f, 1.0f + 0x1p-12f};
  const std::vector<float> expect = {1.0f, 1.0f + 0x1p-10f, 1.0f + 0x1p-9f, 1.0f};
  REQUIRE(cublasSetMathMode(h.h, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS);
  DeviceBuffer<float> d_one(std::vector<float>{1.0f});
  for (size_t i = 0; i < cases.size(); ++i) {
    DeviceBuffer<float> da(std::vector<float>{cases[i]}), dc(std::vector<float>{0.0f});
    REQUIRE(cublasSgemm(h.h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, da.p, 1, d_one.p, 1, &zero,
                        dc.p, 1) == CUBLAS_STATUS_SUCCESS);
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(dc.get()[0] == expect[i]);
    CHECK(tf32_round(cases[i]) == expect[i]);
  }
  // A full product: TF32 equals the double product of TF32-rounded inputs, and differs from
  // FP32 by about 2^-11 of the terms' magnitude.
  const int m = 16, n = 16, k = 64;
  const std::vector<float> a = random_floats(m * k, 51), b = random_floats(k * n, 52);
  DeviceBuffer<float> da(a), db(b), c_tf32(std::vector<float>(m * n)),
      c_fp32(std::vector<float>(m * n));
  REQUIRE(cublasSgemm(h.h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da.p, m, db.p, k, &zero,
                      c_tf32.p, m) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSetMathMode(h.h, CUBLAS_DEFAULT_MATH) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cublasSgemm(h.h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da.p, m, db.p, k, &zero,
                      c_fp32.p, m) == CUBLAS_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  const std::vector<float> t = c_tf32.get(), f = c_fp32.get();
  std::vector<float> a_r(a), b_r(b);
  for (float& x : a_r) x = tf32_round(x);
  for (float& x : b_r) x = tf32_round(x);
  std::vector<double> ref_tf32(m * n), ref_fp32(m * n);
  reference_gemm(false, false, m, n, k, 1.0, a_r.data(), m, b_r.data(), k, 0.0, ref_tf32, m, {});
  reference_gemm(false, false, m, n, k, 1.0, a.data(), m, b.data(), k, 0.0, ref_fp32, m, {});
  double max_rel = 0.0;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const int at = i + j * m;
      double scale = 0.0;  // sum of |a||b| over the dot product
      for (int l = 0; l < k; ++l) scale += std::abs(a[i + l * m]) * std::abs(b[l + j * k]);
      CHECK(std::abs(t[at] - ref_tf32[at]) <= 1e-6 * scale);
      CHECK(std::abs(f[at] - ref_fp32[at]) <= 1e-6 * scale);
      max_rel = std::max(max_rel, std::abs(double(t[at]) - f[at]) / scale);
    }
  INFO("max |tf32 - fp32| / sum|a||b| = " << max_rel);
  CHECK(max_rel > 0x1p-15);
  CHECK(max_rel < 0x1p-10);
}

TEST_CASE("emu cusolverDnSsyevd", "[emu][cusolver]") {
  cusolverDnHandle_t h = nullptr;
  REQUIRE(cusolverDnCreate(&h) == CUSOLVER_STATUS_SUCCESS);
  REQUIRE(cusolverDnSetStream(h, nullptr) == CUSOLVER_STATUS_SUCCESS);
  // The tridiagonal (-1, 2, -1) matrix: eigenvalues 2 - 2 cos(j pi / (n + 1)), j = 1..n.
  const int n = 7, lda = n + 2;
  std::vector<float> a(size_t(lda) * n, kNaN);  // padding and the lower triangle: never read
  std::vector<double> full(size_t(n) * n, 0.0);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i <= j; ++i) {
      const double v = i == j ? 2.0 : (i + 1 == j ? -1.0 : 0.0);
      a[i + size_t(j) * lda] = float(v);
      full[i + size_t(j) * n] = full[j + size_t(i) * n] = v;
    }
  DeviceBuffer<float> da(a), dw{std::vector<float>(n)};
  DeviceBuffer<int> dinfo(std::vector<int>{-99});
  int lwork = 0;
  REQUIRE(cusolverDnSsyevd_bufferSize(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, da.p,
                                      lda, dw.p, &lwork) == CUSOLVER_STATUS_SUCCESS);
  REQUIRE(lwork > 0);
  DeviceBuffer<float> work{std::vector<float>(lwork)};
  CHECK(cusolverDnSsyevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, da.p, lda, dw.p,
                         work.p, lwork - 1, dinfo.p) == CUSOLVER_STATUS_INVALID_VALUE);
  CHECK(cusolverDnSsyevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, da.p, n - 1, dw.p,
                         work.p, lwork, dinfo.p) == CUSOLVER_STATUS_INVALID_VALUE);
  CHECK(cusolverDnSsyevd(nullptr, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, da.p, lda,
                         dw.p, work.p, lwork, dinfo.p) == CUSOLVER_STATUS_NOT_INITIALIZED);
  REQUIRE(cusolverDnSsyevd(h, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, n, da.p, lda, dw.p,
                           work.p, lwork, dinfo.p) == CUSOLVER_STATUS_SUCCESS);
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  CHECK(dinfo.get()[0] == 0);
  const std::vector<float> w = dw.get(), v = da.get();
  const double pi = std::acos(-1.0);
  for (int j = 0; j < n; ++j) {
    CHECK(std::abs(w[j] - (2.0 - 2.0 * std::cos((j + 1) * pi / (n + 1)))) <= 1e-5);
    if (j > 0) CHECK(w[j] >= w[j - 1]);
  }
  // A = V diag(w) V^T, V orthonormal.
  for (int r = 0; r < n; ++r)
    for (int c = 0; c < n; ++c) {
      double rec = 0.0, gram = 0.0;
      for (int j = 0; j < n; ++j) {
        rec += double(v[r + size_t(j) * lda]) * w[j] * v[c + size_t(j) * lda];
        gram += double(v[j + size_t(r) * lda]) * v[j + size_t(c) * lda];
      }
      CHECK(std::abs(rec - full[r + size_t(c) * n]) <= 1e-5);
      CHECK(std::abs(gram - (r == c ? 1.0 : 0.0)) <= 1e-5);
    }
  // Padding rows past n stay as they were.
  CHECK(std::isnan(v[n]));
  REQUIRE(cusolverDnDestroy(h) == CUSOLVER_STATUS_SUCCESS);
  CHECK(cusolverDnSetStream(h, nullptr) == CUSOLVER_STATUS_NOT_INITIALIZED);
}

TEST_CASE("emu NCCL with one rank", "[emu][nccl]") {
  ncclUniqueId id;
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  ncclComm_t comm = nullptr;
  REQUIRE(ncclCommInitRank(&comm, 1, id, 0) == ncclSuccess);
  int count = 0, rank = -1;
  CHECK((ncclCommCount(comm, &count) == ncclSuccess && count == 1));
  CHECK((ncclCommUserRank(comm, &rank) == ncclSuccess && rank == 0));
  cudaStream_t s = nullptr;
  REQUIRE(cudaStreamCreate(&s) == cudaSuccess);
  const std::vector<float> x = random_floats(100, 61);
  DeviceBuffer<float> send(x), recv(std::vector<float>(100, kNaN));
  for (ncclRedOp_t op : {ncclSum, ncclProd, ncclMax, ncclMin, ncclAvg}) {
    REQUIRE(ncclAllReduce(send.p, recv.p, 100, ncclFloat32, op, comm, s) == ncclSuccess);
    REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(recv.get() == x);
  }
  REQUIRE(ncclAllReduce(send.p, send.p, 100, ncclFloat32, ncclSum, comm, s) == ncclSuccess);
  const std::vector<uint8_t> bytes = {1, 2, 3, 4, 5};
  DeviceBuffer<uint8_t> bsend(bytes), brecv(std::vector<uint8_t>(5, 0));
  REQUIRE(ncclBroadcast(bsend.p, brecv.p, 5, ncclUint8, 0, comm, s) == ncclSuccess);
  REQUIRE(cudaStreamSynchronize(s) == cudaSuccess);
  CHECK(send.get() == x);  // in place on one rank: unchanged
  CHECK(brecv.get() == bytes);
  // Argument checks.
  CHECK(ncclBroadcast(bsend.p, brecv.p, 5, ncclUint8, 1, comm, s) == ncclInvalidArgument);
  CHECK(ncclAllReduce(send.p, recv.p, 100, ncclDataType_t(42), ncclSum, comm, s) ==
        ncclInvalidArgument);
  CHECK(ncclAllReduce(send.p, recv.p, 100, ncclFloat32, ncclRedOp_t(9), comm, s) ==
        ncclInvalidArgument);
  std::vector<float> host(100);
  CHECK(ncclAllReduce(host.data(), recv.p, 100, ncclFloat32, ncclSum, comm, s) ==
        ncclInvalidArgument);
  CHECK(ncclAllReduce(send.p, recv.p, 100, ncclFloat32, ncclSum, nullptr, s) ==
        ncclInvalidArgument);
  // An extent past the allocation is a fault when the work runs.
  nd_emu::clear_fault();
  REQUIRE(ncclAllReduce(send.p, recv.p, 101, ncclFloat32, ncclSum, comm, s) == ncclSuccess);
  CHECK(cudaStreamSynchronize(s) != cudaSuccess);
  CHECK(nd_emu::last_fault_message().find("ncclAllReduce") != std::string::npos);
  nd_emu::clear_fault();
  (void)cudaGetLastError();
  REQUIRE(ncclCommDestroy(comm) == ncclSuccess);
  CHECK(ncclCommDestroy(comm) == ncclInvalidArgument);
  // Several ranks need MPI running (this test binary never starts it).
  ncclComm_t two = nullptr;
  CHECK(ncclCommInitRank(&two, 2, id, 0) == ncclInvalidUsage);
  ncclUniqueId junk;
  std::memset(&junk, 0, sizeof junk);
  CHECK(ncclCommInitRank(&two, 1, junk, 0) == ncclInvalidArgument);
  CHECK(std::string(ncclGetErrorString(ncclInvalidUsage)) == "invalid usage");
  cudaStreamDestroy(s);
}
