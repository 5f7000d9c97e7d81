// The autograd graph walk (see autograd.h).
#include "engine/autograd.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace nd {

namespace {
thread_local bool g_grad_enabled = true;
thread_local LeafGradHook g_leaf_grad_hook;

class LambdaNode : public Node {
 public:
  LambdaNode(const char* name, MultiBackwardFn fn) : name_(name), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& g) override {
    ND_CHECK(fn_, "backward through '", name_,
             "' a second time: its saved tensors were freed by the first backward");
    return fn_(g);
  }
  std::string name() const override { return name_; }
  void release() override { fn_ = nullptr; }

 private:
  const char* name_;
  MultiBackwardFn fn_;
};

// Adds gradients into a leaf tensor's .grad.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& grads) override {
    const Tensor& g = grads[0];
    Tensor leaf(leaf_);
    ND_CHECK(g.shape() == leaf.shape(), "gradient of shape ", shape_str(g.shape()),
             " for a leaf of shape ", shape_str(leaf.shape()));
    Tensor prev = leaf.grad();
    leaf.set_grad(prev.defined() ? ops::add(prev, g) : g.contiguous().detach());
    return {};
  }
  std::string name() const override { return "AccumulateGrad"; }
  const std::shared_ptr<TensorImpl>* accumulates_into() const override { return &leaf_; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

Edge edge_for(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), t.impl().output_nr};
  return {std::make_shared<AccumulateGrad>(t.impl_ptr()), 0};
}
}  // namespace

LeafGradHook set_leaf_grad_hook(LeafGradHook hook) {
  std::swap(hook, g_leaf_grad_hook);
  return hook;
}

bool grad_enabled() {
  return g_grad_enabled;
}
NoGradGuard::NoGradGuard() : previous_(g_grad_enabled) {
  g_grad_enabled = false;
}
NoGradGuard::~NoGradGuard() {
  g_grad_enabled = previous_;
}

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->requires_grad()) return true;
  return false;
}

bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

std::vector<Tensor> record_multi(std::vector<Tensor> outs, const std::vector<Tensor>& inputs,
                                 const char* name, MultiBackwardFn backward) {
  if (!any_requires_grad(inputs)) return outs;
  auto node = std::make_shared<LambdaNode>(name, std::move(backward));
  node->num_outputs = int(outs.size());
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(edge_for(t));
  for (size_t i = 0; i < outs.size(); ++i) {
    outs[i].impl().grad_fn = node;
    outs[i].impl().output_nr = int(i);
    outs[i].impl().requires_grad = true;
  }
  return outs;
}

Tensor record(Tensor out, const std::vector<Tensor>& inputs, const char* name,
              BackwardFn backward) {
  return record_multi({std::move(out)}, inputs, name,
                      [fn = std::move(backward)](const std::vector<Tensor>& g) { return fn(g[0]); })[0];
}

void run_backward(const Tensor& root, const Tensor& grad) {
  ND_CHECK(root.requires_grad(), "backward() on a tensor that does not require grad");
  ND_CHECK(grad.shape() == root.shape(), "backward seed of shape ", shape_str(grad.shape()),
           " for a tensor of shape ", shape_str(root.shape()));
  NoGradGuard no_grad;
  const Edge start = edge_for(root);
  // Count, for every node reachable from start, how many edges point at it, and (for the leaf
  // hook) how many accumulator nodes feed each leaf.
  std::unordered_map<Node*, int> pending;
  std::unordered_map<TensorImpl*, int> leaf_uses;
  std::vector<Node*> stack{start.node.get()};
  std::unordered_set<Node*> seen{start.node.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    if (g_leaf_grad_hook && n->accumulates_into()) leaf_uses[n->accumulates_into()->get()]++;
    for (const Edge& e : n->next) {
      if (!e.node) continue;
      pending[e.node.get()]++;
      if (seen.insert(e.node.get()).second) stack.push_back(e.node.get());
    }
  }
  // Gradients waiting for each node, one slot per output.
  std::unordered_map<Node*, std::vector<Tensor>> grads;
  grads[start.node.get()].resize(size_t(start.node->num_outputs));
  grads[start.node.get()][size_t(start.output_nr)] = grad;
  std::vector<std::shared_ptr<Node>> ready{start.node};
  while (!ready.empty()) {
    std::shared_ptr<Node> n = ready.back();
    ready.pop_back();
    std::vector<Tensor> g = std::move(grads[n.get()]);
    grads.erase(n.get());
    const bool any = std::any_of(g.begin(), g.end(), [](const Tensor& t) { return t.defined(); });
    std::vector<Tensor> in_grads = any ? n->apply(g) : std::vector<Tensor>{};
    n->release();
    if (g_leaf_grad_hook && n->accumulates_into()) {
      const std::shared_ptr<TensorImpl>& leaf = *n->accumulates_into();
      if (--leaf_uses[leaf.get()] == 0) g_leaf_grad_hook(Tensor(leaf));
    }
    for (size_t i = 0; i < n->next.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.node) continue;
      if (i < in_grads.size() && in_grads[i].defined()) {
        std::vector<Tensor>& slots = grads[e.node.get()];
        slots.resize(size_t(e.node->num_outputs));
        Tensor& slot = slots[size_t(e.output_nr)];
        slot = slot.defined() ? ops::add(slot, in_grads[i]) : in_grads[i];
      }
      if (--pending[e.node.get()] == 0) ready.push_back(e.node);
    }
  }
}

}  // namespace nd
