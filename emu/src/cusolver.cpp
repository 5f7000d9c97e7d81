// The cuSOLVER stand-in (cusolverDn.h): syevd through LAPACK's dsyevd (OpenBLAS ships LAPACK) on a
// double copy of the float matrix, queued on the handle's stream.
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

// LAPACK's Fortran entry point; the trailing lengths are gfortran's hidden string arguments.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda,
                        double* w, double* work, const int* lwork, int* iwork, const int* liwork,
                        int* info, size_t jobz_len, size_t uplo_len);

struct cusolverDnContext {
  cudaStream_t stream = nullptr;
};

namespace {

std::mutex g_mutex;
// Never destroyed: handles may be used from exit-time code.
std::unordered_set<cusolverDnContext*>& g_handles = *new std::unordered_set<cusolverDnContext*>;

bool snapshot(cusolverDnHandle_t h, cusolverDnContext* out) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!h || !g_handles.count(h)) return false;
  *out = *h;
  return true;
}

cusolverStatus_t bad_arg(const char* fn, int position, const std::string& why) {
  std::fprintf(stderr, "** On entry to %s parameter number %d had an illegal value (%s)\n", fn,
               position, why.c_str());
  return CUSOLVER_STATUS_INVALID_VALUE;
}

// Shared argument checks of syevd and its buffer-size query (same positions in both).
cusolverStatus_t check_syevd(const char* fn, cusolverEigMode_t jobz, cublasFillMode_t uplo, int n,
                             int lda) {
  if (jobz != CUSOLVER_EIG_MODE_NOVECTOR && jobz != CUSOLVER_EIG_MODE_VECTOR)
    return bad_arg(fn, 2, "jobz " + std::to_string(int(jobz)));
  if (uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER)
    return bad_arg(fn, 3, "uplo " + std::to_string(int(uplo)));
  if (n < 0) return bad_arg(fn, 4, "n " + std::to_string(n));
  if (lda < std::max(1, n))
    return bad_arg(fn, 6, "lda " + std::to_string(lda) + " < max(1, " + std::to_string(n) + ")");
  return CUSOLVER_STATUS_SUCCESS;
}

// LAPACK ssyevd's own minimum workspace, in floats: the size callers must provide here.
int64_t required_lwork(cusolverEigMode_t jobz, int n) {
  if (n <= 1) return 1;
  if (jobz == CUSOLVER_EIG_MODE_VECTOR) return 1 + 6 * int64_t(n) + 2 * int64_t(n) * n;
  return 2 * int64_t(n) + 1;
}

}  // namespace

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* handle) {
  if (!handle) return CUSOLVER_STATUS_INVALID_VALUE;
  auto* h = new cusolverDnContext;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_handles.insert(h);
  *handle = h;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!handle || !g_handles.erase(handle)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!handle || !g_handles.count(handle)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnGetStream(cusolverDnHandle_t handle, cudaStream_t* stream) {
  cusolverDnContext ctx;
  if (!snapshot(handle, &ctx)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (!stream) return CUSOLVER_STATUS_INVALID_VALUE;
  *stream = ctx.stream;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSsyevd_bufferSize(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                             cublasFillMode_t uplo, int n, const float* A, int lda,
                                             const float* W, int* lwork) {
  (void)A;
  (void)W;
  cusolverDnContext ctx;
  if (!snapshot(handle, &ctx)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  const cusolverStatus_t st = check_syevd("cusolverDnSsyevd_bufferSize", jobz, uplo, n, lda);
  if (st != CUSOLVER_STATUS_SUCCESS) return st;
  if (!lwork) return bad_arg("cusolverDnSsyevd_bufferSize", 8, "lwork is null");
  const int64_t need = required_lwork(jobz, n);
  if (need > std::numeric_limits<int>::max()) return CUSOLVER_STATUS_INVALID_VALUE;
  *lwork = int(need);
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSsyevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                  cublasFillMode_t uplo, int n, float* A, int lda, float* W,
                                  float* work, int lwork, int* devInfo) {
  static const char* fn = "cusolverDnSsyevd";
  cusolverDnContext ctx;
  if (!snapshot(handle, &ctx)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  const cusolverStatus_t st = check_syevd(fn, jobz, uplo, n, lda);
  if (st != CUSOLVER_STATUS_SUCCESS) return st;
  const int64_t need = required_lwork(jobz, n);
  if (lwork < need)
    return bad_arg(fn, 9,
                   "lwork " + std::to_string(lwork) + " < " + std::to_string(need) +
                       " from cusolverDnSsyevd_bufferSize");
  nd_emu::count_library_call();
  nd_emu::enqueue(ctx.stream, fn, [=] {
    if (!nd_emu::check_device_range(devInfo, sizeof(int), "cusolverDnSsyevd devInfo")) return;
    if (n == 0) {
      *devInfo = 0;
      return;
    }
    const size_t a_elems = size_t(n - 1) * size_t(lda) + size_t(n);
    if (!nd_emu::check_device_range(A, a_elems * sizeof(float), "cusolverDnSsyevd A")) return;
    if (!nd_emu::check_device_range(W, size_t(n) * sizeof(float), "cusolverDnSsyevd W")) return;
    if (!nd_emu::check_device_range(work, size_t(lwork) * sizeof(float),
                                    "cusolverDnSsyevd work (lwork floats)"))
      return;
    // Whole columns are copied so the triangle LAPACK leaves alone comes back bit for bit.
    std::vector<double> a(size_t(n) * size_t(n)), w(n);
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < n; ++i) a[size_t(j) * n + i] = A[int64_t(j) * lda + i];
    const char jz = jobz == CUSOLVER_EIG_MODE_VECTOR ? 'V' : 'N';
    const char ul = uplo == CUBLAS_FILL_MODE_UPPER ? 'U' : 'L';
    int info = 0, query_lwork = -1, query_liwork = -1, iwork_size = 0;
    double work_size = 0.0;
    dsyevd_(&jz, &ul, &n, a.data(), &n, w.data(), &work_size, &query_lwork, &iwork_size,
            &query_liwork, &info, 1, 1);
    if (info == 0) {
      int dl = std::max(1, int(work_size)), il = std::max(1, iwork_size);
      std::vector<double> dwork(dl);
      std::vector<int> iwork(il);
      dsyevd_(&jz, &ul, &n, a.data(), &n, w.data(), dwork.data(), &dl, iwork.data(), &il, &info, 1,
              1);
    }
    *devInfo = info;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < n; ++i) A[int64_t(j) * lda + i] = float(a[size_t(j) * n + i]);
    for (int i = 0; i < n; ++i) W[i] = float(w[i]);
    // The workspace is scratch: poison it so nothing comes to rely on what it holds afterwards.
    std::fill(work, work + lwork, std::numeric_limits<float>::quiet_NaN());
  });
  return CUSOLVER_STATUS_SUCCESS;
}
