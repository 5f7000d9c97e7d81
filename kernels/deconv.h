// The network-deconvolution kernel trio (see docs/deconvolution.md, "The algorithm", section 1):
//   1. sampled im2col covariance: mean and Xc^T Xc / R + eps I of the sampled patches, arranged
//      in interleaved blocks (groups == 1) or per-group chunks (groups > 1), and its backward;
//   2. the coupled Newton-Schulz inverse square root of a batch of symmetric matrices, forward
//      and the backward of the unrolled iteration;
//   3. folding D and mu into the convolution weights and bias, and its backward;
// plus the covariance of plain rows (Delinear, ChannelDeconv). CPU versions (float/double) are
// the reference, with a fast CPU path on BLAS for the covariances; CUDA versions take float32.
#pragma once
#include "kernels/common.h"
#include "kernels/matmul.h"

namespace nd::kernels {

// ---------------------------------------------------------------- sampled covariance
// A patch is a row of length C*k*k, column f = c*k*k + ky*k + kx. For k > 1 the patches are
// the im2col rows at output-grid stride `stride` (the effective sampling stride), padded zeros
// included, positions (H + 2 pad - dil (k-1) - 1) / stride + 1 per axis, row order (n, py, px).
// For k == 1 the rows are x viewed as NHWC (row order n, h, w), keeping rows first, first + s*s,
// first + 2 s*s, ... (first = 0 but for a data-parallel rank, whose batch starts inside the
// global batch's sampling pattern).
// groups == 1: one matrix; each patch gives C/B sub-rows, sub-row j holding the columns
//   f with f % (C/B) == j in increasing f (so nf = k*k*B columns); R = positions * (C/B).
// groups > 1: B = C/groups; matrix g takes the contiguous columns [g*nf, (g+1)*nf); R = positions.
struct SampledCovShape {
  int64_t n = 1, c = 1, h = 1, w = 1;
  int64_t k = 1, pad = 0, dil = 1;
  int64_t stride = 1;  // effective sampling stride s
  int64_t block = 1;   // B, already resolved by the gcd/groups rules (divides C)
  int64_t groups = 1;
  int64_t first = 0;  // k == 1: the first sampled raster row, 0 <= first < stride * stride
  int64_t nf() const { return k * k * block; }
  int64_t matrices() const { return groups; }
  int64_t out_h() const { return (h + 2 * pad - dil * (k - 1) - 1) / stride + 1; }
  int64_t out_w() const { return (w + 2 * pad - dil * (k - 1) - 1) / stride + 1; }
  int64_t positions() const {
    const int64_t raster = n * h * w - first;
    return k == 1 ? (raster > 0 ? (raster + stride * stride - 1) / (stride * stride) : 0)
                  : n * out_h() * out_w();
  }
  int64_t rows() const { return positions() * (groups == 1 ? c / block : 1); }
};

// x (N, C, H, W) -> mean (groups, nf), cov (groups, nf, nf) = Xc^T Xc / R + eps I.
template <typename T>
void covariance_sampled_forward_cpu(const SampledCovShape& s, double eps, const T* x, T* mean,
                                    T* cov);
// dx (N, C, H, W) is overwritten: the gradient reaching each input pixel through the sampled
// patches from dcov (groups, nf, nf; not assumed symmetric) and dmean (groups, nf; may be null).
template <typename T>
void covariance_sampled_backward_cpu(const SampledCovShape& s, const T* x, const T* mean,
                                     const T* dmean, const T* dcov, T* dx);

void covariance_sampled_forward_cuda(const SampledCovShape& s, double eps, const float* x,
                                     float* mean, float* cov, Scratch& scratch, cudaStream_t st);
void covariance_sampled_backward_cuda(const SampledCovShape& s, const float* x, const float* mean,
                                      const float* dmean, const float* dcov, float* dx,
                                      Scratch& scratch, cudaStream_t st);

// ---------------------------------------------------------------- covariance of rows
// x (rows, n) contiguous -> mean (n), cov (n, n) = Xc^T Xc / rows + eps I; backward overwrites
// dx (rows, n) from dcov (n, n) and dmean (n; may be null).
template <typename T>
void covariance_rows_forward_cpu(int64_t rows, int64_t n, double eps, const T* x, T* mean, T* cov);
template <typename T>
void covariance_rows_backward_cpu(int64_t rows, int64_t n, const T* x, const T* mean,
                                  const T* dmean, const T* dcov, T* dx);
void covariance_rows_forward_cuda(int64_t rows, int64_t n, double eps, const float* x, float* mean,
                                  float* cov, Scratch& scratch, cudaStream_t st);
void covariance_rows_backward_cuda(int64_t rows, int64_t n, const float* x, const float* mean,
                                   const float* dmean, const float* dcov, float* dx,
                                   Scratch& scratch, cudaStream_t st);

// ---------------------------------------------------------------- fast CPU path (BLAS)
// The same contracts as the covariance functions above, for the CPU fast path
// (deconv_covariance_blas_cpu.cpp): the sampled patches are gathered into one matrix per
// covariance, centred, and multiplied by one SYRK; the backward is one GEMM and a scatter.
// Arithmetic in T (column means summed in double); temporary buffers come from `scratch`. The
// functions above stay the reference these are tested against.
template <typename T>
void covariance_sampled_forward_blas(const SampledCovShape& s, double eps, const T* x, T* mean,
                                     T* cov, Scratch& scratch);
template <typename T>
void covariance_sampled_backward_blas(const SampledCovShape& s, const T* x, const T* mean,
                                      const T* dmean, const T* dcov, T* dx, Scratch& scratch);
template <typename T>
void covariance_rows_forward_blas(int64_t rows, int64_t n, double eps, const T* x, T* mean, T* cov,
                                  Scratch& scratch);
template <typename T>
void covariance_rows_backward_blas(int64_t rows, int64_t n, const T* x, const T* mean,
                                   const T* dmean, const T* dcov, T* dx, Scratch& scratch);

// ---------------------------------------------------------------- Newton-Schulz
// For each of `count` matrices A (n x n): a = ||A||_F; Y0 = A / a; Z0 = I; `iters` times
// T = (3I - Z Y) / 2; Y = Y T; Z = T Z; then D = Z / sqrt(a).
// `saved` keeps what the backward needs: newton_schulz_saved_elems(count, n, iters) elements
// (the Y and Z entering every step, and a).
inline int64_t newton_schulz_saved_elems(int64_t count, int64_t n, int64_t iters) {
  return count * (2 * iters * n * n + 1);
}
template <typename T>
void newton_schulz_forward_cpu(int64_t count, int64_t n, int64_t iters, const T* a, T* d, T* saved);
// da (count, n, n) is overwritten with the gradient of the unrolled iteration (including the
// Frobenius normalisation) given dd.
template <typename T>
void newton_schulz_backward_cpu(int64_t count, int64_t n, int64_t iters, const T* a, const T* saved,
                                const T* dd, T* da);
void newton_schulz_forward_cuda(int64_t count, int64_t n, int64_t iters, const float* a, float* d,
                                float* saved, Scratch& scratch, cudaStream_t st);
void newton_schulz_backward_cuda(int64_t count, int64_t n, int64_t iters, const float* a,
                                 const float* saved, const float* dd, float* da, Scratch& scratch,
                                 cudaStream_t st);
// The small-n (n <= 32) CUDA kernels run one block per matrix up to this many blocks (default
// 1 << 20), each block looping over several matrices beyond it. Process-wide; tests lower it to
// reach that loop. Returns the previous cap.
int set_newton_schulz_matrix_grid_cap(int cap);

// ---------------------------------------------------------------- folding
// w (O, L) with L = C/groups * k*k, one row per output. groups == 1: L = blocks * nf and row
// element f belongs to block f % blocks at position f / blocks (the interleave of the
// covariance), one matrix D (nf, nf) and mean mu (nf). groups > 1: L == nf, blocks == 1, output
// o uses matrix g = o / (O / groups).
//   w'[o, block j, :] = w[o, block j, :] D_g;   bias'[o] = bias[o] - sum_j w'[o, j, :] . mu_g
struct FoldShape {
  int64_t o = 1, nf = 1, blocks = 1, groups = 1;
  int64_t row() const { return nf * blocks; }
};
// bias may be null (then bias' = -sum w' mu). w_out (O, L), bias_out (O).
template <typename T>
void fold_forward_cpu(const FoldShape& s, const T* w, const T* bias, const T* d, const T* mu,
                      T* w_out, T* bias_out);
// From dw_out (O, L) and dbias_out (O): dw (O, L), dd (groups, nf, nf), dmu (groups, nf) are
// overwritten (the bias gradient is dbias_out itself). w_out is the forward's output.
template <typename T>
void fold_backward_cpu(const FoldShape& s, const T* w, const T* d, const T* mu, const T* w_out,
                       const T* dw_out, const T* dbias_out, T* dw, T* dd, T* dmu);
void fold_forward_cuda(const FoldShape& s, const float* w, const float* bias, const float* d,
                       const float* mu, float* w_out, float* bias_out, Scratch& scratch,
                       cudaStream_t st);
void fold_backward_cuda(const FoldShape& s, const float* w, const float* d, const float* mu,
                        const float* w_out, const float* dw_out, const float* dbias_out, float* dw,
                        float* dd, float* dmu, Scratch& scratch, cudaStream_t st);

// ---------------------------------------------------------------- shared by CPU and CUDA
// Argument checks both implementations run first (the CUDA versions add the limits of their
// launches and of cuBLAS); each throws nd::Error naming `who`.
inline void check_sampled_cov_shape(const SampledCovShape& s, const char* who) {
  ND_CHECK(s.n > 0 && s.c > 0 && s.h > 0 && s.w > 0, who, ": bad input shape (n ", s.n, ", c ", s.c,
           ", h ", s.h, ", w ", s.w, ")");
  ND_CHECK(s.k > 0 && s.stride > 0 && s.dil > 0 && s.pad >= 0, who, ": kernel ", s.k,
           ", sampling stride ", s.stride, " and dilation ", s.dil,
           " must be positive and padding ", s.pad, " non-negative");
  ND_CHECK(s.block > 0 && s.c % s.block == 0, who, ": block ", s.block,
           " must divide the channels ", s.c);
  ND_CHECK(s.groups > 0 && s.c % s.groups == 0, who, ": groups ", s.groups,
           " must divide the channels ", s.c);
  ND_CHECK(s.groups == 1 || s.block == s.c / s.groups, who, ": with groups ", s.groups,
           " the block must be C/groups = ", s.c / s.groups, ", not ", s.block);
  ND_CHECK(s.first >= 0 && (s.first == 0 || (s.k == 1 && s.first < s.stride * s.stride)), who,
           ": first sampled row ", s.first, " needs k == 1 and must be below stride^2");
  ND_CHECK(s.k == 1 || (s.out_h() > 0 && s.out_w() > 0), who, ": the (dilated) kernel ", s.k,
           " does not fit the padded ", s.h, "x", s.w, " input");
}
inline void check_cov_rows_shape(int64_t rows, int64_t n, const char* who) {
  ND_CHECK(rows > 0 && n >= 0, who, ": need rows > 0 and n >= 0 (rows ", rows, ", n ", n, ")");
}
inline void check_newton_schulz_args(int64_t count, int64_t n, int64_t iters, const char* who) {
  ND_CHECK(count >= 0 && n >= 0 && iters >= 0, who, ": count, n and iters must be >= 0 (count ",
           count, ", n ", n, ", iters ", iters, ")");
}
inline void check_fold_shape(const FoldShape& s, const char* who) {
  ND_CHECK(s.o >= 0 && s.nf >= 1 && s.blocks >= 1 && s.groups >= 1, who, ": bad shape (O ", s.o,
           ", nf ", s.nf, ", blocks ", s.blocks, ", groups ", s.groups, ")");
  ND_CHECK(s.o % s.groups == 0, who, ": O (", s.o, ") must be a multiple of groups (", s.groups,
           ")");
  ND_CHECK(s.groups == 1 || s.blocks == 1, who, ": grouped weights (groups ", s.groups,
           ") have one block per row, got blocks ", s.blocks);
}

// The GEMM of `batch` row-major products C_i = op(A_i) op(B_i) (op(A) m x k, op(B) k x n) with the
// given leading dimensions and element strides between consecutive matrices, for gemm_cpu and
// gemm_cuda.
inline GemmShape batched_gemm_shape(int64_t batch, bool trans_a, bool trans_b, int64_t m, int64_t n,
                                    int64_t k, int64_t lda, int64_t stride_a, int64_t ldb,
                                    int64_t stride_b, int64_t ldc, int64_t stride_c) {
  GemmShape g;
  g.trans_a = trans_a, g.trans_b = trans_b;
  g.m = m, g.n = n, g.k = k;
  g.lda = lda, g.ldb = ldb, g.ldc = ldc;
  g.batch = batch;
  g.stride_a = stride_a, g.stride_b = stride_b, g.stride_c = stride_c;
  return g;
}
// `count` n x n matrices stored back to back.
inline GemmShape square_batch_gemm_shape(int64_t count, int64_t n, bool trans_a, bool trans_b) {
  return batched_gemm_shape(count, trans_a, trans_b, n, n, n, n, n * n, n, n * n, n, n * n);
}

}  // namespace nd::kernels
