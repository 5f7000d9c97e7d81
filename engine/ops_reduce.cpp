// ops:: reductions (sum/mean over axes, argmax over rows).
#include <algorithm>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/reduce.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

namespace {

std::vector<int64_t> normalize_axes(std::vector<int64_t> axes, int64_t ndim) {
  for (int64_t& a : axes) {
    if (a < 0) a += ndim;
    ND_CHECK(a >= 0 && a < ndim, "reduction axis out of range for a ", ndim, "-d tensor");
  }
  std::sort(axes.begin(), axes.end());
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  return axes;
}

// Sums the contiguous tensor x over dims [first, last] (one run of adjacent axes), keeping them
// as size 1.
Tensor sum_run(const Tensor& x, int64_t first, int64_t last) {
  const Shape& s = x.shape();
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t i = 0; i < first; ++i) outer *= s[i];
  for (int64_t i = first; i <= last; ++i) n *= s[i];
  for (int64_t i = last + 1; i < int64_t(s.size()); ++i) inner *= s[i];
  Shape out_shape = s;
  for (int64_t i = first; i <= last; ++i) out_shape[i] = 1;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  if (out.numel() == 0) return out;
  if (n == 0) {
    out.zero_();
    return out;
  }
  dispatch(
      "sum", x,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::sum_axis_cpu<T>(ptr<T>(x), ptr<T>(out), outer, n, inner);
      },
      [&](auto stream) {
        kernels::sum_axis_cuda(ptr<float>(x), ptr<float>(out), outer, n, inner, stream);
      });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  axes = normalize_axes(std::move(axes), x.dim());
  Tensor r = x.contiguous().detach();
  // Reduce runs of adjacent axes from the last run to the first.
  for (int64_t i = int64_t(axes.size()) - 1; i >= 0;) {
    int64_t j = i;
    while (j > 0 && axes[j - 1] == axes[j] - 1) --j;
    r = sum_run(r, axes[j], axes[i]);
    i = j - 1;
  }
  Shape kept = r.shape();
  if (!keepdim) {
    Shape squeezed;
    for (int64_t i = 0; i < x.dim(); ++i)
      if (!std::binary_search(axes.begin(), axes.end(), i)) squeezed.push_back(x.shape()[i]);
    r = r.reshape(squeezed);
  }
  const Shape in_shape = x.shape();
  return record(r, {x}, "sum", [in_shape, kept](const Tensor& g) {
    return std::vector<Tensor>{expand(g.reshape(kept), in_shape)};
  });
}

Tensor sum(const Tensor& x) {
  std::vector<int64_t> all(x.dim());
  for (int64_t i = 0; i < x.dim(); ++i) all[i] = i;
  return sum(x, all, false);
}

Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdim) {
  axes = normalize_axes(std::move(axes), x.dim());
  int64_t count = 1;
  for (int64_t a : axes) count *= x.shape()[a];
  ND_CHECK(count > 0, "mean over an empty set of elements");
  return affine(sum(x, axes, keepdim), 1.0 / double(count), 0.0);
}

Tensor mean(const Tensor& x) {
  ND_CHECK(x.numel() > 0, "mean of an empty tensor");
  return affine(sum(x), 1.0 / double(x.numel()), 0.0);
}

Tensor argmax(const Tensor& x) {
  ND_CHECK(x.dim() == 2, "argmax expects (rows, cols), got ", shape_str(x.shape()));
  Tensor src = x.contiguous();
  const int64_t rows = x.size(0), cols = x.size(1);
  ND_CHECK(cols > 0, "argmax over zero columns");
  Tensor out = Tensor::empty({rows}, DType::I64, x.device());
  if (rows == 0) return out;
  dispatch(
      "argmax", x,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::argmax_rows_cpu<T>(ptr<T>(src), ptr<int64_t>(out), rows, cols);
      },
      [&](auto stream) {
        kernels::argmax_rows_cuda(ptr<float>(src), ptr<int64_t>(out), rows, cols, stream);
      });
  return out;
}

}  // namespace nd::ops
