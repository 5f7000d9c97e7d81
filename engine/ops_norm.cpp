// ops:: batch normalisation (training and eval) over (N, C, spatial...).
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/batchnorm.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

Tensor batch_norm(const Tensor& x_in, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum, double eps) {
  detail::check_same_device("batch_norm", {&x_in, &gamma, &beta, &running_mean, &running_var});
  ND_CHECK(x_in.dim() >= 2, "batch_norm: input must be (N, C, ...), got ", shape_str(x_in.shape()));
  kernels::BatchNormShape sh;
  sh.n = x_in.shape()[0], sh.c = x_in.shape()[1];
  sh.s = x_in.numel() / std::max<int64_t>(sh.n * sh.c, 1);
  sh.eps = eps, sh.momentum = momentum;
  const Tensor* per_channel[] = {&gamma, &beta, &running_mean, &running_var};
  for (const Tensor* t : per_channel)
    ND_CHECK(!t->defined() || (t->dim() == 1 && t->shape()[0] == sh.c && t->is_contiguous()),
             "batch_norm: per-channel tensor of shape ", shape_str(t->shape()), " for ", sh.c,
             " channels");
  ND_CHECK(training || (running_mean.defined() && running_var.defined()),
           "batch_norm in eval mode needs running statistics");
  ND_CHECK(!training || sh.n * sh.s > 1,
           "batch_norm: training needs more than one value per "
           "channel, got input ",
           shape_str(x_in.shape()));
  Tensor x = x_in.contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor save_mean = Tensor::empty({sh.c}, x.dtype(), x.device());
  Tensor save_invstd = Tensor::empty({sh.c}, x.dtype(), x.device());
  dispatch(
      "batch_norm", x,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::batch_norm_forward_cpu<T>(sh, training, ptr<T>(x), ptr<T>(gamma), ptr<T>(beta),
                                           ptr<T>(running_mean), ptr<T>(running_var),
                                           ptr<T>(save_mean), ptr<T>(save_invstd), ptr<T>(y));
      },
      [&](auto stream) {
        kernels::batch_norm_forward_cuda(sh, training, ptr<float>(x), ptr<float>(gamma),
                                         ptr<float>(beta), ptr<float>(running_mean),
                                         ptr<float>(running_var), ptr<float>(save_mean),
                                         ptr<float>(save_invstd), ptr<float>(y), stream);
      });
  std::vector<Tensor> inputs{x_in, gamma, beta};
  if (!any_requires_grad(inputs)) return y;
  const bool gx = x_in.requires_grad();
  const bool gg = gamma.defined() && gamma.requires_grad();
  const bool gbeta = beta.defined() && beta.requires_grad();
  Tensor xd = x.detach(), gd = gamma.defined() ? gamma.detach() : Tensor();
  return record(y, inputs, "batch_norm", [=](const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor dx = gx ? Tensor::empty(xd.shape(), xd.dtype(), xd.device()) : Tensor();
    Tensor dgamma = gg ? Tensor::empty({sh.c}, xd.dtype(), xd.device()) : Tensor();
    Tensor dbeta = gbeta ? Tensor::empty({sh.c}, xd.dtype(), xd.device()) : Tensor();
    dispatch(
        "batch_norm backward", xd,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::batch_norm_backward_cpu<T>(sh, training, ptr<T>(xd), ptr<T>(gd),
                                              ptr<T>(save_mean), ptr<T>(save_invstd), ptr<T>(g),
                                              ptr<T>(dx), ptr<T>(dgamma), ptr<T>(dbeta));
        },
        [&](auto stream) {
          kernels::batch_norm_backward_cuda(sh, training, ptr<float>(xd), ptr<float>(gd),
                                            ptr<float>(save_mean), ptr<float>(save_invstd),
                                            ptr<float>(g), ptr<float>(dx), ptr<float>(dgamma),
                                            ptr<float>(dbeta), stream);
        });
    return std::vector<Tensor>{dx, dgamma, dbeta};
  });
}

}  // namespace nd::ops
