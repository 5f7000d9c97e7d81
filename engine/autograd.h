// Reverse-mode autograd. Every differentiable op that sees an input requiring grad (while grad
// mode is on) records a Node holding what its backward needs and one edge per input. backward()
// walks the graph in dependency order, sums gradients arriving from several uses, accumulates
// into leaves, and frees each node's saved tensors once it has run.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace nd {

class Node;
// Where an input's gradient goes: the node that produced it and which of its outputs it was.
struct Edge {
  std::shared_ptr<Node> node;  // null when the input needs no gradient
  int output_nr = 0;
};

class Node {
 public:
  virtual ~Node() = default;
  // Gradients with respect to each input, given the gradients of the outputs (undefined where
  // an output received none); undefined results mean "no gradient".
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& grad_outputs) = 0;
  virtual std::string name() const = 0;
  // Drops saved tensors after the backward has used them.
  virtual void release() {}
  // The leaf whose .grad this node accumulates into (AccumulateGrad), else null.
  virtual const std::shared_ptr<TensorImpl>* accumulates_into() const { return nullptr; }
  int num_outputs = 1;
  std::vector<Edge> next;  // one per input
};

// Grad mode is per thread. NoGradGuard turns it off in a scope (evaluation, optimizer steps).
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;
using MultiBackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads)>;

// True when an op over these inputs must record a node.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Makes `out` the result of a recorded op: its grad_fn is a node named `name` calling
// `backward` (whose captures are released after use) with edges to `inputs`. Saved tensors
// should be captured detached to avoid reference cycles. No-op when no input requires grad.
Tensor record(Tensor out, const std::vector<Tensor>& inputs, const char* name, BackwardFn backward);
// The same for an op with several outputs; `backward` receives one gradient per output
// (undefined for outputs that got none) and returns one per input.
std::vector<Tensor> record_multi(std::vector<Tensor> outs, const std::vector<Tensor>& inputs,
                                 const char* name, MultiBackwardFn backward);

// Runs the backward pass from `root` seeded with `grad` (same shape as root).
void run_backward(const Tensor& root, const Tensor& grad);

// Called during a backward pass once per leaf it reaches, as soon as every use of that leaf has
// accumulated into its .grad (which may stay undefined when no gradient arrived). The
// data-parallel gradient reducer starts each bucket's all-reduce from here. Per thread; returns
// the hook it replaces (an empty function removes it).
using LeafGradHook = std::function<void(const Tensor& leaf)>;
LeafGradHook set_leaf_grad_hook(LeafGradHook hook);

}  // namespace nd
