// Batch normalisation layers (see batchnorm.h).
#include "layers/batchnorm.h"

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
  return ops::batch_norm(x, weight_ ? *weight_ : Tensor(), bias_ ? *bias_ : Tensor(),
                         *running_mean_, *running_var_, is_training(), momentum_, eps_);
}

std::string BatchNorm::type_name() const {
  return spatial_dims_ == 2 ? "BatchNorm2d" : "BatchNorm1d";
}

std::string BatchNorm::describe() const {
  return std::to_string(channels_) + ", eps " + std::to_string(eps_) + ", momentum " +
         std::to_string(momentum_);
}

}  // namespace nd
