// ops:: pooling: max_pool2d, avg_pool2d and adaptive_avg_pool2d (kernels/pool.h), with PyTorch's
// argument rules checked here so that bad settings get a message instead of a kernel error. Max
// pooling saves its int32 argmax (index within each (H, W) plane) for the backward only when a
// gradient will be needed.
#include <cstdint>
#include <limits>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/pool.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

namespace {

void check_input(const char* op, const Tensor& x) {
  ND_CHECK(x.dim() == 4, op, ": input must be (N, C, H, W), got ", shape_str(x.shape()));
  ND_CHECK(x.shape()[2] >= 1 && x.shape()[3] >= 1, op, ": input ", shape_str(x.shape()),
           " has an empty spatial dimension");
  ND_CHECK(x.shape()[2] * x.shape()[3] <= std::numeric_limits<int32_t>::max(), op, ": a plane of ",
           x.shape()[2], "x", x.shape()[3], " pixels is beyond the int32 index range");
}

// x (N, C, H, W) and PyTorch's rules: kernel >= 1, stride >= 1 (0: the kernel size),
// 0 <= padding <= kernel / 2, and the window must fit the padded input.
kernels::Pool2dShape pool_shape(const char* op, const Tensor& x, int64_t kernel, int64_t stride,
                                int64_t padding) {
  check_input(op, x);
  ND_CHECK(kernel >= 1, op, ": kernel size must be at least 1, got ", kernel);
  ND_CHECK(stride >= 0, op, ": stride must be at least 1 (or 0 for the kernel size), got ", stride);
  ND_CHECK(padding >= 0, op, ": padding must be non-negative, got ", padding);
  ND_CHECK(2 * padding <= kernel, op, ": padding ", padding, " is more than half the kernel size ",
           kernel, " (at most ", kernel / 2,
           " allowed, as in PyTorch: a window must never lie entirely in the padding)");
  kernels::Pool2dShape s;
  s.n = x.shape()[0], s.c = x.shape()[1], s.h = x.shape()[2], s.w = x.shape()[3];
  s.kh = s.kw = kernel;
  s.stride_h = s.stride_w = stride == 0 ? kernel : stride;
  s.pad_h = s.pad_w = padding;
  ND_CHECK(s.h + 2 * padding >= kernel && s.w + 2 * padding >= kernel, op, ": the ", kernel, "x",
           kernel, " window is larger than the input ", s.h, "x", s.w, " padded by ", padding,
           " on each side (", s.h + 2 * padding, "x", s.w + 2 * padding,
           "); use a smaller kernel or a larger input");
  return s;
}

}  // namespace

Tensor max_pool2d(const Tensor& x_in, int64_t kernel, int64_t stride, int64_t padding) {
  const kernels::Pool2dShape s = pool_shape("max_pool2d", x_in, kernel, stride, padding);
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({s.n, s.c, s.out_h(), s.out_w()}, x.dtype(), x.device());
  const bool grad = any_requires_grad({&x_in});
  // (N, C, Ho, Wo) int32: the winner's iy * W + ix, kept only for the backward.
  Tensor argmax = grad ? Tensor::empty(y.shape(), DType::I32, x.device()) : Tensor();
  dispatch(
      "max_pool2d", x,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::max_pool2d_forward_cpu<T>(s, ptr<T>(x), ptr<T>(y), ptr<int32_t>(argmax));
      },
      [&](auto stream) {
        kernels::max_pool2d_forward_cuda(s, ptr<float>(x), ptr<float>(y), ptr<int32_t>(argmax),
                                         stream);
      });
  if (!grad) return y;
  return record(y, {x_in}, "max_pool2d", [s, argmax](const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty({s.n, s.c, s.h, s.w}, g.dtype(), g.device());
    dispatch(
        "max_pool2d backward", g,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::max_pool2d_backward_cpu<T>(s, ptr<T>(g), ptr<int32_t>(argmax), ptr<T>(dx));
        },
        [&](auto stream) {
          kernels::max_pool2d_backward_cuda(s, ptr<float>(g), ptr<int32_t>(argmax), ptr<float>(dx),
                                            stream);
        });
    return std::vector<Tensor>{dx};
  });
}

Tensor avg_pool2d(const Tensor& x_in, int64_t kernel, int64_t stride, int64_t padding) {
  const kernels::Pool2dShape s = pool_shape("avg_pool2d", x_in, kernel, stride, padding);
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({s.n, s.c, s.out_h(), s.out_w()}, x.dtype(), x.device());
  dispatch(
      "avg_pool2d", x,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::avg_pool2d_forward_cpu<T>(s, ptr<T>(x), ptr<T>(y));
      },
      [&](auto stream) {
        kernels::avg_pool2d_forward_cuda(s, ptr<float>(x), ptr<float>(y), stream);
      });
  if (!any_requires_grad({&x_in})) return y;
  return record(y, {x_in}, "avg_pool2d", [s](const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty({s.n, s.c, s.h, s.w}, g.dtype(), g.device());
    dispatch(
        "avg_pool2d backward", g,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::avg_pool2d_backward_cpu<T>(s, ptr<T>(g), ptr<T>(dx));
        },
        [&](auto stream) {
          kernels::avg_pool2d_backward_cuda(s, ptr<float>(g), ptr<float>(dx), stream);
        });
    return std::vector<Tensor>{dx};
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, int64_t out_h, int64_t out_w) {
  check_input("adaptive_avg_pool2d", x_in);
  ND_CHECK(out_h >= 1 && out_w >= 1, "adaptive_avg_pool2d: output size must be at least 1x1, got ",
           out_h, "x", out_w);
  ND_CHECK(out_h * out_w <= std::numeric_limits<int32_t>::max(),
           "adaptive_avg_pool2d: output size ", out_h, "x", out_w,
           " is beyond the int32 index range");
  kernels::AdaptivePool2dShape s;
  s.n = x_in.shape()[0], s.c = x_in.shape()[1], s.h = x_in.shape()[2], s.w = x_in.shape()[3];
  s.out_h = out_h, s.out_w = out_w;
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty({s.n, s.c, out_h, out_w}, x.dtype(), x.device());
  dispatch(
      "adaptive_avg_pool2d", x,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::adaptive_avg_pool2d_forward_cpu<T>(s, ptr<T>(x), ptr<T>(y));
      },
      [&](auto stream) {
        kernels::adaptive_avg_pool2d_forward_cuda(s, ptr<float>(x), ptr<float>(y), stream);
      });
  if (!any_requires_grad({&x_in})) return y;
  return record(y, {x_in}, "adaptive_avg_pool2d", [s](const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor dx = Tensor::empty({s.n, s.c, s.h, s.w}, g.dtype(), g.device());
    dispatch(
        "adaptive_avg_pool2d backward", g,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::adaptive_avg_pool2d_backward_cpu<T>(s, ptr<T>(g), ptr<T>(dx));
        },
        [&](auto stream) {
          kernels::adaptive_avg_pool2d_backward_cuda(s, ptr<float>(g), ptr<float>(dx), stream);
        });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace nd::ops
