// Module: the base of every layer and network. Holds named parameters, buffers and child
// modules in registration order, so names come out as the reference's state_dict keys
// (`layer1.0.conv1.weight`). Moving to a device swaps storage inside each tensor, so handles
// held elsewhere (an optimizer's) stay valid.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace nd {

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;
  // Runs forward and reports the call to the active ForwardObserver (model summaries). Networks
  // call their children through this, never through forward() directly.
  Tensor operator()(const Tensor& x);
  virtual std::string type_name() const = 0;
  // One line of settings for summaries, e.g. "784 -> 128, bias".
  virtual std::string describe() const { return ""; }
  // Forward flops per image of this module's own arithmetic (children excluded), from the
  // shapes of one call; multiply-adds count 2. Batch-independent work goes in per_step_flops.
  virtual double flops(const Shape& /*in*/, const Shape& /*out*/) const { return 0; }
  virtual double per_step_flops() const { return 0; }
  // Training state that is neither parameter nor buffer (freeze counters, random generators),
  // saved in training checkpoints so a resumed run continues exactly.
  virtual std::vector<int64_t> extra_state() const { return {}; }
  virtual void set_extra_state(const std::vector<int64_t>& /*state*/) {}

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Module*>> named_children() const;
  // This module ("") and every descendant with its full dotted name, parents first.
  std::vector<std::pair<std::string, Module*>> named_modules() const;
  // Parameters and buffers in PyTorch's state_dict order (per module: parameters, buffers,
  // then children); `second.second` is true for parameters.
  std::vector<std::pair<std::string, std::pair<Tensor, bool>>> ordered_state() const;
  int64_t num_parameters() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device d);
  // Converts floating-point parameters and buffers (float64 runs the gradient checks).
  void to(DType t);
  Device device() const;
  void zero_grad();  // drops every parameter's gradient

  // Every parameter and buffer by its full name (what checkpoints hold).
  std::map<std::string, Tensor> state_dict() const;
  // Copies values in: every parameter and buffer must be present with the same shape and dtype,
  // and every entry must be one of them, except the names `skip` accepts (left as they are, and
  // ignored in `state`). Otherwise nothing is copied and the error lists every mismatch.
  void load_state_dict(const std::map<std::string, Tensor>& state,
                       const std::function<bool(const std::string&)>& skip = {});

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t);
  // A host buffer stays on the CPU when the module moves (counters read and bumped every step).
  Tensor& register_buffer(const std::string& name, Tensor t, bool host = false);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }
  // Registers m when it exists (batch norm is absent from deconvolution networks); returns it.
  template <typename M>
  std::shared_ptr<M> register_optional(const std::string& name, std::shared_ptr<M> m) {
    if (m) register_module(name, m);
    return m;
  }
  virtual void on_train_changed() {}

 private:
  // Applies f to every parameter and buffer of this module and its children, with the buffer's
  // host flag (host buffers stay on the CPU when moving devices).
  template <typename F>
  void for_each_tensor(F f);
  void collect(const std::string& prefix, bool params,
               std::vector<std::pair<std::string, Tensor>>& out) const;
  // unique_ptr keeps references returned by register_* valid as the vectors grow.
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> params_, buffers_;
  std::vector<bool> host_buffer_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Sees every Module::operator() call while installed (one per thread; restores the previous
// observer when destroyed).
class ForwardObserver {
 public:
  ForwardObserver();
  virtual ~ForwardObserver();
  ForwardObserver(const ForwardObserver&) = delete;
  ForwardObserver& operator=(const ForwardObserver&) = delete;
  virtual void on_forward(const Module& m, const Tensor& in, const Tensor& out) = 0;
  static ForwardObserver* active();

 private:
  ForwardObserver* previous_;
};

// Runs children in order; children are named "0", "1", ... like torch.nn.Sequential.
class Sequential : public Module {
 public:
  Sequential() = default;
  void push_back(std::shared_ptr<Module> m);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sequential"; }
  size_t size() const { return layers_.size(); }
  Module& operator[](size_t i) { return *layers_.at(i); }

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

}  // namespace nd
