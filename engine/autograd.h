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

class Node {
 public:
  virtual ~Node() = default;
  // Gradients with respect to each input, given the gradient of the output; undefined tensors
  // mean "no gradient".
  virtual std::vector<Tensor> apply(const Tensor& grad_output) = 0;
  virtual std::string name() const = 0;
  // Drops saved tensors after the backward has used them.
  virtual void release() {}
  std::vector<std::shared_ptr<Node>> next;  // one per input; null when it needs no grad
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

// True when an op over these inputs must record a node.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Makes `out` the result of a recorded op: its grad_fn is a node named `name` calling
// `backward` (whose captures are released after use) with edges to `inputs`. Saved tensors
// should be captured detached to avoid reference cycles. No-op when no input requires grad.
Tensor record(Tensor out, const std::vector<Tensor>& inputs, const char* name, BackwardFn backward);

// Runs the backward pass from `root` seeded with `grad` (same shape as root).
void run_backward(const Tensor& root, const Tensor& grad);

}  // namespace nd
