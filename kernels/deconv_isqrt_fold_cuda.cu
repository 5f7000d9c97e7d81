// CUDA versions (float32) of the Newton-Schulz inverse square root (forward and the backward of
// the unrolled iteration) and of the weight folding, see deconv.h and deconv_isqrt_fold_cpu.cpp
// (which documents the `saved` layout both share: Y_i and Z_i step-major as contiguous batches of
// `count` n x n matrices, then the `count` Frobenius norms).
//
// Newton-Schulz, n <= kSmallN (32): one thread block per matrix runs the whole iteration in
// shared memory (matrices padded to a leading dimension of n + 1 against bank conflicts), one
// thread per matrix element; the forward and the backward are one launch each.
// Larger n: every product is one cuBLAS strided-batched GEMM over the `count` matrices (through
// gemm_cuda, TF32 off), with small elementwise kernels between them; the Frobenius norms and the
// backward's dot products are deterministic two-stage reductions (per-matrix partial sums from
// several blocks, then a fixed-order finish). Step 0 uses Z_0 = I: T_0 = 1.5 I - 0.5 Y_0 and
// Z_1 = T_0 come from one elementwise kernel, and the last step skips Y_n, so 5 steps take 12
// GEMMs forward; the backward recomputes each T_i from the saved Y_i, Z_i (GEMMs with Z_0 = I
// are replaced by copies).
//
// Folding: rows of w are gathered into (O * blocks, nf) block rows when blocks > 1 (for
// blocks == 1 w already is that matrix), multiplied by D_g with one strided-batched GEMM over the
// groups and scattered back; bias' is a warp-per-output dot product. The backward fuses the
// bias term into the gather of dW' (G = dW' - dbias' mu), then dW = G D^T and dD = W^T G are
// GEMMs and dmu is a GEMM (w'^T dbias') followed by a sum over the blocks.
#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <utility>

#include "kernels/cuda_check.h"
#include "kernels/cuda_reduce.cuh"
#include "kernels/deconv.h"
#include "kernels/matmul.h"

namespace nd::kernels {

namespace {

constexpr int kSmallN = 32;  // largest n of the one-block-per-matrix kernels
constexpr int kElemBlock = 256;
constexpr int kReduceBlock = 256;
constexpr int kMaxGridY = 65535;

__device__ __forceinline__ void swap_ptr(float*& a, float*& b) {
  float* t = a;
  a = b;
  b = t;
}

template <typename T>
T* scratch_array(Scratch& scratch, int64_t elems) {
  return static_cast<T*>(scratch.get(static_cast<size_t>(std::max<int64_t>(elems, 1)) * sizeof(T)));
}

// ------------------------------------------------------------------ Newton-Schulz, small n

// Threads of the small-n kernels: one per matrix element, a whole number of warps.
int small_threads(int64_t n) {
  return static_cast<int>(std::min<int64_t>(1024, (n * n + 31) / 32 * 32));
}

std::atomic<int> g_matrix_grid_cap{1 << 20};

int matrix_grid(int64_t count) {
  return static_cast<int>(std::min<int64_t>(count, g_matrix_grid_cap.load()));
}

// Shared-memory matrices have leading dimension n + 1. Element (r, c) of the product of two
// such matrices with optional transposes: sum_k op(A)[r][k] op(B)[k][c].
template <bool TA, bool TB>
__device__ __forceinline__ float sm_dot(const float* A, const float* B, int r, int c, int n,
                                        int ld) {
  float acc = 0.0f;
  for (int k = 0; k < n; ++k) {
    const float av = TA ? A[k * ld + r] : A[r * ld + k];
    const float bv = TB ? B[c * ld + k] : B[k * ld + c];
    acc = fmaf(av, bv, acc);
  }
  return acc;
}

__global__ void __launch_bounds__(1024)
    ns_small_forward_kernel(int64_t count, int n, int iters, const float* a, float* d,
                            float* __restrict__ saved) {
  ND_DYNAMIC_SHARED(float, smem);
  ND_SHARED(float, red, [32]);
  const int ld = n + 1, msz = n * ld, nn = n * n;
  float* y = smem;
  float* z = y + msz;
  float* t = z + msz;
  float* y2 = t + msz;
  float* z2 = y2 + msz;
  const int64_t S = count * nn;
  for (int64_t m = blockIdx.x; m < count; m += gridDim.x) {
    const float* am = a + m * nn;
    float ss = 0.0f;
    for (int e = threadIdx.x; e < nn; e += blockDim.x) {
      const float v = am[e];
      y[(e / n) * ld + e % n] = v;
      ss = fmaf(v, v, ss);
    }
    const float norm = sqrtf(block_sum(ss, red));  // block_sum synchronises
    if (threadIdx.x == 0) saved[2 * int64_t(iters) * S + m] = norm;
    for (int e = threadIdx.x; e < nn; e += blockDim.x) {
      const int r = e / n, c = e % n;
      y[r * ld + c] = y[r * ld + c] / norm;
      z[r * ld + c] = r == c ? 1.0f : 0.0f;
    }
    __syncthreads();
    float* yc = y;
    float* zc = z;
    float* yn = y2;
    float* zn = z2;
    for (int i = 0; i < iters; ++i) {
      float* ys = saved + 2 * int64_t(i) * S + m * nn;
      float* zs = ys + S;
      for (int e = threadIdx.x; e < nn; e += blockDim.x) {
        const int r = e / n, c = e % n;
        ys[e] = yc[r * ld + c];
        zs[e] = zc[r * ld + c];
        t[r * ld + c] = (r == c ? 1.5f : 0.0f) - 0.5f * sm_dot<false, false>(zc, yc, r, c, n, ld);
      }
      __syncthreads();
      const bool last = i == iters - 1;
      for (int e = threadIdx.x; e < nn; e += blockDim.x) {
        const int r = e / n, c = e % n;
        if (!last) yn[r * ld + c] = sm_dot<false, false>(yc, t, r, c, n, ld);
        zn[r * ld + c] = sm_dot<false, false>(t, zc, r, c, n, ld);
      }
      __syncthreads();
      swap_ptr(yc, yn);
      swap_ptr(zc, zn);
    }
    const float root = sqrtf(norm);
    for (int e = threadIdx.x; e < nn; e += blockDim.x)
      d[m * nn + e] = zc[(e / n) * ld + e % n] / root;
    // No barrier: the next matrix writes only y and red before its first one, never zc.
  }
}

__global__ void __launch_bounds__(1024)
    ns_small_backward_kernel(int64_t count, int n, int iters, const float* a,
                             const float* __restrict__ saved, const float* dd, float* da) {
  ND_DYNAMIC_SHARED(float, smem);
  ND_SHARED(float, red, [32]);
  const int ld = n + 1, msz = n * ld, nn = n * n;
  float* y = smem;
  float* z = y + msz;
  float* t = z + msz;
  float* dt = t + msz;
  float* buf[4] = {dt + msz, dt + 2 * msz, dt + 3 * msz, dt + 4 * msz};
  const int64_t S = count * nn;
  for (int64_t m = blockIdx.x; m < count; m += gridDim.x) {
    const float norm = saved[2 * int64_t(iters) * S + m];
    const float root = sqrtf(norm);
    const float* ddm = dd + m * nn;
    float* dy = buf[0];
    float* dz = buf[1];
    float* dy2 = buf[2];
    float* dz2 = buf[3];
    float s1 = 0.0f;  // sum(dD * Z_n)
    bool has_dy = false;
    if (iters == 0) {
      for (int e = threadIdx.x; e < nn; e += blockDim.x)
        if (e / n == e % n) s1 += ddm[e];
    }
    for (int i = iters - 1; i >= 0; --i) {
      const float* ys = saved + 2 * int64_t(i) * S + m * nn;
      const float* zs = ys + S;
      for (int e = threadIdx.x; e < nn; e += blockDim.x) {
        const int at = (e / n) * ld + e % n;
        y[at] = ys[e];
        z[at] = zs[e];
      }
      __syncthreads();
      for (int e = threadIdx.x; e < nn; e += blockDim.x) {
        const int r = e / n, c = e % n;
        t[r * ld + c] = (r == c ? 1.5f : 0.0f) - 0.5f * sm_dot<false, false>(z, y, r, c, n, ld);
      }
      __syncthreads();
      if (i == iters - 1) {  // Z_n = T Z; dZ_n = dD / sqrt(a)
        for (int e = threadIdx.x; e < nn; e += blockDim.x) {
          const int r = e / n, c = e % n;
          s1 = fmaf(ddm[e], sm_dot<false, false>(t, z, r, c, n, ld), s1);
          dz[r * ld + c] = ddm[e] / root;
        }
        __syncthreads();
      }
      // dT = Y^T dY' + dZ' Z^T
      for (int e = threadIdx.x; e < nn; e += blockDim.x) {
        const int r = e / n, c = e % n;
        float v = sm_dot<false, true>(dz, z, r, c, n, ld);
        if (has_dy) v += sm_dot<true, false>(y, dy, r, c, n, ld);
        dt[r * ld + c] = v;
      }
      __syncthreads();
      // dY = dY' T^T - 0.5 Z^T dT;  dZ = T^T dZ' - 0.5 dT Y^T (not needed for Z_0)
      for (int e = threadIdx.x; e < nn; e += blockDim.x) {
        const int r = e / n, c = e % n;
        float v = -0.5f * sm_dot<true, false>(z, dt, r, c, n, ld);
        if (has_dy) v += sm_dot<false, true>(dy, t, r, c, n, ld);
        dy2[r * ld + c] = v;
        if (i > 0)
          dz2[r * ld + c] = sm_dot<true, false>(t, dz, r, c, n, ld) -
                            0.5f * sm_dot<false, true>(dt, y, r, c, n, ld);
      }
      __syncthreads();
      swap_ptr(dy, dy2);
      swap_ptr(dz, dz2);
      has_dy = true;
    }
    s1 = block_sum(s1, red);
    // Y_0 = A / a, a = ||A||_F
    const float* am = a + m * nn;
    float s2 = 0.0f;
    if (has_dy)
      for (int e = threadIdx.x; e < nn; e += blockDim.x)
        s2 = fmaf(dy[(e / n) * ld + e % n], am[e], s2);
    s2 = block_sum(s2, red);
    const float coef = -0.5f * s1 / (norm * root) - s2 / (norm * norm);
    for (int e = threadIdx.x; e < nn; e += blockDim.x) {
      const float g = has_dy ? dy[(e / n) * ld + e % n] / norm : 0.0f;
      da[m * nn + e] = g + coef * am[e] / norm;
    }
    // No barrier: the next matrix writes only y, z and red before its first one, never dy.
  }
}

// ------------------------------------------------------------------ Newton-Schulz, large n

// Blocks per matrix of the two-stage reductions.
int reduce_blocks(int64_t nn) {
  return static_cast<int>(
      std::clamp<int64_t>((nn + kReduceBlock * 4 - 1) / (kReduceBlock * 4), 1, 64));
}

// partial[m * bpm + b] = sum over block b's share of matrix m of x * y (y == x: squares). When
// x_scaled is set it also writes x_scaled = x / sqrt(norm[m]).
__global__ void ns_dot_partial_kernel(int64_t count, int64_t nn, const float* __restrict__ x,
                                      const float* __restrict__ yv, float* __restrict__ partial,
                                      const float* __restrict__ norm,
                                      float* __restrict__ x_scaled) {
  ND_SHARED(float, red, [32]);
  const int bpm = gridDim.x;
  for (int64_t m = blockIdx.y; m < count; m += gridDim.y) {
    const float* xm = x + m * nn;
    const float* ym = yv + m * nn;
    const float root = x_scaled ? sqrtf(norm[m]) : 1.0f;
    float s = 0.0f;
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < nn;
         e += int64_t(bpm) * blockDim.x) {
      const float xe = xm[e];
      s = fmaf(xe, ym[e], s);
      if (x_scaled) x_scaled[m * nn + e] = xe / root;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) partial[m * bpm + blockIdx.x] = s;
  }
}

void launch_dot_partial(int64_t count, int64_t nn, const float* x, const float* yv, float* partial,
                        int bpm, const float* norm, float* x_scaled, cudaStream_t st) {
  const dim3 grid(static_cast<unsigned>(bpm),
                  static_cast<unsigned>(std::min<int64_t>(count, kMaxGridY)));
  ND_LAUNCH(grid, kReduceBlock, 0, st, ns_dot_partial_kernel)
  (count, nn, x, yv, partial, norm, x_scaled);
}

// norm[m] = sqrt(sum of the partial sums of squares of matrix m), in a fixed order.
__global__ void ns_norm_finish_kernel(int64_t count, int bpm, const float* __restrict__ partial,
                                      float* __restrict__ norm) {
  for (int64_t m = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; m < count;
       m += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.0f;
    for (int b = 0; b < bpm; ++b) s += partial[m * bpm + b];
    norm[m] = sqrtf(s);
  }
}

// coef[m] = -0.5 a^-1.5 s1 - s2 / a^2 from the partial sums s1 = sum(dD Z_n), s2 = sum(dY_0 A).
__global__ void ns_coef_kernel(int64_t count, int bpm, const float* __restrict__ p1,
                               const float* __restrict__ p2, const float* __restrict__ norm,
                               float* __restrict__ coef) {
  for (int64_t m = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; m < count;
       m += int64_t(gridDim.x) * blockDim.x) {
    float s1 = 0.0f, s2 = 0.0f;
    for (int b = 0; b < bpm; ++b) {
      s1 += p1[m * bpm + b];
      if (p2) s2 += p2[m * bpm + b];
    }
    const float a = norm[m];
    coef[m] = -0.5f * s1 / (a * sqrtf(a)) - s2 / (a * a);
  }
}

// Y_0 = A / a, Z_0 = I and T_0 = 1.5 I - 0.5 Y_0.
__global__ void ns_init_kernel(int64_t total, int64_t n, const float* __restrict__ a,
                               const float* __restrict__ norm, float* __restrict__ y0,
                               float* __restrict__ z0, float* __restrict__ t0) {
  const int64_t nn = n * n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = idx / nn, e = idx - m * nn;
    const bool diag = e / n == e % n;
    const float y = a[idx] / norm[m];
    y0[idx] = y;
    z0[idx] = diag ? 1.0f : 0.0f;
    t0[idx] = (diag ? 1.5f : 0.0f) - 0.5f * y;
  }
}

// t = 1.5 I - 0.5 p (in place allowed).
__global__ void ns_make_t_kernel(int64_t total, int64_t n, const float* p, float* t) {
  const int64_t nn = n * n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = idx % nn;
    t[idx] = (e / n == e % n ? 1.5f : 0.0f) - 0.5f * p[idx];
  }
}

// x = x / sqrt(norm[m]); with identity set, x = I / sqrt(norm[m]) (x is not read).
__global__ void ns_scale_kernel(int64_t total, int64_t n, const float* __restrict__ norm, float* x,
                                bool identity) {
  const int64_t nn = n * n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = idx / nn, e = idx - m * nn;
    const float v = identity ? (e / n == e % n ? 1.0f : 0.0f) : x[idx];
    x[idx] = v / sqrtf(norm[m]);
  }
}

// x = I for every matrix.
__global__ void ns_identity_kernel(int64_t total, int64_t n, float* __restrict__ x) {
  const int64_t nn = n * n;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = idx % nn;
    x[idx] = e / n == e % n ? 1.0f : 0.0f;
  }
}

// out = alpha x + beta out (out is not read when beta == 0).
__global__ void ns_axpby_kernel(int64_t total, float alpha, const float* __restrict__ x, float beta,
                                float* __restrict__ out) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const float v = alpha * x[idx];
    out[idx] = beta == 0.0f ? v : v + beta * out[idx];
  }
}

// dA = dY_0 / a + coef * A / a (dY_0 may be null: zero).
__global__ void ns_grad_input_kernel(int64_t total, int64_t nn, const float* __restrict__ a,
                                     const float* __restrict__ dy0, const float* __restrict__ norm,
                                     const float* __restrict__ coef, float* __restrict__ da) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t m = idx / nn;
    const float an = norm[m];
    const float g = dy0 ? dy0[idx] / an : 0.0f;
    da[idx] = g + coef[m] * a[idx] / an;
  }
}

// Batched n x n products over the `count` matrices: C = alpha op(A) op(B) + beta C.
struct SquareGemm {
  int64_t count, n;
  cudaStream_t st;
  void operator()(bool ta, bool tb, double alpha, const float* a, const float* b, double beta,
                  float* c) const {
    gemm_cuda(square_batch_gemm_shape(count, n, ta, tb), alpha, a, b, beta, c, st);
  }
};

// The shared check of deconv.h, then the int the kernels take.
void check_ns_args(int64_t count, int64_t n, int64_t iters) {
  check_newton_schulz_args(count, n, iters, "newton_schulz_cuda");
  ND_CHECK(iters <= INT_MAX && n <= INT_MAX && count <= INT_MAX,
           "newton_schulz_cuda: count, n and iters must be at most INT_MAX (count ", count, ", n ",
           n, ", iters ", iters, ")");
}

}  // namespace

int set_newton_schulz_matrix_grid_cap(int cap) {
  ND_CHECK(cap >= 1, "set_newton_schulz_matrix_grid_cap: cap must be >= 1, got ", cap);
  return g_matrix_grid_cap.exchange(cap);
}

void newton_schulz_forward_cuda(int64_t count, int64_t n, int64_t iters, const float* a, float* d,
                                float* saved, Scratch& scratch, cudaStream_t st) {
  check_ns_args(count, n, iters);
  if (count == 0 || n == 0) return;
  const int64_t nn = n * n, S = count * nn;
  if (saved == nullptr)
    saved = scratch_array<float>(scratch, newton_schulz_saved_elems(count, n, iters));
  if (n <= kSmallN) {
    const size_t smem = 5 * size_t(n) * size_t(n + 1) * sizeof(float);
    ND_LAUNCH(matrix_grid(count), small_threads(n), smem, st, ns_small_forward_kernel)
    (count, static_cast<int>(n), static_cast<int>(iters), a, d, saved);
    return;
  }
  const int eg = grid_for(S, kElemBlock);
  float* norm = saved + 2 * iters * S;
  const int bpm = reduce_blocks(nn);
  float* partial = scratch_array<float>(scratch, count * bpm);
  launch_dot_partial(count, nn, a, a, partial, bpm, nullptr, nullptr, st);
  ND_LAUNCH(grid_for(count, kElemBlock), kElemBlock, 0, st, ns_norm_finish_kernel)
  (count, bpm, partial, norm);
  if (iters == 0) {
    ND_LAUNCH(eg, kElemBlock, 0, st, ns_scale_kernel)(S, n, norm, d, true);
    return;
  }
  const SquareGemm mm{count, n, st};
  auto Y = [&](int64_t i) { return saved + 2 * i * S; };
  auto Z = [&](int64_t i) { return saved + (2 * i + 1) * S; };
  // Step 0 (Z_0 = I): T_0 = 1.5 I - 0.5 Y_0 and Z_1 = T_0, written straight to Z_1 (or to d).
  float* t0 = iters > 1 ? Z(1) : d;
  ND_LAUNCH(eg, kElemBlock, 0, st, ns_init_kernel)(S, n, a, norm, Y(0), Z(0), t0);
  if (iters > 1) {
    mm(false, false, 1.0, Y(0), t0, 0.0, Y(1));  // Y_1 = Y_0 T_0
    float* t = scratch_array<float>(scratch, S);
    for (int64_t i = 1; i < iters; ++i) {
      mm(false, false, 1.0, Z(i), Y(i), 0.0, t);  // P = Z Y
      ND_LAUNCH(eg, kElemBlock, 0, st, ns_make_t_kernel)(S, n, t, t);
      const bool last = i == iters - 1;
      if (!last) mm(false, false, 1.0, Y(i), t, 0.0, Y(i + 1));  // Y_{i+1} = Y T
      mm(false, false, 1.0, t, Z(i), 0.0, last ? d : Z(i + 1));  // Z_{i+1} = T Z
    }
  }
  ND_LAUNCH(eg, kElemBlock, 0, st, ns_scale_kernel)(S, n, norm, d, false);  // D = Z_n / sqrt(a)
}

void newton_schulz_backward_cuda(int64_t count, int64_t n, int64_t iters, const float* a,
                                 const float* saved, const float* dd, float* da, Scratch& scratch,
                                 cudaStream_t st) {
  check_ns_args(count, n, iters);
  if (count == 0 || n == 0) return;
  const int64_t nn = n * n, S = count * nn;
  if (n <= kSmallN) {
    const size_t smem = 8 * size_t(n) * size_t(n + 1) * sizeof(float);
    ND_LAUNCH(matrix_grid(count), small_threads(n), smem, st, ns_small_backward_kernel)
    (count, static_cast<int>(n), static_cast<int>(iters), a, saved, dd, da);
    return;
  }
  const int eg = grid_for(S, kElemBlock);
  const float* norm = saved + 2 * iters * S;
  const int bpm = reduce_blocks(nn);
  float* p1 = scratch_array<float>(scratch, count * bpm);
  float* p2 = scratch_array<float>(scratch, count * bpm);
  float* coef = scratch_array<float>(scratch, count);
  if (iters == 0) {  // D = I / sqrt(a): s1 = trace(dD), dY_0 = 0
    float* eye = scratch_array<float>(scratch, S);
    ND_LAUNCH(eg, kElemBlock, 0, st, ns_identity_kernel)(S, n, eye);
    launch_dot_partial(count, nn, dd, eye, p1, bpm, nullptr, nullptr, st);
    ND_LAUNCH(grid_for(count, kElemBlock), kElemBlock, 0, st, ns_coef_kernel)
    (count, bpm, p1, nullptr, norm, coef);
    ND_LAUNCH(eg, kElemBlock, 0, st, ns_grad_input_kernel)(S, nn, a, nullptr, norm, coef, da);
    return;
  }
  const SquareGemm mm{count, n, st};
  auto Y = [&](int64_t i) { return saved + 2 * i * S; };
  auto Z = [&](int64_t i) { return saved + (2 * i + 1) * S; };
  float* t = scratch_array<float>(scratch, S);
  float* dt = scratch_array<float>(scratch, S);
  float* dy = scratch_array<float>(scratch, S);
  float* dz = scratch_array<float>(scratch, S);
  float* dy2 = scratch_array<float>(scratch, S);
  float* dz2 = scratch_array<float>(scratch, S);
  bool has_dy = false;
  for (int64_t i = iters - 1; i >= 0; --i) {
    // T_i = 1.5 I - 0.5 Z_i Y_i (Z_0 = I)
    if (i == 0) {
      ND_LAUNCH(eg, kElemBlock, 0, st, ns_make_t_kernel)(S, n, Y(0), t);
    } else {
      mm(false, false, 1.0, Z(i), Y(i), 0.0, t);
      ND_LAUNCH(eg, kElemBlock, 0, st, ns_make_t_kernel)(S, n, t, t);
    }
    if (i == iters - 1) {   // s1 = sum(dD * Z_n) with Z_n = T Z; dZ_n = dD / sqrt(a)
      const float* zn = t;  // Z_1 = T_0
      if (i > 0) {
        mm(false, false, 1.0, t, Z(i), 0.0, dz2);
        zn = dz2;
      }
      launch_dot_partial(count, nn, dd, zn, p1, bpm, norm, dz, st);
    }
    // dT = dZ' Z^T + Y^T dY'
    if (i == 0) {
      ND_LAUNCH(eg, kElemBlock, 0, st, ns_axpby_kernel)(S, 1.0f, dz, 0.0f, dt);
    } else {
      mm(false, true, 1.0, dz, Z(i), 0.0, dt);
    }
    if (has_dy) mm(true, false, 1.0, Y(i), dy, 1.0, dt);
    // dY = dY' T^T - 0.5 Z^T dT
    if (has_dy) mm(false, true, 1.0, dy, t, 0.0, dy2);
    if (i == 0) {
      ND_LAUNCH(eg, kElemBlock, 0, st, ns_axpby_kernel)(S, -0.5f, dt, has_dy ? 1.0f : 0.0f, dy2);
    } else {
      mm(true, false, -0.5, Z(i), dt, has_dy ? 1.0 : 0.0, dy2);
    }
    // dZ = T^T dZ' - 0.5 dT Y^T (Z_0 is a constant)
    if (i > 0) {
      mm(true, false, 1.0, t, dz, 0.0, dz2);
      mm(false, true, -0.5, dt, Y(i), 1.0, dz2);
    }
    std::swap(dy, dy2);
    std::swap(dz, dz2);
    has_dy = true;
  }
  // Y_0 = A / a, a = ||A||_F
  launch_dot_partial(count, nn, dy, a, p2, bpm, nullptr, nullptr, st);
  ND_LAUNCH(grid_for(count, kElemBlock), kElemBlock, 0, st, ns_coef_kernel)
  (count, bpm, p1, p2, norm, coef);
  ND_LAUNCH(eg, kElemBlock, 0, st, ns_grad_input_kernel)(S, nn, a, dy, norm, coef, da);
}

// ------------------------------------------------------------------ folding

namespace {

// dst (O * blocks, nf) block rows from src (O, blocks * nf) interleaved rows:
// dst[(o * blocks + j) * nf + q] = src[o * L + q * blocks + j] - (dbias ? dbias[o] mu_g[q] : 0).
__global__ void fold_gather_kernel(int64_t total, int64_t nf, int64_t blocks, int64_t og,
                                   const float* __restrict__ src, const float* __restrict__ dbias,
                                   const float* __restrict__ mu, float* __restrict__ dst) {
  const int64_t L = nf * blocks;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t q = idx % nf, row = idx / nf;
    const int64_t j = row % blocks, o = row / blocks;
    float v = src[o * L + q * blocks + j];
    if (dbias) v -= dbias[o] * mu[(o / og) * nf + q];
    dst[idx] = v;
  }
}

// dst (O, blocks * nf) interleaved rows from src (O * blocks, nf) block rows.
__global__ void fold_scatter_kernel(int64_t total, int64_t nf, int64_t blocks,
                                    const float* __restrict__ src, float* __restrict__ dst) {
  const int64_t L = nf * blocks;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = idx / L, f = idx - o * L;
    const int64_t q = f / blocks, j = f - q * blocks;
    dst[idx] = src[(o * blocks + j) * nf + q];
  }
}

// bias_out[o] = bias[o] - sum_f w_out[o, f] mu_g[f / blocks]; one warp per output.
__global__ void fold_bias_kernel(int64_t o_count, int64_t nf, int64_t blocks, int64_t og,
                                 const float* __restrict__ w_out, const float* __restrict__ bias,
                                 const float* __restrict__ mu, float* __restrict__ bias_out) {
  const int64_t L = nf * blocks;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t o = int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); o < o_count;
       o += warps) {
    const float* mg = mu + (o / og) * nf;
    float acc = 0.0f;
    for (int64_t f = lane; f < L; f += 32) acc = fmaf(w_out[o * L + f], mg[f / blocks], acc);
    acc = warp_sum(acc);
    if (lane == 0) bias_out[o] = (bias ? bias[o] : 0.0f) - acc;
  }
}

// dmu[g * nf + q] = -sum_j v[g * L + q * blocks + j].
__global__ void fold_dmu_kernel(int64_t total, int64_t nf, int64_t blocks,
                                const float* __restrict__ v, float* __restrict__ dmu) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = idx / nf, q = idx - g * nf;
    const float* vg = v + g * nf * blocks + q * blocks;
    float s = 0.0f;
    for (int64_t j = 0; j < blocks; ++j) s += vg[j];
    dmu[idx] = -s;
  }
}

// Per group g: C_g = alpha op(A_g) op(B_g) + beta C_g, batched over the groups.
void grouped_gemm(int64_t groups, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a,
                  int64_t lda, int64_t sa, const float* b, int64_t ldb, int64_t sb, float* c,
                  int64_t ldc, int64_t sc, cudaStream_t st) {
  gemm_cuda(batched_gemm_shape(groups, ta, tb, m, n, k, lda, sa, ldb, sb, ldc, sc), 1.0, a, b, 0.0,
            c, st);
}

// The operands of the per-group GEMMs as (O * blocks, nf) block rows: w, and where the product
// goes. With one block they are w and `out` themselves; otherwise w is gathered into scratch and
// the product goes to another scratch buffer, which the caller scatters back to `out`
// (fold_scatter_kernel).
std::pair<const float*, float*> block_row_operands(const FoldShape& s, const float* w, float* out,
                                                   Scratch& scratch, cudaStream_t st) {
  if (s.blocks == 1) return {w, out};
  const int64_t total = s.o * s.row(), og = s.o / s.groups;
  float* gathered = scratch_array<float>(scratch, total);
  ND_LAUNCH(grid_for(total, kElemBlock), kElemBlock, 0, st, fold_gather_kernel)
  (total, s.nf, s.blocks, og, w, nullptr, nullptr, gathered);
  return {gathered, scratch_array<float>(scratch, total)};
}

}  // namespace

void fold_forward_cuda(const FoldShape& s, const float* w, const float* bias, const float* d,
                       const float* mu, float* w_out, float* bias_out, Scratch& scratch,
                       cudaStream_t st) {
  check_fold_shape(s, "fold_cuda");
  if (s.o == 0) return;
  const int64_t L = s.row(), og = s.o / s.groups, rows = og * s.blocks, total = s.o * L;
  const auto [wb, wb_out] = block_row_operands(s, w, w_out, scratch, st);
  // W'_g (rows, nf) = W_g D_g
  grouped_gemm(s.groups, false, false, rows, s.nf, s.nf, wb, s.nf, rows * s.nf, d, s.nf,
               s.nf * s.nf, wb_out, s.nf, rows * s.nf, st);
  if (s.blocks > 1) {
    ND_LAUNCH(grid_for(total, kElemBlock), kElemBlock, 0, st, fold_scatter_kernel)
    (total, s.nf, s.blocks, wb_out, w_out);
  }
  constexpr int kWarpsPerBlock = 8;
  const int grid =
      static_cast<int>(std::clamp<int64_t>((s.o + kWarpsPerBlock - 1) / kWarpsPerBlock, 1, 16384));
  ND_LAUNCH(grid, kWarpsPerBlock * 32, 0, st, fold_bias_kernel)
  (s.o, s.nf, s.blocks, og, w_out, bias, mu, bias_out);
}

void fold_backward_cuda(const FoldShape& s, const float* w, const float* d, const float* mu,
                        const float* w_out, const float* dw_out, const float* dbias_out, float* dw,
                        float* dd, float* dmu, Scratch& scratch, cudaStream_t st) {
  check_fold_shape(s, "fold_cuda");
  const int64_t L = s.row(), og = s.o / s.groups, rows = og * s.blocks, total = s.o * L;
  if (s.o == 0) {
    ND_CUDA_CHECK(cudaMemsetAsync(dd, 0, size_t(s.groups * s.nf * s.nf) * sizeof(float), st));
    ND_CUDA_CHECK(cudaMemsetAsync(dmu, 0, size_t(s.groups * s.nf) * sizeof(float), st));
    return;
  }
  const int eg = grid_for(total, kElemBlock);
  // G = dW' - dbias' mu as block rows (O * blocks, nf)
  float* g = scratch_array<float>(scratch, total);
  ND_LAUNCH(eg, kElemBlock, 0, st, fold_gather_kernel)
  (total, s.nf, s.blocks, og, dw_out, dbias_out, mu, g);
  const auto [wb, dwb] = block_row_operands(s, w, dw, scratch, st);
  // dW_g (rows, nf) = G_g D_g^T
  grouped_gemm(s.groups, false, true, rows, s.nf, s.nf, g, s.nf, rows * s.nf, d, s.nf, s.nf * s.nf,
               dwb, s.nf, rows * s.nf, st);
  if (s.blocks > 1) {
    ND_LAUNCH(eg, kElemBlock, 0, st, fold_scatter_kernel)(total, s.nf, s.blocks, dwb, dw);
  }
  // dD_g (nf, nf) = W_g^T G_g
  grouped_gemm(s.groups, true, false, s.nf, s.nf, rows, wb, s.nf, rows * s.nf, g, s.nf, rows * s.nf,
               dd, s.nf, s.nf * s.nf, st);
  // v_g (L) = W'_g^T dbias'_g over the og outputs of the group, then dmu = -(sum over blocks)
  float* v = scratch_array<float>(scratch, s.groups * L);
  grouped_gemm(s.groups, true, false, L, 1, og, w_out, L, og * L, dbias_out, 1, og, v, 1, L, st);
  ND_LAUNCH(grid_for(s.groups * s.nf, kElemBlock), kElemBlock, 0, st, fold_dmu_kernel)
  (s.groups * s.nf, s.nf, s.blocks, v, dmu);
}

}  // namespace nd::kernels
