// CPU reference of the elementwise family (see elementwise.h): plain loops over float/double,
// shared among the threads by ranges of elements (cpu_parallel.h).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu_parallel.h"
#include "kernels/elementwise.h"

namespace nd::kernels {

namespace {
template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
}  // namespace

namespace {
template <typename T>
void unary_forward_range(UnaryOp op, const T* x, T* y, int64_t n) {
  switch (op) {
    case UnaryOp::Relu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
      break;
    case UnaryOp::Sigmoid:
      for (int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
      break;
    case UnaryOp::Tanh:
      for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
      break;
    case UnaryOp::Exp:
      for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
      break;
    case UnaryOp::Log:
      for (int64_t i = 0; i < n; ++i) y[i] = std::log(x[i]);
      break;
    case UnaryOp::Sqrt:
      for (int64_t i = 0; i < n; ++i) y[i] = std::sqrt(x[i]);
      break;
    case UnaryOp::Neg:
      for (int64_t i = 0; i < n; ++i) y[i] = -x[i];
      break;
    case UnaryOp::Square:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * x[i];
      break;
    case UnaryOp::Silu:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
      break;
    case UnaryOp::Abs:
      for (int64_t i = 0; i < n; ++i) y[i] = std::abs(x[i]);
      break;
  }
}

template <typename T>
void unary_backward_range(UnaryOp op, const T* x, const T* y, const T* dy, T* dx, int64_t n) {
  switch (op) {
    case UnaryOp::Relu:
      for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
      break;
    case UnaryOp::Sigmoid:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
      break;
    case UnaryOp::Tanh:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
      break;
    case UnaryOp::Exp:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i];
      break;
    case UnaryOp::Log:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] / x[i];
      break;
    case UnaryOp::Sqrt:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * T(0.5) / y[i];
      break;
    case UnaryOp::Neg:
      for (int64_t i = 0; i < n; ++i) dx[i] = -dy[i];
      break;
    case UnaryOp::Square:
      for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * T(2) * x[i];
      break;
    case UnaryOp::Silu:
      for (int64_t i = 0; i < n; ++i) {
        T s = sigmoid(x[i]);
        dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
      }
      break;
    case UnaryOp::Abs:
      for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dy[i] : (x[i] < T(0) ? -dy[i] : T(0));
      break;
  }
}
}  // namespace

template <typename T>
void unary_forward_cpu(UnaryOp op, const T* x, T* y, int64_t n) {
  parallel_ranges(n, 1,
                  [&](int64_t b, int64_t e) { unary_forward_range(op, x + b, y + b, e - b); });
}

template <typename T>
void unary_backward_cpu(UnaryOp op, const T* x, const T* y, const T* dy, T* dx, int64_t n) {
  // x or y may be null when the op's gradient does not read it.
  parallel_ranges(n, 1, [&](int64_t b, int64_t e) {
    unary_backward_range(op, x ? x + b : x, y ? y + b : y, dy + b, dx + b, e - b);
  });
}

namespace {
template <typename T, typename F>
void binary_loop(const T* a, const T* b, T* out, const BroadcastLayout& l, F f) {
  const int64_t n = l.numel();
  // Fast path: both operands contiguous with the output's shape.
  bool a_dense = true, b_dense = true;
  int64_t expect = 1;
  for (int d = l.ndim - 1; d >= 0; --d) {
    if (l.shape[d] != 1) {
      a_dense = a_dense && l.stride_a[d] == expect;
      b_dense = b_dense && l.stride_b[d] == expect;
    }
    expect *= l.shape[d];
  }
  if (a_dense && b_dense) {
    parallel_ranges(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = f(a[i], b[i]);
    });
    return;
  }
  if (l.ndim == 0) {
    out[0] = f(a[0], b[0]);
    return;
  }
  // Odometer over all but the last dimension; the last one is a strided inner loop.
  int64_t idx[kMaxDims] = {};
  const int last = l.ndim - 1;
  const int64_t inner = l.shape[last], sa = l.stride_a[last], sb = l.stride_b[last];
  int64_t off_a = 0, off_b = 0;
  for (int64_t base = 0; base < n; base += inner) {
    for (int64_t j = 0; j < inner; ++j) out[base + j] = f(a[off_a + j * sa], b[off_b + j * sb]);
    for (int d = last - 1; d >= 0; --d) {
      off_a += l.stride_a[d];
      off_b += l.stride_b[d];
      if (++idx[d] < l.shape[d]) break;
      off_a -= l.stride_a[d] * l.shape[d];
      off_b -= l.stride_b[d] * l.shape[d];
      idx[d] = 0;
    }
  }
}
}  // namespace

template <typename T>
void binary_forward_cpu(BinaryOp op, const T* a, const T* b, T* out, const BroadcastLayout& l) {
  switch (op) {
    case BinaryOp::Add:
      binary_loop(a, b, out, l, [](T u, T v) { return u + v; });
      break;
    case BinaryOp::Sub:
      binary_loop(a, b, out, l, [](T u, T v) { return u - v; });
      break;
    case BinaryOp::Mul:
      binary_loop(a, b, out, l, [](T u, T v) { return u * v; });
      break;
    case BinaryOp::Div:
      binary_loop(a, b, out, l, [](T u, T v) { return u / v; });
      break;
  }
}

template <typename T>
void affine_cpu(const T* x, T* y, int64_t n, double alpha, double beta) {
  const T a = T(alpha), b = T(beta);
  parallel_ranges(n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = a * x[i] + b;
  });
}

namespace {
template <typename T>
void fill_typed(T* y, int64_t n, T v) {
  for (int64_t i = 0; i < n; ++i) y[i] = v;
}

// Transposing copies (a strided view whose unit-stride dimension p is not the last) go tile by
// tile over the (p, last) plane so both sides stay in cache; other dims are walked outside.
template <typename T, bool kScatter>
void copy_strided_tiled(const T* src, T* dst, const StridedLayout& l, int p) {
  constexpr int64_t kTile = 32;
  const int last = l.ndim - 1;
  int64_t out_stride[kMaxDims];  // strides of the contiguous side
  int64_t acc = 1;
  for (int d = last; d >= 0; --d) {
    out_stride[d] = acc;
    acc *= l.shape[d];
  }
  const int64_t rows = l.shape[p], cols = l.shape[last], col_stride = l.stride[last];
  const int64_t row_out = out_stride[p];
  int64_t idx[kMaxDims] = {};
  int64_t off = 0, base = 0;  // strided / contiguous offsets of the current plane
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  for (;;) {
    // Threads take bands of tiles; every element is written once, so any split gives the same.
    parallel_ranges(row_tiles, kTile * cols, [&](int64_t t0, int64_t t1) {
      for (int64_t i0 = t0 * kTile; i0 < std::min(rows, t1 * kTile); i0 += kTile)
        for (int64_t j0 = 0; j0 < cols; j0 += kTile) {
          const int64_t i1 = std::min(rows, i0 + kTile), j1 = std::min(cols, j0 + kTile);
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j) {
              const int64_t strided = off + i + j * col_stride;
              const int64_t contiguous = base + i * row_out + j;
              if (kScatter) {
                dst[strided] = src[contiguous];
              } else {
                dst[contiguous] = src[strided];
              }
            }
        }
    });
    int d = last - 1;
    for (; d >= 0; --d) {
      if (d == p) continue;
      off += l.stride[d];
      base += out_stride[d];
      if (++idx[d] < l.shape[d]) break;
      off -= l.stride[d] * l.shape[d];
      base -= out_stride[d] * l.shape[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

// The same view with size-1 dimensions dropped and neighbours that are contiguous in memory
// merged (row-major order is unchanged), so a transpose of (N, C, 1, 1) maps is seen as one.
StridedLayout simplified(const StridedLayout& in) {
  StridedLayout l;
  for (int d = 0; d < in.ndim; ++d) {
    if (in.shape[d] == 1) continue;
    if (l.ndim > 0 && l.stride[l.ndim - 1] == in.stride[d] * in.shape[d]) {
      l.shape[l.ndim - 1] *= in.shape[d];
      l.stride[l.ndim - 1] = in.stride[d];
      continue;
    }
    l.shape[l.ndim] = in.shape[d];
    l.stride[l.ndim] = in.stride[d];
    ++l.ndim;
  }
  return l;
}

// Walks the strided view l in row-major order; kScatter writes into it instead of reading.
template <typename T, bool kScatter>
void copy_strided_typed(const T* src, T* dst, const StridedLayout& layout) {
  const int64_t n = layout.numel();
  const StridedLayout l = simplified(layout);
  if (n == 0) return;
  if (l.ndim == 0) {
    dst[0] = src[0];
    return;
  }
  const int last = l.ndim - 1;
  const int64_t inner = l.shape[last], s = l.stride[last];
  if (s != 1 && inner > 1) {
    for (int p = last - 1; p >= 0; --p)
      if (l.stride[p] == 1 && l.shape[p] > 1)
        return copy_strided_tiled<T, kScatter>(src, dst, l, p);
  }
  int64_t idx[kMaxDims] = {};
  int64_t off = 0;
  for (int64_t base = 0; base < n; base += inner) {
    if (kScatter) {
      for (int64_t j = 0; j < inner; ++j) dst[off + j * s] = src[base + j];
    } else if (s == 1) {
      std::memcpy(dst + base, src + off, sizeof(T) * inner);
    } else {
      for (int64_t j = 0; j < inner; ++j) dst[base + j] = src[off + j * s];
    }
    for (int d = last - 1; d >= 0; --d) {
      off += l.stride[d];
      if (++idx[d] < l.shape[d]) break;
      off -= l.stride[d] * l.shape[d];
      idx[d] = 0;
    }
  }
}

template <typename From, typename To>
void cast_typed(const From* src, To* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<To>(src[i]);
}

template <typename From>
void cast_from(const From* src, void* dst, DType to, int64_t n) {
  switch (to) {
    case DType::F32:
      cast_typed(src, static_cast<float*>(dst), n);
      break;
    case DType::F64:
      cast_typed(src, static_cast<double*>(dst), n);
      break;
    case DType::I32:
      cast_typed(src, static_cast<int32_t*>(dst), n);
      break;
    case DType::I64:
      cast_typed(src, static_cast<int64_t*>(dst), n);
      break;
    case DType::U8:
      cast_typed(src, static_cast<uint8_t*>(dst), n);
      break;
  }
}
}  // namespace

void fill_cpu(void* y, DType t, int64_t n, double value) {
  switch (t) {
    case DType::F32:
      fill_typed(static_cast<float*>(y), n, float(value));
      break;
    case DType::F64:
      fill_typed(static_cast<double*>(y), n, value);
      break;
    case DType::I32:
      fill_typed(static_cast<int32_t*>(y), n, int32_t(value));
      break;
    case DType::I64:
      fill_typed(static_cast<int64_t*>(y), n, int64_t(value));
      break;
    case DType::U8:
      fill_typed(static_cast<uint8_t*>(y), n, uint8_t(value));
      break;
  }
}

namespace {
template <bool kScatter>
void copy_strided_any(const void* src, void* dst, DType t, const StridedLayout& l) {
  switch (dtype_size(t)) {
    case 1:
      copy_strided_typed<uint8_t, kScatter>(static_cast<const uint8_t*>(src),
                                            static_cast<uint8_t*>(dst), l);
      break;
    case 4:
      copy_strided_typed<uint32_t, kScatter>(static_cast<const uint32_t*>(src),
                                             static_cast<uint32_t*>(dst), l);
      break;
    case 8:
      copy_strided_typed<uint64_t, kScatter>(static_cast<const uint64_t*>(src),
                                             static_cast<uint64_t*>(dst), l);
      break;
  }
}
}  // namespace

void copy_strided_cpu(const void* src, void* dst, DType t, const StridedLayout& l) {
  copy_strided_any<false>(src, dst, t, l);
}

void scatter_strided_cpu(const void* src, void* dst, DType t, const StridedLayout& l) {
  copy_strided_any<true>(src, dst, t, l);
}

void cast_cpu(const void* src, DType from, void* dst, DType to, int64_t n) {
  switch (from) {
    case DType::F32:
      cast_from(static_cast<const float*>(src), dst, to, n);
      break;
    case DType::F64:
      cast_from(static_cast<const double*>(src), dst, to, n);
      break;
    case DType::I32:
      cast_from(static_cast<const int32_t*>(src), dst, to, n);
      break;
    case DType::I64:
      cast_from(static_cast<const int64_t*>(src), dst, to, n);
      break;
    case DType::U8:
      cast_from(static_cast<const uint8_t*>(src), dst, to, n);
      break;
  }
}

#define ND_INSTANTIATE(T)                                                                        \
  template void unary_forward_cpu<T>(UnaryOp, const T*, T*, int64_t);                            \
  template void unary_backward_cpu<T>(UnaryOp, const T*, const T*, const T*, T*, int64_t);       \
  template void binary_forward_cpu<T>(BinaryOp, const T*, const T*, T*, const BroadcastLayout&); \
  template void affine_cpu<T>(const T*, T*, int64_t, double, double);
ND_INSTANTIATE(float)
ND_INSTANTIATE(double)
#undef ND_INSTANTIATE

}  // namespace nd::kernels
