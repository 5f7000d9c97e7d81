// Batch normalisation layers (PyTorch semantics and state_dict names: weight, bias,
// running_mean, running_var, num_batches_tracked). BatchNorm1d takes (N, C) or (N, C, L);
// BatchNorm2d takes (N, C, H, W). In data-parallel training with --sync-stats on, training
// batches are normalised with the statistics of all ranks' batches together (SyncBN).
#pragma once
#include "layers/module.h"

namespace nd {

class BatchNorm : public Module {
 public:
  BatchNorm(int64_t channels, int spatial_dims, double eps = 1e-5, double momentum = 0.1,
            bool affine = true);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override;
  std::string describe() const override;

 private:
  Tensor forward_synchronised(const Tensor& x);
  int64_t channels_;
  int spatial_dims_;
  double eps_, momentum_;
  Tensor* weight_ = nullptr;
  Tensor* bias_ = nullptr;
  Tensor* running_mean_;
  Tensor* running_var_;
  Tensor* num_batches_tracked_;
};

class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t c, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm(c, 1, eps, momentum, affine) {}
};

class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t c, double eps = 1e-5, double momentum = 0.1, bool affine = true)
      : BatchNorm(c, 2, eps, momentum, affine) {}
};

}  // namespace nd
