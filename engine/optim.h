// Optimizers over a list of parameter tensors (PyTorch semantics: parameters without a gradient
// are skipped; weight decay is L2 added to the gradient) and the learning-rate schedules of the
// reference trainer.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

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
  // The state of parameter i for checkpoints, by name ("momentum_buffer", "exp_avg", ...;
  // counters as int64 scalars), and its restoration (names and shapes must match).
  using NamedState = std::vector<std::pair<std::string, Tensor>>;
  virtual NamedState state_of(size_t i) const = 0;
  void load_state_of(size_t i, const std::map<std::string, Tensor>& state);
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }

 protected:
  // Sets the counter `name` of parameter i (restoring a checkpoint).
  virtual void restore_counter(size_t i, const std::string& name, int64_t value) = 0;
  std::vector<Tensor> params_;
  double lr_;
  int64_t steps_ = 0;
};

class Sgd : public Optimizer {
 public:
  Sgd(std::vector<Tensor> params, double lr, double momentum, double weight_decay);
  void step() override;
  NamedState state_of(size_t i) const override;

 protected:
  void restore_counter(size_t i, const std::string& name, int64_t value) override;

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
  NamedState state_of(size_t i) const override;

 protected:
  void restore_counter(size_t i, const std::string& name, int64_t value) override;

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
