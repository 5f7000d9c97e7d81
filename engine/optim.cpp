// Optimizers and learning-rate schedules (see optim.h).
#include "engine/optim.h"

#include <cmath>

#include "engine/autograd.h"
#include "engine/ops.h"

namespace nd {

void Optimizer::zero_grad() {
  for (Tensor& p : params_) p.set_grad(Tensor());
}

Sgd::Sgd(std::vector<Tensor> params, double lr, double momentum, double weight_decay)
    : Optimizer(std::move(params), lr), momentum_(momentum), weight_decay_(weight_decay) {
  ND_CHECK(lr >= 0 && momentum >= 0 && weight_decay >= 0,
           "SGD: lr, momentum and weight decay must be >= 0");
  for (const Tensor& p : params_)
    momentum_buffers_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  started_.assign(params_.size(), false);
}

void Sgd::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    ops::SgdConfig c;
    c.lr = lr_, c.momentum = momentum_, c.weight_decay = weight_decay_;
    c.first_step = !started_[i];
    ops::sgd_step(c, params_[i], g, momentum_buffers_[i]);
    started_[i] = true;
  }
  ++steps_;
}

Adam::Adam(std::vector<Tensor> params, double lr, double weight_decay, double beta1, double beta2,
           double eps)
    : Optimizer(std::move(params), lr),
      weight_decay_(weight_decay),
      beta1_(beta1),
      beta2_(beta2),
      eps_(eps) {
  ND_CHECK(
      lr >= 0 && weight_decay >= 0 && eps > 0 && beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
      "Adam: invalid hyper-parameters");
  for (const Tensor& p : params_) {
    m_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
  param_steps_.assign(params_.size(), 0);
}

void Adam::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    ops::AdamConfig c;
    c.lr = lr_, c.beta1 = beta1_, c.beta2 = beta2_, c.eps = eps_, c.weight_decay = weight_decay_;
    c.step = ++param_steps_[i];
    ops::adam_step(c, params_[i], g, m_[i], v_[i]);
  }
  ++steps_;
}

Optimizer::NamedState Adam::state_of(size_t i) const {
  return {{"exp_avg", m_.at(i)},
          {"exp_avg_sq", v_.at(i)},
          {"step", Tensor::full({}, double(param_steps_.at(i)), DType::I64)}};
}

Optimizer::NamedState Sgd::state_of(size_t i) const {
  return {{"momentum_buffer", momentum_buffers_.at(i)},
          {"started", Tensor::full({}, started_.at(i) ? 1.0 : 0.0, DType::I64)}};
}

// Copies saved values into the live state tensors (device and storage stay); counters come back
// through the int64 scalars, which the subclass reads after this.
void Optimizer::load_state_of(size_t i, const std::map<std::string, Tensor>& state) {
  NoGradGuard no_grad;
  for (auto& [name, live] : state_of(i)) {
    auto it = state.find(name);
    ND_CHECK(it != state.end(), "optimizer state of parameter ", i, " has no '", name, "'");
    ND_CHECK(it->second.shape() == live.shape(), "optimizer state '", name, "' of parameter ", i,
             " has shape ", shape_str(it->second.shape()), ", expected ", shape_str(live.shape()));
    if (live.dtype() == DType::I64) {
      restore_counter(i, name, it->second.to(DType::I64).to_vector<int64_t>().at(0));
    } else {
      Tensor dst = live;
      dst.copy_(it->second);
    }
  }
}

void Sgd::restore_counter(size_t i, const std::string& name, int64_t value) {
  ND_CHECK(name == "started", "SGD has no counter '", name, "'");
  started_.at(i) = value != 0;
}

void Adam::restore_counter(size_t i, const std::string& name, int64_t value) {
  ND_CHECK(name == "step", "Adam has no counter '", name, "'");
  param_steps_.at(i) = value;
}

double cosine_lr(double base, int64_t t, int64_t total_iterations) {
  if (total_iterations <= 0) return base;
  return 0.5 * base * (1.0 + std::cos(M_PI * double(t) / double(total_iterations)));
}

double multistep_lr(double base, int64_t epoch, const std::vector<int64_t>& milestones,
                    double gamma) {
  double lr = base;
  for (int64_t m : milestones)
    if (epoch >= m) lr *= gamma;
  return lr;
}

}  // namespace nd
