// ops:: matrix products over OpenBLAS/cuBLAS: matmul (2-D and batched 3-D) and linear.
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/matmul.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

namespace {

// A matrix operand as GEMM wants it: the last two dims contiguous either as stored (row-major)
// or as a transposed view, which GEMM reads with its transpose flag instead of a copy.
struct Operand {
  Tensor t;
  bool trans = false;
  int64_t ld = 0, batch_stride = 0;
};

Operand as_operand(const Tensor& x) {
  const int64_t d = x.dim();
  const int64_t rows = x.shape()[d - 2], cols = x.shape()[d - 1];
  const int64_t sr = x.strides()[d - 2], sc = x.strides()[d - 1];
  const int64_t sb = d == 3 ? x.strides()[0] : 0;
  const bool batch_ok = d == 2 || x.shape()[0] == 1 || sb == rows * cols;
  if (batch_ok && (sc == 1 || cols == 1) && (sr == cols || rows == 1))
    return {x, false, std::max<int64_t>(cols, 1), rows * cols};
  if (batch_ok && (sr == 1 || rows == 1) && (sc == rows || cols == 1))
    return {x, true, std::max<int64_t>(rows, 1), rows * cols};
  Tensor c = x.contiguous();
  return {c, false, std::max<int64_t>(cols, 1), rows * cols};
}

// out = a @ b (no autograd); shapes already checked.
Tensor gemm(const Tensor& a, const Tensor& b, const Shape& out_shape, int64_t batch) {
  Operand oa = as_operand(a), ob = as_operand(b);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  if (out.numel() == 0) return out;
  const int64_t d = a.dim();
  kernels::GemmShape g;
  g.trans_a = oa.trans, g.trans_b = ob.trans;
  g.m = a.shape()[d - 2], g.k = a.shape()[d - 1], g.n = b.shape()[d - 1];
  g.lda = oa.ld, g.ldb = ob.ld, g.ldc = std::max<int64_t>(g.n, 1);
  g.batch = batch;
  g.stride_a = oa.batch_stride, g.stride_b = ob.batch_stride, g.stride_c = g.m * g.n;
  dispatch(
      "matmul", a,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::gemm_cpu<T>(g, 1.0, ptr<T>(oa.t), ptr<T>(ob.t), 0.0, ptr<T>(out));
      },
      [&](auto stream) {
        kernels::gemm_cuda(g, 1.0, ptr<float>(oa.t), ptr<float>(ob.t), 0.0, ptr<float>(out),
                           stream);
      });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  detail::check_same_device("matmul", {&a, &b});
  ND_CHECK((a.dim() == 2 && b.dim() == 2) || (a.dim() == 3 && b.dim() == 3),
           "matmul expects two 2-D or two 3-D tensors, got ", shape_str(a.shape()), " and ",
           shape_str(b.shape()));
  const int64_t d = a.dim();
  ND_CHECK(a.shape()[d - 1] == b.shape()[d - 2],
           "matmul: inner dimensions differ: ", shape_str(a.shape()), " x ", shape_str(b.shape()));
  int64_t batch = 1;
  Shape out_shape{a.shape()[d - 2], b.shape()[d - 1]};
  if (d == 3) {
    ND_CHECK(a.shape()[0] == b.shape()[0], "matmul: batch sizes differ: ", shape_str(a.shape()),
             " x ", shape_str(b.shape()));
    batch = a.shape()[0];
    out_shape.insert(out_shape.begin(), batch);
  }
  Tensor out = gemm(a, b, out_shape, batch);
  if (!any_requires_grad({&a, &b})) return out;
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  Tensor ad = a.detach(), bd = b.detach();
  return record(out, {a, b}, "matmul", [ad, bd, ga, gb](const Tensor& g) {
    const int64_t n = ad.dim();
    return std::vector<Tensor>{ga ? matmul(g, bd.transpose(n - 2, n - 1)) : Tensor(),
                               gb ? matmul(ad.transpose(n - 2, n - 1), g) : Tensor()};
  });
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  detail::check_same_device("linear", {&x, &w, &b});
  ND_CHECK(x.dim() == 2 && w.dim() == 2 && x.shape()[1] == w.shape()[1], "linear: input ",
           shape_str(x.shape()), " does not match weight ", shape_str(w.shape()),
           " (expected (N, in) and (out, in))");
  ND_CHECK(!b.defined() || (b.dim() == 1 && b.shape()[0] == w.shape()[0]), "linear: bias ",
           shape_str(b.shape()), " does not match weight ", shape_str(w.shape()));
  Tensor out;
  {
    NoGradGuard no_grad;
    out = gemm(x, w.transpose(0, 1), {x.shape()[0], w.shape()[0]}, 1);
    if (b.defined()) out = add(out, b);
  }
  if (!any_requires_grad({&x, &w, &b})) return out;
  const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = b.defined() && b.requires_grad();
  Tensor xd = x.detach(), wd = w.detach();
  std::vector<Tensor> inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  return record(out, inputs, "linear", [xd, wd, gx, gw, gb](const Tensor& g) {
    std::vector<Tensor> grads{gx ? matmul(g, wd) : Tensor(),
                              gw ? matmul(g.transpose(0, 1), xd) : Tensor()};
    grads.push_back(gb ? sum(g, {0}) : Tensor());
    return grads;
  });
}

}  // namespace nd::ops
