// CPU reference of the pooling family (see pool.h): direct loops over each (n, c) plane. Window
// sums accumulate in double; the backwards zero dx and scatter each output's gradient over its
// window in row-major output order (the order the CUDA gathers add in). Planes are independent:
// threads take whole planes (cpu_parallel.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu_parallel.h"
#include "kernels/pool.h"

namespace nd::kernels {

namespace {

// The part of output (oy, ox)'s window that lies inside the (H, W) plane: rows [y0, y1), columns
// [x0, x1).
struct Window {
  int64_t y0, y1, x0, x1;
};

Window clipped_window(const Pool2dShape& s, int64_t oy, int64_t ox) {
  const int64_t ys = oy * s.stride_h - s.pad_h, xs = ox * s.stride_w - s.pad_w;
  return {std::max<int64_t>(ys, 0), std::min(ys + s.kh, s.h), std::max<int64_t>(xs, 0),
          std::min(xs + s.kw, s.w)};
}

}  // namespace

template <typename T>
void max_pool2d_forward_cpu(const Pool2dShape& s, const T* x, T* y, int32_t* argmax) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  parallel_ranges(s.n * s.c, s.h * s.w, [&](int64_t first, int64_t last) {
    for (int64_t nc = first; nc < last; ++nc) {
      const T* plane = x + nc * s.h * s.w;
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const Window win = clipped_window(s, oy, ox);
          // Padding is -inf: it never wins. The first maximum in row-major order wins ties, and a
          // NaN wins over any number (PyTorch's rule, so divergence shows).
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_i = win.y0 * s.w + win.x0;
          for (int64_t iy = win.y0; iy < win.y1; ++iy)
            for (int64_t ix = win.x0; ix < win.x1; ++ix) {
              const T v = plane[iy * s.w + ix];
              if (v > best || std::isnan(v)) {
                best = v;
                best_i = iy * s.w + ix;
              }
            }
          const int64_t o = (nc * oh + oy) * ow + ox;
          y[o] = best;
          if (argmax) argmax[o] = static_cast<int32_t>(best_i);
        }
    }
  });
}

template <typename T>
void max_pool2d_backward_cpu(const Pool2dShape& s, const T* dy, const int32_t* argmax, T* dx) {
  const int64_t plane_out = s.out_h() * s.out_w(), plane_in = s.h * s.w;
  parallel_ranges(s.n * s.c, plane_in, [&](int64_t first, int64_t last) {
    std::fill(dx + first * plane_in, dx + last * plane_in, T(0));
    for (int64_t nc = first; nc < last; ++nc)
      for (int64_t o = nc * plane_out; o < (nc + 1) * plane_out; ++o)
        dx[nc * plane_in + argmax[o]] += dy[o];
  });
}

template <typename T>
void avg_pool2d_forward_cpu(const Pool2dShape& s, const T* x, T* y) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  const double area = double(s.kh * s.kw);  // padded zeros count (count_include_pad)
  parallel_ranges(s.n * s.c, s.h * s.w, [&](int64_t first, int64_t last) {
    for (int64_t nc = first; nc < last; ++nc) {
      const T* plane = x + nc * s.h * s.w;
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const Window win = clipped_window(s, oy, ox);
          double acc = 0;
          for (int64_t iy = win.y0; iy < win.y1; ++iy)
            for (int64_t ix = win.x0; ix < win.x1; ++ix) acc += plane[iy * s.w + ix];
          y[(nc * oh + oy) * ow + ox] = T(acc / area);
        }
    }
  });
}

template <typename T>
void avg_pool2d_backward_cpu(const Pool2dShape& s, const T* dy, T* dx) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  const T area = T(s.kh * s.kw);
  parallel_ranges(s.n * s.c, s.h * s.w, [&](int64_t first, int64_t last) {
    std::fill(dx + first * s.h * s.w, dx + last * s.h * s.w, T(0));
    for (int64_t nc = first; nc < last; ++nc) {
      T* plane = dx + nc * s.h * s.w;
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const Window win = clipped_window(s, oy, ox);
          const T g = dy[(nc * oh + oy) * ow + ox] / area;
          for (int64_t iy = win.y0; iy < win.y1; ++iy)
            for (int64_t ix = win.x0; ix < win.x1; ++ix) plane[iy * s.w + ix] += g;
        }
    }
  });
}

template <typename T>
void adaptive_avg_pool2d_forward_cpu(const AdaptivePool2dShape& s, const T* x, T* y) {
  parallel_ranges(s.n * s.c, s.h * s.w, [&](int64_t first, int64_t last) {
    for (int64_t nc = first; nc < last; ++nc) {
      const T* plane = x + nc * s.h * s.w;
      for (int64_t oy = 0; oy < s.out_h; ++oy) {
        const int64_t y0 = pool_bin_start(oy, s.h, s.out_h), y1 = pool_bin_end(oy, s.h, s.out_h);
        for (int64_t ox = 0; ox < s.out_w; ++ox) {
          const int64_t x0 = pool_bin_start(ox, s.w, s.out_w), x1 = pool_bin_end(ox, s.w, s.out_w);
          double acc = 0;
          for (int64_t iy = y0; iy < y1; ++iy)
            for (int64_t ix = x0; ix < x1; ++ix) acc += plane[iy * s.w + ix];
          y[(nc * s.out_h + oy) * s.out_w + ox] = T(acc / double((y1 - y0) * (x1 - x0)));
        }
      }
    }
  });
}

template <typename T>
void adaptive_avg_pool2d_backward_cpu(const AdaptivePool2dShape& s, const T* dy, T* dx) {
  parallel_ranges(s.n * s.c, s.h * s.w, [&](int64_t first, int64_t last) {
    std::fill(dx + first * s.h * s.w, dx + last * s.h * s.w, T(0));
    for (int64_t nc = first; nc < last; ++nc) {
      T* plane = dx + nc * s.h * s.w;
      for (int64_t oy = 0; oy < s.out_h; ++oy) {
        const int64_t y0 = pool_bin_start(oy, s.h, s.out_h), y1 = pool_bin_end(oy, s.h, s.out_h);
        for (int64_t ox = 0; ox < s.out_w; ++ox) {
          const int64_t x0 = pool_bin_start(ox, s.w, s.out_w), x1 = pool_bin_end(ox, s.w, s.out_w);
          const T g = dy[(nc * s.out_h + oy) * s.out_w + ox] / T((y1 - y0) * (x1 - x0));
          for (int64_t iy = y0; iy < y1; ++iy)
            for (int64_t ix = x0; ix < x1; ++ix) plane[iy * s.w + ix] += g;
        }
      }
    }
  });
}

#define ND_INSTANTIATE(T)                                                                     \
  template void max_pool2d_forward_cpu<T>(const Pool2dShape&, const T*, T*, int32_t*);        \
  template void max_pool2d_backward_cpu<T>(const Pool2dShape&, const T*, const int32_t*, T*); \
  template void avg_pool2d_forward_cpu<T>(const Pool2dShape&, const T*, T*);                  \
  template void avg_pool2d_backward_cpu<T>(const Pool2dShape&, const T*, T*);                 \
  template void adaptive_avg_pool2d_forward_cpu<T>(const AdaptivePool2dShape&, const T*, T*); \
  template void adaptive_avg_pool2d_backward_cpu<T>(const AdaptivePool2dShape&, const T*, T*);
ND_INSTANTIATE(float)
ND_INSTANTIATE(double)
#undef ND_INSTANTIATE

}  // namespace nd::kernels
