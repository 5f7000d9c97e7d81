// ops:: 2-D convolution (CPU: oneDNN for float32, else the im2col + GEMM reference; CUDA: cuDNN)
// and the im2col op itself.
#include <type_traits>

#include "engine/cpu_backend.h"
#include "engine/device_scratch.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/conv.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

namespace {

// float32 on the CPU runs oneDNN unless the reference is selected (cpu_backend.h).
template <typename T>
bool use_onednn() {
  return std::is_same_v<T, float> && cpu_conv_path() == CpuConvPath::OneDnn;
}

kernels::Conv2dShape conv_shape(const Tensor& x, int64_t out_channels, int64_t kh, int64_t kw,
                                const Conv2dParams& p) {
  ND_CHECK(x.dim() == 4, "conv2d/im2col: input must be (N, C, H, W), got ", shape_str(x.shape()));
  ND_CHECK(p.stride >= 1 && p.dilation >= 1 && p.padding >= 0 && p.groups >= 1,
           "conv2d: stride, dilation and groups must be >= 1 and padding >= 0");
  kernels::Conv2dShape s;
  s.n = x.shape()[0], s.c = x.shape()[1], s.h = x.shape()[2], s.w = x.shape()[3];
  s.o = out_channels, s.kh = kh, s.kw = kw;
  s.stride_h = s.stride_w = p.stride;
  s.pad_h = s.pad_w = p.padding;
  s.dil_h = s.dil_w = p.dilation;
  s.groups = p.groups;
  ND_CHECK(s.out_h() >= 1 && s.out_w() >= 1, "conv2d: input ", shape_str(x.shape()),
           " is smaller than the ", kh, "x", kw, " kernel (dilation ", p.dilation, ", padding ",
           p.padding, ")");
  return s;
}

struct ConvGrads {
  Tensor dx, dw, db;
};

ConvGrads conv2d_backward(const kernels::Conv2dShape& s, const Tensor& x, const Tensor& w,
                          const Tensor& g_in, bool want_x, bool want_w, bool want_b) {
  Tensor g = g_in.contiguous();
  ConvGrads r;
  if (want_x) r.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (want_w) r.dw = Tensor::empty(w.shape(), w.dtype(), w.device());
  if (want_b) r.db = Tensor::empty({s.o}, w.dtype(), w.device());
  dispatch(
      "conv2d backward", x,
      [&](auto tag) {
        using T = decltype(tag);
        if (use_onednn<T>())
          kernels::conv2d_backward_onednn(s, ptr<float>(x), ptr<float>(w), ptr<float>(g),
                                          ptr<float>(r.dx), ptr<float>(r.dw), ptr<float>(r.db));
        else
          kernels::conv2d_backward_cpu<T>(s, ptr<T>(x), ptr<T>(w), ptr<T>(g), ptr<T>(r.dx),
                                          ptr<T>(r.dw), ptr<T>(r.db));
      },
      [&](auto stream) {
        DeviceScratch scratch(x.device());
        kernels::conv2d_backward_cuda(s, ptr<float>(x), ptr<float>(w), ptr<float>(g),
                                      ptr<float>(r.dx), ptr<float>(r.dw), ptr<float>(r.db), scratch,
                                      stream);
      });
  return r;
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const Conv2dParams& p) {
  detail::check_same_device("conv2d", {&x_in, &w_in, &b_in});
  ND_CHECK(w_in.dim() == 4, "conv2d: weight must be (O, C/groups, kh, kw), got ",
           shape_str(w_in.shape()));
  const kernels::Conv2dShape s =
      conv_shape(x_in, w_in.shape()[0], w_in.shape()[2], w_in.shape()[3], p);
  ND_CHECK(s.c % s.groups == 0 && s.o % s.groups == 0, "conv2d: ", s.c, " input and ", s.o,
           " output channels are not divisible by groups=", s.groups);
  ND_CHECK(w_in.shape()[1] == s.c / s.groups, "conv2d: weight ", shape_str(w_in.shape()),
           " expects ", w_in.shape()[1] * s.groups, " input channels, input has ", s.c);
  ND_CHECK(!b_in.defined() || (b_in.dim() == 1 && b_in.shape()[0] == s.o), "conv2d: bias ",
           shape_str(b_in.shape()), " does not match ", s.o, " output channels");
  Tensor x = x_in.contiguous(), w = w_in.contiguous(),
         b = b_in.defined() ? b_in.contiguous() : b_in;
  Tensor y = Tensor::empty({s.n, s.o, s.out_h(), s.out_w()}, x.dtype(), x.device());
  dispatch(
      "conv2d", x,
      [&](auto tag) {
        using T = decltype(tag);
        if (use_onednn<T>())
          kernels::conv2d_forward_onednn(s, ptr<float>(x), ptr<float>(w), ptr<float>(b),
                                         ptr<float>(y));
        else
          kernels::conv2d_forward_cpu<T>(s, ptr<T>(x), ptr<T>(w), ptr<T>(b), ptr<T>(y));
      },
      [&](auto stream) {
        DeviceScratch scratch(x.device());
        kernels::conv2d_forward_cuda(s, ptr<float>(x), ptr<float>(w), ptr<float>(b), ptr<float>(y),
                                     scratch, stream);
      });
  std::vector<Tensor> inputs{x_in, w_in};
  if (b_in.defined()) inputs.push_back(b_in);
  if (!any_requires_grad(inputs)) return y;
  const bool gx = x_in.requires_grad(), gw = w_in.requires_grad();
  const bool gb = b_in.defined() && b_in.requires_grad();
  Tensor xd = x.detach(), wd = w.detach();
  return record(y, inputs, "conv2d", [s, xd, wd, gx, gw, gb](const Tensor& g) {
    ConvGrads r = conv2d_backward(s, xd, wd, g, gx, gw, gb);
    return std::vector<Tensor>{r.dx, r.dw, r.db};
  });
}

Tensor im2col(const Tensor& x_in, int64_t kh, int64_t kw, const Conv2dParams& p) {
  ND_CHECK(p.groups == 1, "im2col has no groups");
  const kernels::Conv2dShape s = conv_shape(x_in, 1, kh, kw, p);
  Tensor x = x_in.contiguous();
  const int64_t rows = s.c * kh * kw, cols = s.out_h() * s.out_w();
  Tensor out = Tensor::empty({s.n, rows, cols}, x.dtype(), x.device());
  dispatch(
      "im2col", x,
      [&](auto tag) {
        using T = decltype(tag);
        for (int64_t n = 0; n < s.n; ++n)
          kernels::im2col_cpu<T>(ptr<T>(x) + n * s.c * s.h * s.w, ptr<T>(out) + n * rows * cols, s);
      },
      [&](auto stream) { kernels::im2col_cuda(ptr<float>(x), ptr<float>(out), s, stream); });
  const Shape in_shape = x.shape();
  return record(out, {x_in}, "im2col", [s, in_shape, rows, cols](const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor dx = Tensor::zeros(in_shape, g.dtype(), g.device());
    dispatch(
        "col2im", g,
        [&](auto tag) {
          using T = decltype(tag);
          for (int64_t n = 0; n < s.n; ++n)
            kernels::col2im_cpu<T>(ptr<T>(g) + n * rows * cols, ptr<T>(dx) + n * s.c * s.h * s.w,
                                   s);
        },
        [&](auto stream) { kernels::col2im_cuda(ptr<float>(g), ptr<float>(dx), s, stream); });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace nd::ops
