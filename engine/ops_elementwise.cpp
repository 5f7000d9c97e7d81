// ops:: elementwise arithmetic with broadcasting, unary activations and affine (see ops.h).
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;
using kernels::BinaryOp;

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    ND_CHECK(da == db || da == 1 || db == 1, "shapes ", shape_str(a), " and ", shape_str(b),
             " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {

// Strides of t read as shape `out` (0 where t is broadcast).
void broadcast_strides(const Tensor& t, const Shape& out, int64_t* strides) {
  const size_t lead = out.size() - size_t(t.dim());
  for (size_t i = 0; i < out.size(); ++i) {
    if (i < lead || t.shape()[i - lead] == 1) {
      strides[i] = 0;
    } else {
      strides[i] = t.strides()[i - lead];
    }
  }
}

Tensor binary_raw(BinaryOp op, const Tensor& a, const Tensor& b) {
  detail::check_same_device("binary op", {&a, &b});
  const Shape out_shape = broadcast_shapes(a.shape(), b.shape());
  kernels::BroadcastLayout l;
  l.ndim = int(out_shape.size());
  ND_CHECK(l.ndim <= kMaxDims, "too many dimensions");
  for (int i = 0; i < l.ndim; ++i) l.shape[i] = out_shape[i];
  broadcast_strides(a, out_shape, l.stride_a);
  broadcast_strides(b, out_shape, l.stride_b);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  dispatch(
      "binary op", a,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::binary_forward_cpu<T>(op, ptr<T>(a), ptr<T>(b), ptr<T>(out), l);
      },
      [&](auto stream) {
        kernels::binary_forward_cuda(op, ptr<float>(a), ptr<float>(b), ptr<float>(out), l, stream);
      });
  return out;
}

}  // namespace

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const size_t lead = g.shape().size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t i = 0; i < g.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)) axes.push_back(int64_t(i));
  Tensor s = sum(g, axes, /*keepdim=*/true);
  return s.reshape(shape);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  Tensor zero = Tensor::zeros(shape, x.dtype(), x.device());
  return add(zero, x);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Add, a, b);
  const Shape sa = a.shape(), sb = b.shape();
  return record(out, {a, b}, "add", [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(g, sb)};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Sub, a, b);
  const Shape sa = a.shape(), sb = b.shape();
  return record(out, {a, b}, "sub", [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to_shape(g, sa), sum_to_shape(neg(g), sb)};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Mul, a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor ad = a.detach(), bd = b.detach();
  return record(out, {a, b}, "mul", [ad, bd, ga, gb](const Tensor& g) {
    return std::vector<Tensor>{
        ga ? sum_to_shape(binary_raw(BinaryOp::Mul, g, bd), ad.shape()) : Tensor(),
        gb ? sum_to_shape(binary_raw(BinaryOp::Mul, g, ad), bd.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(BinaryOp::Div, a, b);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor ad = a.detach(), bd = b.detach(), od = out.detach();
  return record(out, {a, b}, "div", [ad, bd, od, ga, gb](const Tensor& g) {
    Tensor g_over_b = binary_raw(BinaryOp::Div, g, bd);
    // d(a/b)/db = -(a/b)/b
    return std::vector<Tensor>{
        ga ? sum_to_shape(g_over_b, ad.shape()) : Tensor(),
        gb ? sum_to_shape(neg(binary_raw(BinaryOp::Mul, g_over_b, od)), bd.shape()) : Tensor()};
  });
}

Tensor affine(const Tensor& x, double alpha, double beta) {
  Tensor src = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) {
    dispatch(
        "affine", x,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::affine_cpu<T>(ptr<T>(src), ptr<T>(out), out.numel(), alpha, beta);
        },
        [&](auto stream) {
          kernels::affine_cuda(ptr<float>(src), ptr<float>(out), out.numel(), alpha, beta, stream);
        });
  }
  return record(out, {x}, "affine",
                [alpha](const Tensor& g) { return std::vector<Tensor>{affine(g, alpha, 0.0)}; });
}

namespace {
kernels::UnaryOp kernel_op(UnaryOp op) {
  switch (op) {
    case UnaryOp::Relu:
      return kernels::UnaryOp::Relu;
    case UnaryOp::Sigmoid:
      return kernels::UnaryOp::Sigmoid;
    case UnaryOp::Tanh:
      return kernels::UnaryOp::Tanh;
    case UnaryOp::Exp:
      return kernels::UnaryOp::Exp;
    case UnaryOp::Log:
      return kernels::UnaryOp::Log;
    case UnaryOp::Sqrt:
      return kernels::UnaryOp::Sqrt;
    case UnaryOp::Neg:
      return kernels::UnaryOp::Neg;
    case UnaryOp::Square:
      return kernels::UnaryOp::Square;
    case UnaryOp::Silu:
      return kernels::UnaryOp::Silu;
    case UnaryOp::Abs:
      return kernels::UnaryOp::Abs;
  }
  ND_FAIL("unary: unknown op ", int(op));
}

const char* unary_name(UnaryOp op) {
  switch (op) {
    case UnaryOp::Relu:
      return "relu";
    case UnaryOp::Sigmoid:
      return "sigmoid";
    case UnaryOp::Tanh:
      return "tanh";
    case UnaryOp::Exp:
      return "exp";
    case UnaryOp::Log:
      return "log";
    case UnaryOp::Sqrt:
      return "sqrt";
    case UnaryOp::Neg:
      return "neg";
    case UnaryOp::Square:
      return "square";
    case UnaryOp::Silu:
      return "silu";
    case UnaryOp::Abs:
      return "abs";
  }
  return "unary";
}

Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& y, const Tensor& gin) {
  Tensor g = gin.contiguous();
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (dx.numel() == 0) return dx;
  dispatch(
      unary_name(op), x,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::unary_backward_cpu<T>(kernel_op(op), ptr<T>(x), ptr<T>(y), ptr<T>(g), ptr<T>(dx),
                                       dx.numel());
      },
      [&](auto stream) {
        kernels::unary_backward_cuda(kernel_op(op), ptr<float>(x), ptr<float>(y), ptr<float>(g),
                                     ptr<float>(dx), dx.numel(), stream);
      });
  return dx;
}
}  // namespace

Tensor unary(UnaryOp op, const Tensor& x) {
  Tensor src = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.numel() > 0) {
    dispatch(
        unary_name(op), x,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::unary_forward_cpu<T>(kernel_op(op), ptr<T>(src), ptr<T>(out), out.numel());
        },
        [&](auto stream) {
          kernels::unary_forward_cuda(kernel_op(op), ptr<float>(src), ptr<float>(out), out.numel(),
                                      stream);
        });
  }
  if (!any_requires_grad({&x})) return out;
  Tensor xd = src.detach(), yd = out.detach();
  return record(out, {x}, unary_name(op), [op, xd, yd](const Tensor& g) {
    return std::vector<Tensor>{unary_backward(op, xd, yd, g)};
  });
}

}  // namespace nd::ops
