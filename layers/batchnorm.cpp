// Batch normalisation layers (see batchnorm.h).
#include "layers/batchnorm.h"

#include "engine/comm.h"
#include "layers/sync_statistics.h"

namespace nd {

BatchNorm::BatchNorm(int64_t channels, int spatial_dims, double eps, double momentum, bool affine)
    : channels_(channels), spatial_dims_(spatial_dims), eps_(eps), momentum_(momentum) {
  ND_CHECK(channels > 0, "BatchNorm: channels must be positive, got ", channels);
  ND_CHECK(eps > 0, "BatchNorm: eps must be positive, got ", eps);
  if (affine) {
    weight_ = &register_parameter("weight", Tensor::ones({channels}));
    bias_ = &register_parameter("bias", Tensor::zeros({channels}));
  }
  running_mean_ = &register_buffer("running_mean", Tensor::zeros({channels}));
  running_var_ = &register_buffer("running_var", Tensor::ones({channels}));
  num_batches_tracked_ =
      &register_buffer("num_batches_tracked", Tensor::zeros({}, DType::I64), /*host=*/true);
}

Tensor BatchNorm::forward(const Tensor& x) {
  const int64_t want = 2 + (spatial_dims_ == 2 ? 2 : 0);
  const bool ok = spatial_dims_ == 2 ? x.dim() == 4 : (x.dim() == 2 || x.dim() == 3);
  ND_CHECK(ok && x.shape()[1] == channels_, type_name(), "(", channels_, ") got input of shape ",
           shape_str(x.shape()), "; expected ", want, "-d input with ", channels_, " channels");
  if (is_training()) num_batches_tracked_->data<int64_t>()[0] += 1;
  if (is_training() && comm::sync_statistics()) return forward_synchronised(x);
  return ops::batch_norm(x, weight_ ? *weight_ : Tensor(), bias_ ? *bias_ : Tensor(),
                         *running_mean_, *running_var_, is_training(), momentum_, eps_);
}

// SyncBN: the statistics of every rank's batch together, from primitive ops (differentiable
// through the all-reduces); the running buffers get the same update as ops::batch_norm's.
Tensor BatchNorm::forward_synchronised(const Tensor& x) {
  const int64_t n = x.shape()[0], c = channels_;
  Tensor x3 = x.reshape({n, c, -1});  // (N, C, S)
  const double count = double(n * x3.shape()[2]);
  Tensor mean = ops::mean(x3, {0, 2});
  Tensor m2 = ops::sum(ops::square(ops::sub(x3, mean.reshape({1, c, 1}))), {0, 2});
  const Moments all = all_reduce_moments({mean, m2, count}, /*diagonal=*/true);
  ND_CHECK(all.count > 1, type_name(),
           ": training needs more than one value per channel over all ranks, got ", all.count);
  Tensor var = ops::affine(all.m2, 1.0 / all.count, 0.0);
  {
    NoGradGuard no_grad;
    const double m = momentum_;
    running_mean_->copy_(ops::add(ops::affine(*running_mean_, 1.0 - m, 0.0),
                                  ops::affine(all.mean.detach(), m, 0.0)));
    Tensor unbiased = ops::affine(var.detach(), all.count / (all.count - 1.0), 0.0);
    running_var_->copy_(
        ops::add(ops::affine(*running_var_, 1.0 - m, 0.0), ops::affine(unbiased, m, 0.0)));
  }
  Tensor invstd =
      ops::div(Tensor::ones({c}, x.dtype(), x.device()), ops::sqrt(ops::affine(var, 1.0, eps_)));
  Tensor y = ops::mul(ops::sub(x3, all.mean.reshape({1, c, 1})), invstd.reshape({1, c, 1}));
  if (weight_) y = ops::mul(y, weight_->reshape({1, c, 1}));
  if (bias_) y = ops::add(y, bias_->reshape({1, c, 1}));
  return y.reshape(x.shape());
}

std::string BatchNorm::type_name() const {
  return spatial_dims_ == 2 ? "BatchNorm2d" : "BatchNorm1d";
}

std::string BatchNorm::describe() const {
  return std::to_string(channels_) + ", eps " + std::to_string(eps_) + ", momentum " +
         std::to_string(momentum_);
}

}  // namespace nd
