// Direct convolution loops for the cuDNN stand-in. Each output plane (or filter plane) is owned by
// one OpenMP iteration and accumulated in a private double buffer, so there are no atomics and the
// result does not depend on the thread count. Per filter tap the valid output range is computed
// once, so the inner loops carry no bounds checks and run over contiguous memory at stride 1.
#include "cudnn_compute.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace nd_emu::dnn {

namespace {

// For one filter tap along one axis: output positions o in [lo, hi) read input o * stride + off.
struct TapRange {
  int64_t off, lo, hi;
};

std::vector<TapRange> tap_ranges(int64_t taps, int64_t dil, int64_t pad, int64_t stride, int64_t in,
                                 int64_t out) {
  std::vector<TapRange> r(taps);
  for (int64_t t = 0; t < taps; ++t) {
    const int64_t off = t * dil - pad;
    const int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    const int64_t hi = in - 1 - off >= 0 ? std::min(out, (in - 1 - off) / stride + 1) : 0;
    r[t] = TapRange{off, lo, std::max(lo, hi)};
  }
  return r;
}

// The inner loops: contiguous at stride 1, all in double (the operands were converted once).
inline void axpy(double* acc, const double* src, double a, int64_t lo, int64_t hi, int64_t stride) {
  if (stride == 1) {
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) acc[i] += a * src[i];
  } else {
    for (int64_t i = lo; i < hi; ++i) acc[i] += a * src[i * stride];
  }
}

// The transpose of axpy: scatters a * src into acc at the strided input positions.
inline void axpy_scatter(double* acc, const double* src, double a, int64_t lo, int64_t hi,
                         int64_t stride) {
  if (stride == 1) {
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) acc[i] += a * src[i];
  } else {
    for (int64_t i = lo; i < hi; ++i) acc[i * stride] += a * src[i];
  }
}

inline double dot(const double* a, const double* strided, int64_t lo, int64_t hi, int64_t stride) {
  double s = 0.0;
  if (stride == 1) {
#pragma omp simd reduction(+ : s)
    for (int64_t i = lo; i < hi; ++i) s += a[i] * strided[i];
  } else {
    for (int64_t i = lo; i < hi; ++i) s += a[i] * strided[i * stride];
  }
  return s;
}

// Float operands widened once, so the inner loops do no conversions (products of floats are
// exact in double, so fused multiply-adds give the same sums).
std::vector<double> widen(const float* p, int64_t count) {
  std::vector<double> d(static_cast<size_t>(count));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) d[i] = p[i];
  return d;
}

// The filter element that tap (ky, kx) reads: rotating by 180 degrees reverses the plane.
inline int64_t tap(const ConvGeometry& g, int64_t ky, int64_t kx) {
  const int64_t i = ky * g.s + kx;
  return g.flip ? g.r * g.s - 1 - i : i;
}

inline void store(float* out, const double* acc, int64_t count, Blend b) {
  if (b.beta == 0.0) {
    for (int64_t i = 0; i < count; ++i) out[i] = float(b.alpha * acc[i]);
  } else {
    for (int64_t i = 0; i < count; ++i) out[i] = float(b.alpha * acc[i] + b.beta * double(out[i]));
  }
}

// Per-task kernels, compiled twice where the compiler can (AVX2 + FMA, and the baseline), the
// faster chosen at load time: the loops are plain C++ either way.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ND_EMU_DNN_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define ND_EMU_DNN_CLONES
#endif

// The taps of one row at stride 1, fused so each accumulator is loaded once per row rather than
// once per tap: acc[j] += sum over t of wv[t] * src[j + d[t]] for j in [lo[t], hi[t]).
constexpr int kMaxFused = 7;
struct RowTaps {
  int n = 0;
  int64_t d[kMaxFused], lo[kMaxFused], hi[kMaxFused];
  int64_t in_lo, in_hi;  // where every tap applies (empty: both past every hi)
  void finish() {
    in_lo = 0;
    in_hi = INT64_MAX / 2;
    for (int t = 0; t < n; ++t) in_lo = std::max(in_lo, lo[t]), in_hi = std::min(in_hi, hi[t]);
    if (in_lo >= in_hi) in_lo = in_hi = INT64_MAX / 2;
  }
};

template <int S>
inline void row_taps(double* acc, const double* src, const double* wv, const RowTaps& rt) {
  double w[S];
  int64_t d[S];
  for (int t = 0; t < S; ++t) {  // the edges, where only some taps apply
    w[t] = wv[t];
    d[t] = rt.d[t];
    const int64_t a = std::min(rt.hi[t], rt.in_lo), b = std::max(rt.lo[t], rt.in_hi);
    for (int64_t j = rt.lo[t]; j < a; ++j) acc[j] += w[t] * src[j + d[t]];
    for (int64_t j = b; j < rt.hi[t]; ++j) acc[j] += w[t] * src[j + d[t]];
  }
  const int64_t lo = rt.in_lo, hi = rt.in_hi;
#pragma omp simd
  for (int64_t j = lo; j < hi; ++j) {
    double sum = acc[j];
#pragma GCC unroll 8
    for (int t = 0; t < S; ++t) sum += w[t] * src[j + d[t]];
    acc[j] = sum;
  }
}

inline void fused_row(double* acc, const double* src, const double* wv, const RowTaps& rt) {
  switch (rt.n) {
    case 1:
      return row_taps<1>(acc, src, wv, rt);
    case 2:
      return row_taps<2>(acc, src, wv, rt);
    case 3:
      return row_taps<3>(acc, src, wv, rt);
    case 4:
      return row_taps<4>(acc, src, wv, rt);
    case 5:
      return row_taps<5>(acc, src, wv, rt);
    case 6:
      return row_taps<6>(acc, src, wv, rt);
    case 7:
      return row_taps<7>(acc, src, wv, rt);
  }
}

// Taps along both axes, computed once per call; the row forms for forward (gather from the input
// row) and backward data (gather from the output-gradient row) when the width stride is 1.
struct Taps {
  std::vector<TapRange> rows, cols;
  RowTaps fwd, bwd;
  explicit Taps(const ConvGeometry& g)
      : rows(tap_ranges(g.r, g.dil_h, g.pad_h, g.stride_h, g.h, g.oh)),
        cols(tap_ranges(g.s, g.dil_w, g.pad_w, g.stride_w, g.w, g.ow)) {
    if (g.stride_w != 1 || g.s > kMaxFused) return;  // fwd.n = bwd.n = 0: one tap at a time
    fwd.n = bwd.n = int(g.s);
    for (int t = 0; t < fwd.n; ++t) {
      const TapRange& c = cols[t];
      fwd.d[t] = c.off, fwd.lo[t] = c.lo, fwd.hi[t] = c.hi;
      bwd.d[t] = -c.off, bwd.lo[t] = c.lo + c.off, bwd.hi[t] = c.hi + c.off;
    }
    fwd.finish();
    bwd.finish();
  }
};

// acc (oh, ow) = output plane (ni, ko).
ND_EMU_DNN_CLONES void forward_plane(const ConvGeometry& g, const Taps& taps, const double* x,
                                     const double* w, int64_t ni, int64_t ko, double* acc) {
  const int64_t cg = g.c_per_group(), grp = ko / g.k_per_group();
  const int64_t hw = g.h * g.w, rs = g.r * g.s;
  std::fill(acc, acc + g.oh * g.ow, 0.0);
  for (int64_t cc = 0; cc < cg; ++cc) {
    const double* xp = x + (ni * g.c + grp * cg + cc) * hw;
    const double* wp = w + (ko * cg + cc) * rs;
    for (int64_t ky = 0; ky < g.r; ++ky) {
      const TapRange& ry = taps.rows[ky];
      if (taps.fwd.n) {
        double wv[kMaxFused];
        for (int64_t kx = 0; kx < g.s; ++kx) wv[kx] = wp[tap(g, ky, kx)];
        for (int64_t oy = ry.lo; oy < ry.hi; ++oy)
          fused_row(acc + oy * g.ow, xp + (oy * g.stride_h + ry.off) * g.w, wv, taps.fwd);
        continue;
      }
      for (int64_t kx = 0; kx < g.s; ++kx) {
        const TapRange& rx = taps.cols[kx];
        const double wv = wp[tap(g, ky, kx)];
        for (int64_t oy = ry.lo; oy < ry.hi; ++oy) {
          axpy(acc + oy * g.ow, xp + (oy * g.stride_h + ry.off) * g.w + rx.off, wv, rx.lo, rx.hi,
               g.stride_w);
        }
      }
    }
  }
}

// acc (h, w) = input-gradient plane (ni, ci).
ND_EMU_DNN_CLONES void backward_data_plane(const ConvGeometry& g, const Taps& taps, const double* w,
                                           const double* dy, int64_t ni, int64_t ci, double* acc) {
  const int64_t cg = g.c_per_group(), kg = g.k_per_group(), grp = ci / cg, cc = ci % cg;
  const int64_t ohw = g.oh * g.ow, rs = g.r * g.s;
  std::fill(acc, acc + g.h * g.w, 0.0);
  for (int64_t kk = 0; kk < kg; ++kk) {
    const int64_t ko = grp * kg + kk;
    const double* dyp = dy + (ni * g.k + ko) * ohw;
    const double* wp = w + (ko * cg + cc) * rs;
    for (int64_t ky = 0; ky < g.r; ++ky) {
      const TapRange& ry = taps.rows[ky];
      if (taps.bwd.n) {
        double wv[kMaxFused];
        for (int64_t kx = 0; kx < g.s; ++kx) wv[kx] = wp[tap(g, ky, kx)];
        for (int64_t oy = ry.lo; oy < ry.hi; ++oy)
          fused_row(acc + (oy * g.stride_h + ry.off) * g.w, dyp + oy * g.ow, wv, taps.bwd);
        continue;
      }
      for (int64_t kx = 0; kx < g.s; ++kx) {
        const TapRange& rx = taps.cols[kx];
        const double wv = wp[tap(g, ky, kx)];
        for (int64_t oy = ry.lo; oy < ry.hi; ++oy) {
          axpy_scatter(acc + (oy * g.stride_h + ry.off) * g.w + rx.off, dyp + oy * g.ow, wv, rx.lo,
                       rx.hi, g.stride_w);
        }
      }
    }
  }
}

// acc (r, s) = filter-gradient plane (ko, cc).
ND_EMU_DNN_CLONES void backward_filter_plane(const ConvGeometry& g, const Taps& taps,
                                             const double* x, const double* dy, int64_t ko,
                                             int64_t cc, double* acc) {
  const int64_t cg = g.c_per_group(), ci = (ko / g.k_per_group()) * cg + cc;
  const int64_t hw = g.h * g.w, ohw = g.oh * g.ow;
  std::fill(acc, acc + g.r * g.s, 0.0);
  for (int64_t ni = 0; ni < g.n; ++ni) {
    const double* xp = x + (ni * g.c + ci) * hw;
    const double* dyp = dy + (ni * g.k + ko) * ohw;
    for (int64_t ky = 0; ky < g.r; ++ky) {
      const TapRange& ry = taps.rows[ky];
      for (int64_t kx = 0; kx < g.s; ++kx) {
        const TapRange& rx = taps.cols[kx];
        double s = 0.0;
        for (int64_t oy = ry.lo; oy < ry.hi; ++oy) {
          s += dot(dyp + oy * g.ow, xp + (oy * g.stride_h + ry.off) * g.w + rx.off, rx.lo, rx.hi,
                   g.stride_w);
        }
        acc[tap(g, ky, kx)] += s;
      }
    }
  }
}

// The shared frame of the three passes: widens the inputs a (a_count floats) and b, then computes
// planes out planes of plane floats each, plane t from plane_fn(a, b, t / split, t % split, acc).
template <typename PlaneFn>
void run_planes(const float* a, int64_t a_count, const float* b, int64_t b_count, float* out,
                int64_t planes, int64_t split, int64_t plane, Blend blend, PlaneFn plane_fn) {
  const auto ad = widen(a, a_count);
  const auto bd = widen(b, b_count);
#pragma omp parallel
  {
    std::vector<double> acc(plane);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < planes; ++t) {
      plane_fn(ad.data(), bd.data(), t / split, t % split, acc.data());
      store(out + t * plane, acc.data(), plane, blend);
    }
  }
}

}  // namespace

void conv_forward(const ConvGeometry& g, const float* x, const float* w, float* y, Blend b) {
  const Taps taps(g);
  run_planes(x, g.n * g.c * g.h * g.w, w, g.k * g.c_per_group() * g.r * g.s, y, g.n * g.k, g.k,
             g.oh * g.ow, b,
             [&](const double* xd, const double* wd, int64_t ni, int64_t ko, double* acc) {
               forward_plane(g, taps, xd, wd, ni, ko, acc);
             });
}

void conv_backward_data(const ConvGeometry& g, const float* w, const float* dy, float* dx,
                        Blend b) {
  const Taps taps(g);
  run_planes(w, g.k * g.c_per_group() * g.r * g.s, dy, g.n * g.k * g.oh * g.ow, dx, g.n * g.c, g.c,
             g.h * g.w, b,
             [&](const double* wd, const double* dyd, int64_t ni, int64_t ci, double* acc) {
               backward_data_plane(g, taps, wd, dyd, ni, ci, acc);
             });
}

void conv_backward_filter(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                          Blend b) {
  const Taps taps(g);
  const int64_t cg = g.c_per_group();
  run_planes(x, g.n * g.c * g.h * g.w, dy, g.n * g.k * g.oh * g.ow, dw, g.k * cg, cg, g.r * g.s, b,
             [&](const double* xd, const double* dyd, int64_t ko, int64_t cc, double* acc) {
               backward_filter_plane(g, taps, xd, dyd, ko, cc, acc);
             });
}

void bias_backward(int64_t n, int64_t k, int64_t hw, const float* dy, float* db, Blend b) {
#pragma omp parallel for schedule(static)
  for (int64_t ko = 0; ko < k; ++ko) {
    double s = 0.0;
    for (int64_t ni = 0; ni < n; ++ni) {
      const float* p = dy + (ni * k + ko) * hw;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < hw; ++i) s += double(p[i]);
    }
    store(db + ko, &s, 1, b);
  }
}

float round_tf32(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u) return v;  // inf and NaN pass unchanged
  u += 0x0fffu + ((u >> 13) & 1u);                 // round the 13 dropped bits to nearest even
  u &= 0xffffe000u;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

void round_tf32(float* p, int64_t count) {
  for (int64_t i = 0; i < count; ++i) p[i] = round_tf32(p[i]);
}

}  // namespace nd_emu::dnn
