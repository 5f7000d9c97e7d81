// The autograd graph walk (see autograd.h).
#include "engine/autograd.h"

#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace nd {

namespace {
thread_local bool g_grad_enabled = true;

class LambdaNode : public Node {
 public:
  LambdaNode(const char* name, BackwardFn fn) : name_(name), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    ND_CHECK(fn_, "backward through '", name_,
             "' a second time: its saved tensors were freed by the first backward");
    return fn_(g);
  }
  std::string name() const override { return name_; }
  void release() override { fn_ = nullptr; }

 private:
  const char* name_;
  BackwardFn fn_;
};

// Adds gradients into a leaf tensor's .grad.
class AccumulateGrad : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    Tensor leaf(leaf_);
    ND_CHECK(g.shape() == leaf.shape(), "gradient of shape ", shape_str(g.shape()),
             " for a leaf of shape ", shape_str(leaf.shape()));
    Tensor prev = leaf.grad();
    leaf.set_grad(prev.defined() ? ops::add(prev, g) : g.contiguous().detach());
    return {};
  }
  std::string name() const override { return "AccumulateGrad"; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

std::shared_ptr<Node> edge_for(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  if (t.grad_fn()) return t.grad_fn();
  return std::make_shared<AccumulateGrad>(t.impl_ptr());
}
}  // namespace

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

Tensor record(Tensor out, const std::vector<Tensor>& inputs, const char* name,
              BackwardFn backward) {
  if (!any_requires_grad(inputs)) return out;
  auto node = std::make_shared<LambdaNode>(name, std::move(backward));
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) node->next.push_back(edge_for(t));
  out.impl().grad_fn = node;
  out.impl().requires_grad = true;
  return out;
}

void run_backward(const Tensor& root, const Tensor& grad) {
  ND_CHECK(root.requires_grad(), "backward() on a tensor that does not require grad");
  ND_CHECK(grad.shape() == root.shape(), "backward seed of shape ", shape_str(grad.shape()),
           " for a tensor of shape ", shape_str(root.shape()));
  NoGradGuard no_grad;
  std::shared_ptr<Node> start = edge_for(root);
  // Count, for every node reachable from start, how many edges point at it.
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack{start.get()};
  std::unordered_set<Node*> seen{start.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& e : n->next) {
      if (!e) continue;
      pending[e.get()]++;
      if (seen.insert(e.get()).second) stack.push_back(e.get());
    }
  }
  std::unordered_map<Node*, Tensor> grads{{start.get(), grad}};
  std::vector<std::shared_ptr<Node>> ready{start};
  while (!ready.empty()) {
    std::shared_ptr<Node> n = ready.back();
    ready.pop_back();
    Tensor g = std::move(grads[n.get()]);
    grads.erase(n.get());
    std::vector<Tensor> in_grads = g.defined() ? n->apply(g) : std::vector<Tensor>{};
    n->release();
    for (size_t i = 0; i < n->next.size(); ++i) {
      const std::shared_ptr<Node>& e = n->next[i];
      if (!e) continue;
      if (i < in_grads.size() && in_grads[i].defined()) {
        Tensor& slot = grads[e.get()];
        slot = slot.defined() ? ops::add(slot, in_grads[i]) : in_grads[i];
      }
      if (--pending[e.get()] == 0) ready.push_back(e);
    }
  }
}

}  // namespace nd
