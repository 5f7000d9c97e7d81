// Optimizers over a list of parameter tensors (PyTorch semantics: parameters without a gradient
// are skipped; weight decay is L2 added to the gradient) and the learning-rate schedules of the
// reference trainer.
#pragma once
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "kernels/optimizer.h"

namespace nd {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();  // drops gradients (set to none)
  void set_lr(double lr) { lr_ = lr; }
  double lr() const { return lr_; }
  const std::vector<Tensor>& params() const { return params_; }
  // Per-parameter state tensors in a fixed order, for checkpoints.
  virtual std::vector<Tensor> state() const = 0;
  int64_t steps() const { return steps_; }

 protected:
  std::vector<Tensor> params_;
  double lr_;
  int64_t steps_ = 0;
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Tensor> params, double lr, double momentum, double weight_decay);
  void step() override;
  std::vector<Tensor> state() const override { return momentum_buffers_; }

 private:
  double momentum_, weight_decay_;
  std::vector<Tensor> momentum_buffers_;
  std::vector<bool> started_;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<Tensor> params, double lr, double weight_decay, double beta1 = 0.9,
       double beta2 = 0.999, double eps = 1e-8);
  void step() override;
  std::vector<Tensor> state() const override;

 private:
  double weight_decay_, beta1_, beta2_, eps_;
  std::vector<Tensor> m_, v_;
  std::vector<int64_t> param_steps_;
};

// Cosine annealing from base to 0 over total_iterations, evaluated at iteration t (0-based),
// as torch's CosineAnnealingLR(T_max = total) stepped once per iteration.
double cosine_lr(double base, int64_t t, int64_t total_iterations);
// base * gamma^(number of milestones <= epoch) (epochs 0-based), as torch's MultiStepLR.
double multistep_lr(double base, int64_t epoch, const std::vector<int64_t>& milestones,
                    double gamma);

}  // namespace nd
