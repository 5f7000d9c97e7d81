// CPU reference (float and double) of two deconvolution kernels of deconv.h: the coupled
// Newton-Schulz inverse square root of a batch of matrices with the backward of its unrolled
// iteration, and the folding of D and mu into convolution weights and bias with its backward.
// Products go through gemm_cpu (OpenBLAS); norms and dot products accumulate in double.
//
// Layout of `saved` (shared with the CUDA version), with S = count * n * n, step-major so that
// every saved matrix of one step forms a contiguous batch of `count` n x n matrices:
//   Y_i (count, n, n) at saved + (2 i) S       for i = 0 .. iters-1 (the Y entering step i)
//   Z_i (count, n, n) at saved + (2 i + 1) S   (the Z entering step i; Z_0 = I)
//   a   (count)       at saved + 2 iters S     (the Frobenius norm of each input matrix)
// that is newton_schulz_saved_elems(count, n, iters) elements. The forward accepts
// saved == nullptr (then it keeps the intermediates in a temporary buffer).
//
// Folding: a weight row of length L = blocks * nf holds element f in block f % blocks at
// position f / blocks. Both directions gather the rows into (O * blocks, nf) "block rows"
// (row o * blocks + j holds block j of output o; a copy only when blocks > 1), do per-group
// GEMMs against D_g, and scatter back.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/deconv.h"
#include "kernels/matmul.h"

namespace nd::kernels {

namespace {

// C = alpha op(A) op(B) + beta C for `count` n x n row-major matrices stored back to back.
template <typename T>
void batched_square_gemm(int64_t count, int64_t n, bool trans_a, bool trans_b, double alpha,
                         const T* a, const T* b, double beta, T* c) {
  gemm_cpu<T>(square_batch_gemm_shape(count, n, trans_a, trans_b), alpha, a, b, beta, c);
}

// t = 1.5 I - 0.5 p for `count` n x n matrices (in place allowed).
template <typename T>
void make_t(int64_t count, int64_t n, const T* p, T* t) {
  for (int64_t m = 0; m < count; ++m)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const int64_t at = (m * n + r) * n + c;
        t[at] = (r == c ? T(1.5) : T(0)) - T(0.5) * p[at];
      }
}

// (O, blocks * nf) interleaved rows -> (O * blocks, nf) block rows.
template <typename T>
void to_block_rows(const FoldShape& s, const T* src, T* dst) {
  const int64_t L = s.row();
  for (int64_t o = 0; o < s.o; ++o)
    for (int64_t j = 0; j < s.blocks; ++j)
      for (int64_t q = 0; q < s.nf; ++q)
        dst[(o * s.blocks + j) * s.nf + q] = src[o * L + q * s.blocks + j];
}

// (O * blocks, nf) block rows -> (O, blocks * nf) interleaved rows.
template <typename T>
void from_block_rows(const FoldShape& s, const T* src, T* dst) {
  const int64_t L = s.row();
  for (int64_t o = 0; o < s.o; ++o)
    for (int64_t j = 0; j < s.blocks; ++j)
      for (int64_t q = 0; q < s.nf; ++q)
        dst[o * L + q * s.blocks + j] = src[(o * s.blocks + j) * s.nf + q];
}

// The operands of the per-group GEMMs as (O * blocks, nf) block rows: w, and where the product
// goes. With one block they are w and `out` themselves; otherwise w is gathered into w_buf and
// the product goes to out_buf, which the caller scatters back to `out` (from_block_rows).
template <typename T>
std::pair<const T*, T*> block_row_operands(const FoldShape& s, const T* w, T* out,
                                           std::vector<T>& w_buf, std::vector<T>& out_buf) {
  if (s.blocks == 1) return {w, out};
  w_buf.resize(static_cast<size_t>(s.o * s.row()));
  out_buf.resize(static_cast<size_t>(s.o * s.row()));
  to_block_rows(s, w, w_buf.data());
  return {w_buf.data(), out_buf.data()};
}

// Per group g: C_g = alpha op(A_g) op(B_g) + beta C_g with the given shapes and strides.
template <typename T>
void grouped_gemm(int64_t groups, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a,
                  int64_t lda, int64_t sa, const T* b, int64_t ldb, int64_t sb, T* c, int64_t ldc,
                  int64_t sc) {
  gemm_cpu<T>(batched_gemm_shape(groups, ta, tb, m, n, k, lda, sa, ldb, sb, ldc, sc), 1.0, a, b,
              0.0, c);
}

}  // namespace

// ---------------------------------------------------------------- Newton-Schulz

template <typename T>
void newton_schulz_forward_cpu(int64_t count, int64_t n, int64_t iters, const T* a, T* d,
                               T* saved) {
  check_newton_schulz_args(count, n, iters, "newton_schulz");
  if (count == 0 || n == 0) return;
  const int64_t nn = n * n, S = count * nn;
  std::vector<T> own;
  if (saved == nullptr) {
    own.resize(static_cast<size_t>(newton_schulz_saved_elems(count, n, iters)));
    saved = own.data();
  }
  T* norm = saved + 2 * iters * S;
  for (int64_t m = 0; m < count; ++m) {
    double ss = 0.0;
    for (int64_t e = 0; e < nn; ++e) ss += double(a[m * nn + e]) * double(a[m * nn + e]);
    norm[m] = T(std::sqrt(ss));
  }
  if (iters == 0) {  // D = I / sqrt(a)
    for (int64_t m = 0; m < count; ++m)
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < n; ++c)
          d[(m * n + r) * n + c] = (r == c ? T(1) : T(0)) / std::sqrt(norm[m]);
    return;
  }
  T* y0 = saved;
  T* z0 = saved + S;
  for (int64_t m = 0; m < count; ++m)
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < n; ++c) {
        const int64_t at = (m * n + r) * n + c;
        y0[at] = a[at] / norm[m];
        z0[at] = r == c ? T(1) : T(0);
      }
  std::vector<T> t(static_cast<size_t>(S));
  for (int64_t i = 0; i < iters; ++i) {
    const T* y = saved + 2 * i * S;
    const T* z = y + S;
    // Products with Z_0 = I are copies (the GEMM would return them exactly): two of the first
    // step's three products are skipped.
    if (i == 0) {
      make_t(count, n, y, t.data());  // T = 1.5I - Y/2
    } else {
      batched_square_gemm<T>(count, n, false, false, 1.0, z, y, 0.0, t.data());  // P = Z Y
      make_t(count, n, t.data(), t.data());                                      // T = 1.5I - P/2
    }
    const bool last = i == iters - 1;
    if (!last) {  // Y_{i+1} = Y T (the last step's Y is not needed)
      batched_square_gemm<T>(count, n, false, false, 1.0, y, t.data(), 0.0,
                             saved + 2 * (i + 1) * S);
    }
    T* z_next = last ? d : saved + (2 * (i + 1) + 1) * S;  // Z_{i+1} = T Z
    if (i == 0)
      std::copy(t.begin(), t.end(), z_next);
    else
      batched_square_gemm<T>(count, n, false, false, 1.0, t.data(), z, 0.0, z_next);
  }
  for (int64_t m = 0; m < count; ++m) {
    const T root = std::sqrt(norm[m]);
    for (int64_t e = 0; e < nn; ++e) d[m * nn + e] = d[m * nn + e] / root;
  }
}

template <typename T>
void newton_schulz_backward_cpu(int64_t count, int64_t n, int64_t iters, const T* a, const T* saved,
                                const T* dd, T* da) {
  check_newton_schulz_args(count, n, iters, "newton_schulz");
  if (count == 0 || n == 0) return;
  const int64_t nn = n * n, S = count * nn;
  const T* norm = saved + 2 * iters * S;
  std::vector<double> s1(static_cast<size_t>(count), 0.0);  // sum(dD * Z_n)
  std::vector<T> dy(static_cast<size_t>(S), T(0));  // gradient of the current Y (Y_n is unused)
  if (iters == 0) {
    for (int64_t m = 0; m < count; ++m)
      for (int64_t r = 0; r < n; ++r) s1[m] += double(dd[(m * n + r) * n + r]);
  } else {
    std::vector<T> t(static_cast<size_t>(S)), dz(t.size()), dt(t.size()), dy2(t.size()),
        dz2(t.size());
    bool has_dy = false;
    for (int64_t i = iters - 1; i >= 0; --i) {
      const T* y = saved + 2 * i * S;
      const T* z = y + S;
      // As in the forward pass, products with Z_0 = I (i == 0) are copies.
      if (i == 0) {
        make_t(count, n, y, t.data());
      } else {
        batched_square_gemm<T>(count, n, false, false, 1.0, z, y, 0.0, t.data());
        make_t(count, n, t.data(), t.data());
      }
      if (i == iters - 1) {
        // Z_n = T Z_{n-1} (into dz2 as a temporary); dZ_n = dD / sqrt(a).
        if (i == 0)
          std::copy(t.begin(), t.end(), dz2.begin());
        else
          batched_square_gemm<T>(count, n, false, false, 1.0, t.data(), z, 0.0, dz2.data());
        for (int64_t m = 0; m < count; ++m) {
          const T root = std::sqrt(norm[m]);
          double acc = 0.0;
          for (int64_t e = 0; e < nn; ++e) {
            acc += double(dd[m * nn + e]) * double(dz2[m * nn + e]);
            dz[m * nn + e] = dd[m * nn + e] / root;
          }
          s1[m] = acc;
        }
      }
      // dT = Y^T dY' + dZ' Z^T
      if (i == 0)
        std::copy(dz.begin(), dz.end(), dt.begin());
      else
        batched_square_gemm<T>(count, n, false, true, 1.0, dz.data(), z, 0.0, dt.data());
      if (has_dy) batched_square_gemm<T>(count, n, true, false, 1.0, y, dy.data(), 1.0, dt.data());
      // dY = dY' T^T - 0.5 Z^T dT
      if (i == 0)
        for (size_t e = 0; e < dt.size(); ++e) dy2[e] = T(-0.5) * dt[e];
      else
        batched_square_gemm<T>(count, n, true, false, -0.5, z, dt.data(), 0.0, dy2.data());
      if (has_dy)
        batched_square_gemm<T>(count, n, false, true, 1.0, dy.data(), t.data(), 1.0, dy2.data());
      // dZ = T^T dZ' - 0.5 dT Y^T (Z_0 = I is a constant: not needed for i == 0)
      if (i > 0) {
        batched_square_gemm<T>(count, n, true, false, 1.0, t.data(), dz.data(), 0.0, dz2.data());
        batched_square_gemm<T>(count, n, false, true, -0.5, dt.data(), y, 1.0, dz2.data());
      }
      std::swap(dy, dy2);
      std::swap(dz, dz2);
      has_dy = true;
    }
  }
  // Y_0 = A / a and a = ||A||_F.
  for (int64_t m = 0; m < count; ++m) {
    const double an = double(norm[m]);
    double s2 = 0.0;
    for (int64_t e = 0; e < nn; ++e) s2 += double(dy[m * nn + e]) * double(a[m * nn + e]);
    const double da_total = -0.5 * s1[m] / (an * std::sqrt(an)) - s2 / (an * an);
    for (int64_t e = 0; e < nn; ++e)
      da[m * nn + e] = T(double(dy[m * nn + e]) / an + da_total * double(a[m * nn + e]) / an);
  }
}

// ---------------------------------------------------------------- folding

template <typename T>
void fold_forward_cpu(const FoldShape& s, const T* w, const T* bias, const T* d, const T* mu,
                      T* w_out, T* bias_out) {
  check_fold_shape(s, "fold");
  if (s.o == 0) return;
  const int64_t L = s.row(), og = s.o / s.groups, rows = og * s.blocks;
  std::vector<T> wb_buf, out_buf;
  const auto [wb, wb_out] = block_row_operands(s, w, w_out, wb_buf, out_buf);
  // W'_g (rows, nf) = W_g (rows, nf) D_g (nf, nf)
  grouped_gemm<T>(s.groups, false, false, rows, s.nf, s.nf, wb, s.nf, rows * s.nf, d, s.nf,
                  s.nf * s.nf, wb_out, s.nf, rows * s.nf);
  if (s.blocks > 1) from_block_rows(s, wb_out, w_out);
  for (int64_t o = 0; o < s.o; ++o) {
    const T* mg = mu + (o / og) * s.nf;
    double acc = 0.0;
    for (int64_t f = 0; f < L; ++f) acc += double(w_out[o * L + f]) * double(mg[f / s.blocks]);
    bias_out[o] = T((bias ? double(bias[o]) : 0.0) - acc);
  }
}

template <typename T>
void fold_backward_cpu(const FoldShape& s, const T* w, const T* d, const T* mu, const T* w_out,
                       const T* dw_out, const T* dbias_out, T* dw, T* dd, T* dmu) {
  check_fold_shape(s, "fold");
  const int64_t L = s.row(), og = s.o / s.groups, rows = og * s.blocks;
  if (s.o == 0) {
    for (int64_t e = 0; e < s.groups * s.nf * s.nf; ++e) dd[e] = T(0);
    for (int64_t e = 0; e < s.groups * s.nf; ++e) dmu[e] = T(0);
    return;
  }
  // G = dW' + (the part through bias'): dW'[o, f] - dbias'[o] mu_g[f / blocks], as block rows.
  std::vector<T> g(static_cast<size_t>(s.o * L));
  for (int64_t o = 0; o < s.o; ++o) {
    const T* mg = mu + (o / og) * s.nf;
    for (int64_t j = 0; j < s.blocks; ++j)
      for (int64_t q = 0; q < s.nf; ++q)
        g[(o * s.blocks + j) * s.nf + q] = dw_out[o * L + q * s.blocks + j] - dbias_out[o] * mg[q];
  }
  std::vector<T> wb_buf, dwb_buf;
  const auto [wb, dwb] = block_row_operands(s, w, dw, wb_buf, dwb_buf);
  // dW_g (rows, nf) = G_g D_g^T
  grouped_gemm<T>(s.groups, false, true, rows, s.nf, s.nf, g.data(), s.nf, rows * s.nf, d, s.nf,
                  s.nf * s.nf, dwb, s.nf, rows * s.nf);
  if (s.blocks > 1) from_block_rows(s, dwb, dw);
  // dD_g (nf, nf) = W_g^T G_g
  grouped_gemm<T>(s.groups, true, false, s.nf, s.nf, rows, wb, s.nf, rows * s.nf, g.data(), s.nf,
                  rows * s.nf, dd, s.nf, s.nf * s.nf);
  // dmu_g[q] = - sum over rows o of group g and blocks j of dbias'[o] w'[o, q * blocks + j]
  std::vector<double> acc(static_cast<size_t>(s.groups * s.nf), 0.0);
  for (int64_t o = 0; o < s.o; ++o) {
    double* ag = acc.data() + (o / og) * s.nf;
    for (int64_t f = 0; f < L; ++f)
      ag[f / s.blocks] += double(dbias_out[o]) * double(w_out[o * L + f]);
  }
  for (int64_t e = 0; e < s.groups * s.nf; ++e) dmu[e] = T(-acc[e]);
}

#define ND_DECONV_ISQRT_FOLD_INSTANTIATE(T)                                                       \
  template void newton_schulz_forward_cpu<T>(int64_t, int64_t, int64_t, const T*, T*, T*);        \
  template void newton_schulz_backward_cpu<T>(int64_t, int64_t, int64_t, const T*, const T*,      \
                                              const T*, T*);                                      \
  template void fold_forward_cpu<T>(const FoldShape&, const T*, const T*, const T*, const T*, T*, \
                                    T*);                                                          \
  template void fold_backward_cpu<T>(const FoldShape&, const T*, const T*, const T*, const T*,    \
                                     const T*, const T*, T*, T*, T*);
ND_DECONV_ISQRT_FOLD_INSTANTIATE(float)
ND_DECONV_ISQRT_FOLD_INSTANTIATE(double)
#undef ND_DECONV_ISQRT_FOLD_INSTANTIATE

}  // namespace nd::kernels
