// CUDA covariance part of the deconvolution trio (see deconv.h): the mean and covariance of the
// sampled im2col patches in interleaved blocks (groups == 1) or per-group chunks (groups > 1),
// the same for plain rows, and the backward of both.
//
// Sampled forward, without materialising the sub-row matrix X (R x nf):
//   1. patch_colsum_kernel: column sums of the sampled patches (C*k*k columns) read straight from
//      x through the index mapping, one partial per split of the positions; mean_finalize_kernel
//      adds the splits and the C/B interleaved blocks of each sub-row column (in double), / R.
//   2. sampled_syrk_kernel: an implicit-GEMM SYRK. A block of 256 threads owns one TILE x TILE
//      tile (TILE = 64, or 32 / 16 for small nf; only tiles on or above the diagonal) of one
//      matrix's Xc^T Xc and one split of the positions. It walks its rows in chunks of 16, loads
//      the chunk's values for the tile's row and column ranges from x (zero for padding) into
//      shared memory, subtracts the mean, and accumulates a (TILE/16)^2 register micro-tile per
//      thread in float. With one split it writes cov (both triangles, / R, + eps) directly;
//      otherwise it writes a partial tile to scratch and cov_finalize_kernel sums the splits in
//      double. Splits are chosen so that small-nf / large-R shapes (nf = 27, R = N * positions)
//      still launch ~1000 blocks.
// Sampled backward (scratch 2 * groups * R * nf + groups * nf * nf floats): gather Xc into
// scratch, G = dcov + dcov^T, Y = Xc G / R with cuBLAS (FP32, no TF32), then one thread per input
// pixel sums Y + dmean / R over every (sub-row, column) that read the pixel (the inverse of the
// sampling map, like col2im), so dx needs no atomics and no prior zeroing.
// Rows: column-sum kernel for the mean, a centring kernel into scratch, cublasSsyrk and a mirror
// kernel (forward); centring, G and one cuBLAS GEMM into dx (backward).
#include <algorithm>
#include <climits>
#include <cstdint>

#include "kernels/cuda_check.h"
#include "kernels/deconv.h"

namespace nd::kernels {

namespace {

constexpr int kBlock = 256;
// Blocks a split launch aims for: several waves of an H100/H200 (132 SMs, up to 8 blocks each).
constexpr int64_t kTargetBlocks = 1024;
// Fewest sampled positions per split of the SYRK (4 chunks of 16) and of the column sums.
constexpr int64_t kMinSyrkPositions = 64;
constexpr int64_t kMinSumPositions = 128;
// Cap on the SYRK's partial tiles in scratch (floats): 64 Mi floats = 256 MiB.
constexpr int64_t kMaxPartialFloats = int64_t(64) << 20;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ---- geometry of the sampled patches ----------------------------------------------------------

// Everything the kernels need about the sampling, passed by value.
struct Geo {
  int64_t n, c, h, w, k, kk, pad, dil, stride;
  int64_t first;      // k == 1: the first sampled raster row
  int64_t oh, ow;     // positions per axis (k > 1)
  int64_t positions;  // P: sampled patches over the batch
  int64_t blocks;     // sub-rows per patch: C / B when groups == 1, else 1
  int64_t nf;         // columns of a sub-row (k*k*B)
  int64_t mats;       // matrices: groups
  int64_t rows;       // R: sub-rows per matrix
  int64_t ncols;      // C*k*k, the patch length
  bool interleave;    // groups == 1
};

// The shared checks of deconv.h, then the limits of the launches and of cuBLAS.
void check_sampled_shape(const SampledCovShape& s, const char* who) {
  check_sampled_cov_shape(s, who);
  ND_CHECK(s.groups <= 65535, who, ": at most 65535 groups (grid limit), got ", s.groups);
  ND_CHECK(s.nf() <= INT_MAX && s.rows() <= INT_MAX, who, ": nf ", s.nf(), " and rows ", s.rows(),
           " must fit in int for cuBLAS");
}

Geo make_geo(const SampledCovShape& s) {
  Geo g;
  g.n = s.n, g.c = s.c, g.h = s.h, g.w = s.w, g.k = s.k, g.kk = s.k * s.k;
  g.pad = s.pad, g.dil = s.dil, g.stride = s.stride;
  g.first = s.first;
  g.oh = s.k == 1 ? 0 : s.out_h();
  g.ow = s.k == 1 ? 0 : s.out_w();
  g.positions = s.positions();
  g.interleave = s.groups == 1;
  g.blocks = g.interleave ? s.c / s.block : 1;
  g.nf = s.nf();
  g.mats = s.matrices();
  g.rows = s.rows();
  g.ncols = s.c * g.kk;
  return g;
}

// Where sampled position p starts: base + ColInfo::off is the flat index into x (N, C, H, W) and
// (iy0 + dy, ix0 + dx) the pixel, which is a padded zero when outside the image. For k == 1 the
// position is NHWC raster row first + p * s * s and every column is inside.
struct RowInfo {
  int64_t base;
  int32_t iy0, ix0;
};
struct ColInfo {
  int64_t off;
  int32_t dy, dx;
};

// Idx: the integer type of the index arithmetic (int32_t when every index involved fits).
template <typename Idx>
__device__ __forceinline__ RowInfo row_info(const Geo& g, Idx p) {
  RowInfo r;
  if (g.k == 1) {
    const Idx hw = static_cast<Idx>(g.h * g.w);
    const Idx i = static_cast<Idx>(g.first) + p * static_cast<Idx>(g.stride * g.stride);
    const Idx n = i / hw;
    r.base = static_cast<int64_t>(n * static_cast<Idx>(g.c) * hw + (i - n * hw));
    r.iy0 = r.ix0 = 0;
  } else {
    const Idx ow = static_cast<Idx>(g.ow), oh = static_cast<Idx>(g.oh);
    const Idx t = p / ow, px = p - t * ow;
    const Idx n = t / oh, py = t - n * oh;
    const Idx iy0 = py * static_cast<Idx>(g.stride) - static_cast<Idx>(g.pad);
    const Idx ix0 = px * static_cast<Idx>(g.stride) - static_cast<Idx>(g.pad);
    r.base =
        static_cast<int64_t>((n * static_cast<Idx>(g.c * g.h) + iy0) * static_cast<Idx>(g.w) + ix0);
    r.iy0 = static_cast<int32_t>(iy0);
    r.ix0 = static_cast<int32_t>(ix0);
  }
  return r;
}

// Patch column f = c*k*k + ky*k + kx.
template <typename Idx>
__device__ __forceinline__ ColInfo col_info(const Geo& g, Idx f) {
  const Idx kk = static_cast<Idx>(g.kk), k = static_cast<Idx>(g.k);
  const Idx c = f / kk, t = f - c * kk;
  const Idx ky = t / k, kx = t - ky * k;
  ColInfo ci;
  ci.dy = static_cast<int32_t>(ky * static_cast<Idx>(g.dil));
  ci.dx = static_cast<int32_t>(kx * static_cast<Idx>(g.dil));
  ci.off =
      static_cast<int64_t>((c * static_cast<Idx>(g.h) + ci.dy) * static_cast<Idx>(g.w) + ci.dx);
  return ci;
}

__device__ __forceinline__ float load_x(const float* __restrict__ x, const Geo& g, const RowInfo& r,
                                        const ColInfo& c) {
  const int64_t iy = r.iy0 + c.dy, ix = r.ix0 + c.dx;
  return iy >= 0 && iy < g.h && ix >= 0 && ix < g.w ? __ldg(x + r.base + c.off) : 0.0f;
}

// Patch column of element q of sub-row j of matrix mat.
template <typename Idx>
__device__ __forceinline__ Idx column(const Geo& g, Idx mat, Idx j, Idx q) {
  return g.interleave ? q * static_cast<Idx>(g.blocks) + j : mat * static_cast<Idx>(g.nf) + q;
}

// First position of split `split` of `splits` (the last split ends at P).
__device__ __forceinline__ int64_t split_begin(int64_t positions, int64_t split, int64_t splits) {
  return positions * split / splits;
}

// ---- forward: mean -----------------------------------------------------------------------------

// Block (32, 8): 32 patch columns, 8 row lanes; grid (ceil(C*k*k / 32), splits). Writes the
// column sums of the split's positions: partial (splits, C*k*k).
__global__ void __launch_bounds__(kBlock)
    patch_colsum_kernel(const float* __restrict__ x, Geo g, int64_t splits,
                        float* __restrict__ partial) {
  ND_SHARED(RowInfo, rows, [32]);
  ND_SHARED(float, red, [8][32]);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t f = static_cast<int64_t>(blockIdx.x) * 32 + tx;
  const bool valid = f < g.ncols;
  const ColInfo ci = valid ? col_info<int64_t>(g, f) : ColInfo{0, 0, 0};
  const int64_t split = blockIdx.y;
  const int64_t p0 = split_begin(g.positions, split, splits);
  const int64_t p1 = split_begin(g.positions, split + 1, splits);
  float acc = 0.0f;
  for (int64_t pc = p0; pc < p1; pc += 32) {
    const int cnt = static_cast<int>(p1 - pc < 32 ? p1 - pc : 32);
    if (ty == 0 && tx < cnt) rows[tx] = row_info<int64_t>(g, pc + tx);
    __syncthreads();
    if (valid)
      for (int i = ty; i < cnt; i += 8) acc += load_x(x, g, rows[i], ci);
    __syncthreads();
  }
  red[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && valid) {
    float sum = 0.0f;
    for (int i = 0; i < 8; ++i) sum += red[i][tx];
    partial[split * g.ncols + f] = sum;
  }
}

// mean (mats, nf): the splits' column sums of the C/B patch columns feeding each sub-row column,
// added in double, / R.
__global__ void mean_finalize_kernel(const float* __restrict__ partial, Geo g, int64_t splits,
                                     float* __restrict__ mean) {
  const int64_t total = g.mats * g.nf;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t mat = t / g.nf, q = t - mat * g.nf;
    double sum = 0.0;
    for (int64_t sp = 0; sp < splits; ++sp)
      for (int64_t j = 0; j < g.blocks; ++j) sum += partial[sp * g.ncols + column(g, mat, j, q)];
    mean[t] = static_cast<float>(sum / static_cast<double>(g.rows));
  }
}

// ---- forward: implicit-GEMM SYRK ---------------------------------------------------------------

// Grid (tiles on or above the diagonal, mats, splits), 256 threads as 16 x 16; thread (ty, tx)
// accumulates the entries (ty + 16 i, tx + 16 i2) of the tile, i, i2 < MT, so shared-memory reads
// are conflict-free (a column of `as` is a broadcast, a row of `bs` 16 consecutive words).
// direct: out is cov (mats, nf, nf) and receives acc * scale (+ eps on the diagonal) in both
// triangles; otherwise out is partial (splits, mats, nf, nf), written for this tile only.
template <int MT>
__global__ void __launch_bounds__(kBlock)
    sampled_syrk_kernel(const float* __restrict__ x, const float* __restrict__ mean, Geo g,
                        int ntiles, int64_t splits, float scale, float eps, bool direct,
                        float* __restrict__ out) {
  constexpr int kTile = 16 * MT;
  constexpr int kChunk = 16;                    // rows per shared-memory stage
  constexpr int kRowsPerPass = kBlock / kTile;  // rows one pass of 256 loads covers
  constexpr int kPasses = kChunk / kRowsPerPass;
  static_assert(kRowsPerPass * kPasses == kChunk, "tile and chunk must tile 256 threads");
  ND_SHARED(float, as, [kChunk][kTile]);
  ND_SHARED(float, bs, [kChunk][kTile]);
  ND_SHARED(RowInfo, rows, [kChunk]);

  // Linear tile index -> (ti, tj), ti <= tj, row by row of the upper triangle.
  int t = static_cast<int>(blockIdx.x), ti = 0;
  while (t >= ntiles - ti) {
    t -= ntiles - ti;
    ++ti;
  }
  const int tj = ti + t;
  const bool diag = ti == tj;
  const int64_t mat = blockIdx.y, split = blockIdx.z;
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  // Loading role: one fixed tile column per thread, rows lr, lr + kRowsPerPass, ...
  const int lq = tid % kTile, lr = tid / kTile;
  const int64_t qa = static_cast<int64_t>(ti) * kTile + lq;
  const int64_t qb = static_cast<int64_t>(tj) * kTile + lq;
  const bool va = qa < g.nf, vb = !diag && qb < g.nf;
  const float ma = va ? mean[mat * g.nf + qa] : 0.0f;
  const float mb = vb ? mean[mat * g.nf + qb] : 0.0f;
  const int64_t p0 = split_begin(g.positions, split, splits);
  const int64_t p1 = split_begin(g.positions, split + 1, splits);

  float acc[MT][MT];
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int i2 = 0; i2 < MT; ++i2) acc[i][i2] = 0.0f;

  // Sub-row j of every position in [p0, p1); the column mapping is fixed for a given j.
  for (int64_t j = 0; j < g.blocks; ++j) {
    const ColInfo ca = va ? col_info<int64_t>(g, column<int64_t>(g, mat, j, qa)) : ColInfo{0, 0, 0};
    const ColInfo cb = vb ? col_info<int64_t>(g, column<int64_t>(g, mat, j, qb)) : ColInfo{0, 0, 0};
    for (int64_t pc = p0; pc < p1; pc += kChunk) {
      const int cnt = static_cast<int>(p1 - pc < kChunk ? p1 - pc : kChunk);
      if (tid < cnt) rows[tid] = row_info<int64_t>(g, pc + tid);
      __syncthreads();
#pragma unroll
      for (int l = 0; l < kPasses; ++l) {
        const int rr = lr + l * kRowsPerPass;
        const bool live = rr < cnt;
        const float a = va && live ? load_x(x, g, rows[rr], ca) - ma : 0.0f;
        as[rr][lq] = a;
        bs[rr][lq] = diag ? a : (vb && live ? load_x(x, g, rows[rr], cb) - mb : 0.0f);
      }
      __syncthreads();
#pragma unroll
      for (int kq = 0; kq < kChunk; ++kq) {
        float a[MT], b[MT];
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          a[i] = as[kq][ty + 16 * i];
          b[i] = bs[kq][tx + 16 * i];
        }
#pragma unroll
        for (int i = 0; i < MT; ++i)
#pragma unroll
          for (int i2 = 0; i2 < MT; ++i2) acc[i][i2] = fmaf(a[i], b[i2], acc[i][i2]);
      }
    }
  }

  const int64_t nf = g.nf;
#pragma unroll
  for (int i = 0; i < MT; ++i) {
    const int64_t a = static_cast<int64_t>(ti) * kTile + ty + 16 * i;
    if (a >= nf) continue;
#pragma unroll
    for (int i2 = 0; i2 < MT; ++i2) {
      const int64_t b = static_cast<int64_t>(tj) * kTile + tx + 16 * i2;
      if (b >= nf) continue;
      if (direct) {
        if (a <= b) {
          const float v = acc[i][i2] * scale + (a == b ? eps : 0.0f);
          out[(mat * nf + a) * nf + b] = v;
          out[(mat * nf + b) * nf + a] = v;
        }
      } else {
        out[((split * g.mats + mat) * nf + a) * nf + b] = acc[i][i2];
      }
    }
  }
}

// cov (mats, nf, nf) from the partial tiles (splits, mats, nf, nf), whose entries (lo, hi) with
// lo <= hi are all written: sum in double, * scale, + eps on the diagonal, both triangles.
__global__ void cov_finalize_kernel(const float* __restrict__ partial, int64_t mats, int64_t nf,
                                    int64_t splits, double scale, double eps,
                                    float* __restrict__ cov) {
  const int64_t total = mats * nf * nf;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t % nf, a = (t / nf) % nf, mat = t / (nf * nf);
    const int64_t lo = a < b ? a : b, hi = a < b ? b : a;
    double sum = 0.0;
    for (int64_t sp = 0; sp < splits; ++sp) sum += partial[((sp * mats + mat) * nf + lo) * nf + hi];
    cov[t] = static_cast<float>(sum * scale + (a == b ? eps : 0.0));
  }
}

template <int MT>
void launch_syrk(const float* x, const float* mean, const Geo& g, double eps, float* cov,
                 Scratch& scratch, cudaStream_t st) {
  constexpr int kTile = 16 * MT;
  const int64_t nt = ceil_div(g.nf, kTile);
  const int64_t tiles = nt * (nt + 1) / 2;
  ND_CHECK(tiles <= INT_MAX, "covariance_sampled_forward_cuda: nf ", g.nf, " is too large");
  int64_t splits = ceil_div(kTargetBlocks, tiles * g.mats);
  splits = std::min(splits, ceil_div(g.positions, kMinSyrkPositions));
  splits = std::min(splits, std::max<int64_t>(1, kMaxPartialFloats / (g.mats * g.nf * g.nf)));
  splits = std::clamp<int64_t>(splits, 1, 65535);
  const float scale = static_cast<float>(1.0 / static_cast<double>(g.rows));
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(g.mats),
                  static_cast<unsigned>(splits));
  if (splits == 1) {
    ND_LAUNCH(grid, kBlock, 0, st, sampled_syrk_kernel<MT>)
    (x, mean, g, static_cast<int>(nt), 1, scale, static_cast<float>(eps), true, cov);
    return;
  }
  const int64_t elems = splits * g.mats * g.nf * g.nf;
  float* partial = static_cast<float*>(scratch.get(sizeof(float) * elems));
  ND_LAUNCH(grid, kBlock, 0, st, sampled_syrk_kernel<MT>)
  (x, mean, g, static_cast<int>(nt), splits, scale, static_cast<float>(eps), false, partial);
  const int64_t total = g.mats * g.nf * g.nf;
  ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, st, cov_finalize_kernel)
  (partial, g.mats, g.nf, splits, 1.0 / static_cast<double>(g.rows), eps, cov);
}

// ---- backward ----------------------------------------------------------------------------------

// xc (mats, R, nf): the centred sub-rows; sub-row r of matrix mat is position r / blocks, block
// r % blocks (groups == 1) or position r (groups > 1).
template <typename Idx>
__global__ void gather_centred_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                      Geo g, int64_t total, float* __restrict__ xc) {
  const Idx nf = static_cast<Idx>(g.nf), rows = static_cast<Idx>(g.rows);
  const Idx blocks = static_cast<Idx>(g.blocks);
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const Idx q = r % nf;
    r /= nf;
    const Idx row = r % rows;
    const Idx mat = r / rows;
    const Idx p = g.interleave ? row / blocks : row;
    const Idx j = g.interleave ? row - p * blocks : Idx(0);
    const RowInfo ri = row_info<Idx>(g, p);
    const ColInfo ci = col_info<Idx>(g, column<Idx>(g, mat, j, q));
    xc[t] = load_x(x, g, ri, ci) - mean[static_cast<int64_t>(mat) * g.nf + q];
  }
}

// g_sym (mats, n, n) = dcov + dcov^T per matrix.
__global__ void symmetrize_kernel(const float* __restrict__ dcov, int64_t mats, int64_t n,
                                  float* __restrict__ gsym) {
  const int64_t total = mats * n * n;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t % n, a = (t / n) % n, mat = t / (n * n);
    gsym[t] = dcov[t] + dcov[(mat * n + b) * n + a];
  }
}

// One thread per input pixel (n, c, iy, ix) of dx (N, C, H, W): the sum over every (sub-row,
// column) that read the pixel of y (mats, R, nf) + dmean / R. The inverse of the sampling map:
// k > 1: tap (ky, kx) reads the pixel from position (py, px) iff iy + pad - ky dil = py s with
// 0 <= py < oh (and the same across); k == 1: raster index i is read iff i >= first and
// (i - first) % (s s) == 0.
template <typename Idx>
__global__ void scatter_pixels_kernel(const float* __restrict__ y, const float* __restrict__ dmean,
                                      Geo g, float inv_rows, int64_t total,
                                      float* __restrict__ dx) {
  const Idx w = static_cast<Idx>(g.w), h = static_cast<Idx>(g.h), c_all = static_cast<Idx>(g.c);
  const Idx s = static_cast<Idx>(g.stride), k = static_cast<Idx>(g.k);
  const Idx nf = static_cast<Idx>(g.nf), rows = static_cast<Idx>(g.rows);
  const Idx blocks = static_cast<Idx>(g.blocks);
  // Contribution of patch column f of position p.
  auto take = [&](Idx p, Idx f) -> float {
    Idx mat, q, row;
    if (g.interleave) {
      const Idx j = f % blocks;
      q = f / blocks;
      mat = 0;
      row = p * blocks + j;
    } else {
      mat = f / nf;
      q = f - mat * nf;
      row = p;
    }
    const float dm = dmean ? dmean[static_cast<int64_t>(mat) * g.nf + q] * inv_rows : 0.0f;
    return y[(static_cast<int64_t>(mat) * rows + row) * g.nf + q] + dm;
  };
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const Idx ix = r % w;
    r /= w;
    const Idx iy = r % h;
    r /= h;
    const Idx c = r % c_all;
    const Idx n = r / c_all;
    float sum = 0.0f;
    if (g.k == 1) {
      const Idx i = (n * h + iy) * w + ix - static_cast<Idx>(g.first);
      if (i >= 0 && i % (s * s) == 0) sum = take(i / (s * s), c);
    } else {
      const Idx oh = static_cast<Idx>(g.oh), ow = static_cast<Idx>(g.ow);
      const Idx pad = static_cast<Idx>(g.pad), dil = static_cast<Idx>(g.dil);
      for (Idx ky = 0; ky < k; ++ky) {
        const Idx vy = iy + pad - ky * dil;  // = py * s
        if (vy < 0 || vy % s != 0) continue;
        const Idx py = vy / s;
        if (py >= oh) continue;
        for (Idx kx = 0; kx < k; ++kx) {
          const Idx vx = ix + pad - kx * dil;
          if (vx < 0 || vx % s != 0) continue;
          const Idx px = vx / s;
          if (px >= ow) continue;
          sum += take((n * oh + py) * ow + px, (c * k + ky) * k + kx);
        }
      }
    }
    dx[t] = sum;
  }
}

// ---- rows --------------------------------------------------------------------------------------

// Block (32, 8), grid (ceil(n / 32), splits): partial (splits, n) column sums of x (rows, n).
__global__ void __launch_bounds__(kBlock)
    rows_colsum_kernel(const float* __restrict__ x, int64_t rows, int64_t n, int64_t splits,
                       float* __restrict__ partial) {
  ND_SHARED(float, red, [8][32]);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t q = static_cast<int64_t>(blockIdx.x) * 32 + tx;
  const int64_t split = blockIdx.y;
  const int64_t r0 = rows * split / splits, r1 = rows * (split + 1) / splits;
  float acc = 0.0f;
  if (q < n)
    for (int64_t r = r0 + ty; r < r1; r += 8) acc += x[r * n + q];
  red[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && q < n) {
    float sum = 0.0f;
    for (int i = 0; i < 8; ++i) sum += red[i][tx];
    partial[split * n + q] = sum;
  }
}

__global__ void rows_mean_finalize_kernel(const float* __restrict__ partial, int64_t rows,
                                          int64_t n, int64_t splits, float* __restrict__ mean) {
  for (int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < n;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double sum = 0.0;
    for (int64_t sp = 0; sp < splits; ++sp) sum += partial[sp * n + q];
    mean[q] = static_cast<float>(sum / static_cast<double>(rows));
  }
}

// xc (rows, n) = x - mean.
__global__ void centre_rows_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                   int64_t n, int64_t total, float* __restrict__ xc) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    xc[t] = x[t] - mean[t % n];
}

// cov (n, n) holds cuBLAS's upper triangle in column-major order, i.e. the row-major entries
// (b, a) with b >= a: copy them to (a, b) and add eps on the diagonal. Threads write only
// row-major entries with a <= b and read only entries with b > a, so in place is race-free.
__global__ void mirror_eps_kernel(float* __restrict__ cov, int64_t n, float eps) {
  const int64_t total = n * n;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = t % n, a = t / n;
    if (a < b) cov[t] = cov[b * n + a];
    if (a == b) cov[t] += eps;
  }
}

// dx (rows, n) = dmean / rows broadcast, or 0.
__global__ void fill_dmean_kernel(const float* __restrict__ dmean, int64_t n, int64_t total,
                                  float inv_rows, float* __restrict__ dx) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dx[t] = dmean ? dmean[t % n] * inv_rows : 0.0f;
}

void check_rows(int64_t rows, int64_t n, const char* who) {
  check_cov_rows_shape(rows, n, who);
  ND_CHECK(rows <= INT_MAX && n <= INT_MAX, who, ": rows ", rows, " and n ", n,
           " must fit in int for cuBLAS");
}

// The rows' column means into `mean` (n).
void rows_mean(int64_t rows, int64_t n, const float* x, float* mean, Scratch& scratch,
               cudaStream_t st) {
  const int64_t bx = ceil_div(n, 32);
  int64_t splits = std::min(ceil_div(kTargetBlocks, bx), ceil_div(rows, kMinSumPositions));
  splits = std::clamp<int64_t>(splits, 1, 65535);
  float* partial = static_cast<float*>(scratch.get(sizeof(float) * splits * n));
  ND_LAUNCH(dim3(static_cast<unsigned>(bx), static_cast<unsigned>(splits)), dim3(32, 8), 0, st,
            rows_colsum_kernel)
  (x, rows, n, splits, partial);
  ND_LAUNCH(grid_for(n, kBlock), kBlock, 0, st, rows_mean_finalize_kernel)
  (partial, rows, n, splits, mean);
}

}  // namespace

// ---- sampled covariance ------------------------------------------------------------------------

// x (N, C, H, W) -> mean (groups, nf), cov (groups, nf, nf).
void covariance_sampled_forward_cuda(const SampledCovShape& s, double eps, const float* x,
                                     float* mean, float* cov, Scratch& scratch, cudaStream_t st) {
  check_sampled_shape(s, "covariance_sampled_forward_cuda");
  const Geo g = make_geo(s);
  // 1. Mean: patch column sums per split of the positions, then the finalize.
  const int64_t bx = ceil_div(g.ncols, 32);
  int64_t msplits = std::min(ceil_div(kTargetBlocks, bx), ceil_div(g.positions, kMinSumPositions));
  msplits = std::clamp<int64_t>(msplits, 1, 65535);
  float* partial = static_cast<float*>(scratch.get(sizeof(float) * msplits * g.ncols));
  ND_LAUNCH(dim3(static_cast<unsigned>(bx), static_cast<unsigned>(msplits)), dim3(32, 8), 0, st,
            patch_colsum_kernel)
  (x, g, msplits, partial);
  ND_LAUNCH(grid_for(g.mats * g.nf, kBlock), kBlock, 0, st, mean_finalize_kernel)
  (partial, g, msplits, mean);
  // 2. Centred Xc^T Xc / R + eps I by the implicit-GEMM SYRK; small tiles for small matrices.
  if (g.nf <= 16) {
    launch_syrk<1>(x, mean, g, eps, cov, scratch, st);
  } else if (g.nf <= 32) {
    launch_syrk<2>(x, mean, g, eps, cov, scratch, st);
  } else {
    launch_syrk<4>(x, mean, g, eps, cov, scratch, st);
  }
}

// dx (N, C, H, W) from dcov (groups, nf, nf) and dmean (groups, nf; may be null).
void covariance_sampled_backward_cuda(const SampledCovShape& s, const float* x, const float* mean,
                                      const float* dmean, const float* dcov, float* dx,
                                      Scratch& scratch, cudaStream_t st) {
  check_sampled_shape(s, "covariance_sampled_backward_cuda");
  const Geo g = make_geo(s);
  const int64_t xc_elems = g.mats * g.rows * g.nf;  // = positions * C * k * k
  const int64_t x_elems = g.n * g.c * g.h * g.w;
  float* xc = static_cast<float*>(scratch.get(sizeof(float) * xc_elems));
  float* y = static_cast<float*>(scratch.get(sizeof(float) * xc_elems));
  float* gsym = static_cast<float*>(scratch.get(sizeof(float) * g.mats * g.nf * g.nf));
  // 32-bit index arithmetic when every index involved (with margin for padding offsets) fits.
  const int64_t limit = INT_MAX / 2;
  const bool fits32 = xc_elems <= limit && x_elems + 2 * (g.pad + 1) * (g.w + 1) * g.c <= limit &&
                      g.first + g.positions * g.stride * g.stride <= limit;
  // 1. Xc, gathered through the sampling map.
  if (fits32) {
    ND_LAUNCH(grid_for(xc_elems, kBlock), kBlock, 0, st, gather_centred_kernel<int32_t>)
    (x, mean, g, xc_elems, xc);
  } else {
    ND_LAUNCH(grid_for(xc_elems, kBlock), kBlock, 0, st, gather_centred_kernel<int64_t>)
    (x, mean, g, xc_elems, xc);
  }
  // 2. G = dcov + dcov^T.
  ND_LAUNCH(grid_for(g.mats * g.nf * g.nf, kBlock), kBlock, 0, st, symmetrize_kernel)
  (dcov, g.mats, g.nf, gsym);
  // 3. Y (R, nf) = Xc (R, nf) G (nf, nf) / R per matrix. Column-major cuBLAS sees the row-major
  // Y, Xc as Y^T, Xc^T (nf x R, ld nf) and G as G^T = G, so Y^T = G Xc^T.
  const float alpha = static_cast<float>(1.0 / static_cast<double>(g.rows)), beta = 0.0f;
  const int nf = static_cast<int>(g.nf), rows = static_cast<int>(g.rows);
  ND_CUBLAS_CHECK(cublasSgemmStridedBatched(
      cublas_handle(st), CUBLAS_OP_N, CUBLAS_OP_N, nf, rows, nf, &alpha, gsym, nf,
      static_cast<long long>(g.nf * g.nf), xc, nf, static_cast<long long>(g.rows * g.nf), &beta, y,
      nf, static_cast<long long>(g.rows * g.nf), static_cast<int>(g.mats)));
  // 4. Every pixel of dx gathers what it contributed (0 when never sampled).
  if (fits32) {
    ND_LAUNCH(grid_for(x_elems, kBlock), kBlock, 0, st, scatter_pixels_kernel<int32_t>)
    (y, dmean, g, alpha, x_elems, dx);
  } else {
    ND_LAUNCH(grid_for(x_elems, kBlock), kBlock, 0, st, scatter_pixels_kernel<int64_t>)
    (y, dmean, g, alpha, x_elems, dx);
  }
}

// ---- covariance of rows ------------------------------------------------------------------------

// x (rows, n) -> mean (n), cov (n, n).
void covariance_rows_forward_cuda(int64_t rows, int64_t n, double eps, const float* x, float* mean,
                                  float* cov, Scratch& scratch, cudaStream_t st) {
  check_rows(rows, n, "covariance_rows_forward_cuda");
  if (n == 0) return;
  rows_mean(rows, n, x, mean, scratch, st);
  const int64_t total = rows * n;
  float* xc = static_cast<float*>(scratch.get(sizeof(float) * total));
  ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, st, centre_rows_kernel)(x, mean, n, total, xc);
  // Column-major cuBLAS sees the row-major Xc (rows, n) as Xc^T (n x rows, ld n), so
  // C = A A^T with A = Xc^T is Xc^T Xc; its upper triangle (column-major) is filled.
  const float alpha = static_cast<float>(1.0 / static_cast<double>(rows)), beta = 0.0f;
  ND_CUBLAS_CHECK(cublasSsyrk(cublas_handle(st), CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                              static_cast<int>(n), static_cast<int>(rows), &alpha, xc,
                              static_cast<int>(n), &beta, cov, static_cast<int>(n)));
  ND_LAUNCH(grid_for(n * n, kBlock), kBlock, 0, st, mirror_eps_kernel)
  (cov, n, static_cast<float>(eps));
}

// dx (rows, n) from dcov (n, n) and dmean (n; may be null).
void covariance_rows_backward_cuda(int64_t rows, int64_t n, const float* x, const float* mean,
                                   const float* dmean, const float* dcov, float* dx,
                                   Scratch& scratch, cudaStream_t st) {
  check_rows(rows, n, "covariance_rows_backward_cuda");
  if (n == 0) return;
  const int64_t total = rows * n;
  float* xc = static_cast<float*>(scratch.get(sizeof(float) * total));
  float* gsym = static_cast<float*>(scratch.get(sizeof(float) * n * n));
  ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, st, centre_rows_kernel)(x, mean, n, total, xc);
  ND_LAUNCH(grid_for(n * n, kBlock), kBlock, 0, st, symmetrize_kernel)(dcov, 1, n, gsym);
  const float inv_rows = static_cast<float>(1.0 / static_cast<double>(rows));
  ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, st, fill_dmean_kernel)
  (dmean, n, total, inv_rows, dx);
  // dx (rows, n) += Xc G / rows: column-major dx^T = G^T Xc^T = G Xc^T (G symmetric).
  const float beta = 1.0f;
  const int ni = static_cast<int>(n);
  ND_CUBLAS_CHECK(cublasSgemm(cublas_handle(st), CUBLAS_OP_N, CUBLAS_OP_N, ni,
                              static_cast<int>(rows), ni, &inv_rows, gsym, ni, xc, ni, &beta, dx,
                              ni));
}

}  // namespace nd::kernels
