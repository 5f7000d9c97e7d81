// CPU reference of the convolution family: im2col + GEMM per image and group, col2im for the
// input gradient.
#include <vector>

#include "kernels/conv.h"
#include "kernels/matmul.h"

namespace nd::kernels {

template <typename T>
void im2col_cpu(const T* x, T* cols, const Conv2dShape& s) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t ky = 0; ky < s.kh; ++ky)
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        T* row = cols + ((c * s.kh + ky) * s.kw + kx) * oh * ow;
        for (int64_t y = 0; y < oh; ++y) {
          const int64_t iy = y * s.stride_h - s.pad_h + ky * s.dil_h;
          for (int64_t xo = 0; xo < ow; ++xo) {
            const int64_t ix = xo * s.stride_w - s.pad_w + kx * s.dil_w;
            const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
            row[y * ow + xo] = inside ? x[(c * s.h + iy) * s.w + ix] : T(0);
          }
        }
      }
}

template <typename T>
void col2im_cpu(const T* cols, T* x, const Conv2dShape& s) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  for (int64_t c = 0; c < s.c; ++c)
    for (int64_t ky = 0; ky < s.kh; ++ky)
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const T* row = cols + ((c * s.kh + ky) * s.kw + kx) * oh * ow;
        for (int64_t y = 0; y < oh; ++y) {
          const int64_t iy = y * s.stride_h - s.pad_h + ky * s.dil_h;
          if (iy < 0 || iy >= s.h) continue;
          for (int64_t xo = 0; xo < ow; ++xo) {
            const int64_t ix = xo * s.stride_w - s.pad_w + kx * s.dil_w;
            if (ix >= 0 && ix < s.w) x[(c * s.h + iy) * s.w + ix] += row[y * ow + xo];
          }
        }
      }
}

namespace {
// Per-group GEMM geometry shared by forward and backward.
struct ConvGeometry {
  int64_t cg, og, kk, p;  // channels per group, outputs per group, cg*kh*kw, out pixels
  explicit ConvGeometry(const Conv2dShape& s)
      : cg(s.c / s.groups),
        og(s.o / s.groups),
        kk(s.c / s.groups * s.kh * s.kw),
        p(s.out_h() * s.out_w()) {}
};
}  // namespace

template <typename T>
void conv2d_forward_cpu(const Conv2dShape& s, const T* x, const T* w, const T* bias, T* y) {
  const ConvGeometry g(s);
  std::vector<T> cols(static_cast<size_t>(s.c * s.kh * s.kw * g.p));
  for (int64_t n = 0; n < s.n; ++n) {
    im2col_cpu(x + n * s.c * s.h * s.w, cols.data(), s);
    T* yn = y + n * s.o * g.p;
    for (int64_t gr = 0; gr < s.groups; ++gr) {
      GemmShape gs;  // y_g (og, p) = w_g (og, kk) * cols_g (kk, p)
      gs.m = g.og, gs.n = g.p, gs.k = g.kk, gs.lda = g.kk, gs.ldb = g.p, gs.ldc = g.p;
      gemm_cpu<T>(gs, 1.0, w + gr * g.og * g.kk, cols.data() + gr * g.kk * g.p, 0.0,
                  yn + gr * g.og * g.p);
    }
    if (bias)
      for (int64_t o = 0; o < s.o; ++o)
        for (int64_t i = 0; i < g.p; ++i) yn[o * g.p + i] += bias[o];
  }
}

template <typename T>
void conv2d_backward_cpu(const Conv2dShape& s, const T* x, const T* w, const T* dy, T* dx, T* dw,
                         T* dbias) {
  const ConvGeometry g(s);
  std::vector<T> cols(static_cast<size_t>(s.c * s.kh * s.kw * g.p));
  if (dw)
    for (int64_t i = 0; i < s.o * g.kk; ++i) dw[i] = T(0);
  if (dbias) {
    for (int64_t o = 0; o < s.o; ++o) {
      double acc = 0;
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t i = 0; i < g.p; ++i) acc += dy[(n * s.o + o) * g.p + i];
      dbias[o] = T(acc);
    }
  }
  for (int64_t n = 0; n < s.n; ++n) {
    const T* dyn = dy + n * s.o * g.p;
    if (dw) {
      im2col_cpu(x + n * s.c * s.h * s.w, cols.data(), s);
      for (int64_t gr = 0; gr < s.groups; ++gr) {
        GemmShape gs;  // dw_g (og, kk) += dy_g (og, p) * cols_g^T (p, kk)
        gs.trans_b = true, gs.m = g.og, gs.n = g.kk, gs.k = g.p;
        gs.lda = g.p, gs.ldb = g.p, gs.ldc = g.kk;
        gemm_cpu<T>(gs, 1.0, dyn + gr * g.og * g.p, cols.data() + gr * g.kk * g.p, 1.0,
                    dw + gr * g.og * g.kk);
      }
    }
    if (dx) {
      for (int64_t gr = 0; gr < s.groups; ++gr) {
        GemmShape gs;  // dcols_g (kk, p) = w_g^T (kk, og) * dy_g (og, p)
        gs.trans_a = true, gs.m = g.kk, gs.n = g.p, gs.k = g.og;
        gs.lda = g.kk, gs.ldb = g.p, gs.ldc = g.p;
        gemm_cpu<T>(gs, 1.0, w + gr * g.og * g.kk, dyn + gr * g.og * g.p, 0.0,
                    cols.data() + gr * g.kk * g.p);
      }
      T* dxn = dx + n * s.c * s.h * s.w;
      for (int64_t i = 0; i < s.c * s.h * s.w; ++i) dxn[i] = T(0);
      col2im_cpu(cols.data(), dxn, s);
    }
  }
}

#define ND_INSTANTIATE(T)                                                                        \
  template void im2col_cpu<T>(const T*, T*, const Conv2dShape&);                                 \
  template void col2im_cpu<T>(const T*, T*, const Conv2dShape&);                                 \
  template void conv2d_forward_cpu<T>(const Conv2dShape&, const T*, const T*, const T*, T*);     \
  template void conv2d_backward_cpu<T>(const Conv2dShape&, const T*, const T*, const T*, T*, T*, \
                                       T*);
ND_INSTANTIATE(float)
ND_INSTANTIATE(double)
#undef ND_INSTANTIATE

}  // namespace nd::kernels
