// ops:: in-place optimizer updates (SGD with momentum, Adam) on parameters and their state.
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/optimizer.h"

namespace nd::ops {

using detail::dispatch;
using detail::ptr;

namespace {
void check_state(const char* op, const Tensor& p, std::initializer_list<const Tensor*> others) {
  ND_CHECK(p.is_contiguous(), op, ": parameter must be contiguous");
  for (const Tensor* t : others)
    ND_CHECK(t->shape() == p.shape() && t->is_contiguous() && t->device() == p.device() &&
                 t->dtype() == p.dtype(),
             op, ": state tensor ", shape_str(t->shape()), " does not match parameter ",
             shape_str(p.shape()));
}
}  // namespace

void sgd_step(const SgdConfig& c, Tensor& param, const Tensor& grad_in, Tensor& buf) {
  Tensor grad = grad_in.contiguous();
  check_state("sgd_step", param, {&grad, &buf});
  dispatch(
      "sgd_step", param,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::sgd_step_cpu<T>(c, ptr<T>(param), ptr<T>(grad), ptr<T>(buf), param.numel());
      },
      [&](auto stream) {
        kernels::sgd_step_cuda(c, ptr<float>(param), ptr<float>(grad), ptr<float>(buf),
                               param.numel(), stream);
      });
}

void adam_step(const AdamConfig& c, Tensor& param, const Tensor& grad_in, Tensor& m, Tensor& v) {
  Tensor grad = grad_in.contiguous();
  check_state("adam_step", param, {&grad, &m, &v});
  dispatch(
      "adam_step", param,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::adam_step_cpu<T>(c, ptr<T>(param), ptr<T>(grad), ptr<T>(m), ptr<T>(v),
                                  param.numel());
      },
      [&](auto stream) {
        kernels::adam_step_cuda(c, ptr<float>(param), ptr<float>(grad), ptr<float>(m),
                                ptr<float>(v), param.numel(), stream);
      });
}

}  // namespace nd::ops
