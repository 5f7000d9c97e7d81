// Module registry, naming, device moves and state dicts (see module.h).
#include "layers/module.h"

#include <set>

namespace nd {

Tensor& Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(name, std::make_unique<Tensor>(t));
  return *params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t, bool host) {
  buffers_.emplace_back(name, std::make_unique<Tensor>(t));
  host_buffer_.push_back(host);
  return *buffers_.back().second;
}

void Module::collect(const std::string& prefix, bool params,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, t] : params ? params_ : buffers_) out.emplace_back(prefix + name, *t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", true, out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", false, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_children() const {
  std::vector<std::pair<std::string, Module*>> out;
  for (const auto& [name, child] : children_) out.emplace_back(name, child.get());
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, Module*>> out{{"", const_cast<Module*>(this)}};
  for (const auto& [name, child] : children_)
    for (auto& [sub, m] : child->named_modules())
      out.emplace_back(sub.empty() ? name : name + "." + sub, m);
  return out;
}

std::vector<std::pair<std::string, std::pair<Tensor, bool>>> Module::ordered_state() const {
  std::vector<std::pair<std::string, std::pair<Tensor, bool>>> out;
  for (const auto& [prefix, m] : named_modules()) {
    const std::string p = prefix.empty() ? "" : prefix + ".";
    for (const auto& [name, t] : m->params_) out.push_back({p + name, {*t, true}});
    for (const auto& [name, t] : m->buffers_) out.push_back({p + name, {*t, false}});
  }
  return out;
}

namespace {
thread_local ForwardObserver* active_observer = nullptr;
}

ForwardObserver::ForwardObserver() : previous_(active_observer) {
  active_observer = this;
}
ForwardObserver::~ForwardObserver() {
  active_observer = previous_;
}
ForwardObserver* ForwardObserver::active() {
  return active_observer;
}

Tensor Module::operator()(const Tensor& x) {
  Tensor y = forward(x);
  if (active_observer) active_observer->on_forward(*this, x, y);
  return y;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  on_train_changed();
  for (auto& [name, child] : children_) child->train(on);
}

template <typename F>
void Module::for_each_tensor(F f) {
  for (auto& [name, t] : params_) f(*t, false);
  for (size_t i = 0; i < buffers_.size(); ++i) f(*buffers_[i].second, bool(host_buffer_[i]));
  for (auto& [name, child] : children_) child->for_each_tensor(f);
}

namespace {
// Points t's own TensorImpl at `moved`'s data so every handle to t sees the change.
void adopt(Tensor& t, const Tensor& moved) {
  TensorImpl& impl = t.impl();
  impl.storage = moved.storage();
  impl.offset = moved.offset();
  impl.strides = moved.strides();
  impl.dtype = moved.dtype();
  impl.grad = nullptr;
}
}  // namespace

void Module::to(Device d) {
  for_each_tensor([d](Tensor& t, bool host) {
    if (t.defined() && !host && t.device() != d) adopt(t, t.detach().to(d));
  });
}

void Module::to(DType dt) {
  ND_CHECK(is_floating(dt), "Module::to: ", dtype_name(dt), " is not a floating-point type");
  for_each_tensor([dt](Tensor& t, bool) {
    if (t.defined() && is_floating(t.dtype()) && t.dtype() != dt) adopt(t, t.detach().to(dt));
  });
}

void Module::zero_grad() {
  for_each_tensor([](Tensor& t, bool) {
    if (t.defined()) t.set_grad(Tensor());
  });
}

Device Module::device() const {
  for (auto& [name, t] : named_parameters()) return t.device();
  for (auto& [name, t] : named_buffers()) return t.device();
  return Device::cpu();
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out[name] = t;
  for (auto& [name, t] : named_buffers()) out[name] = t;
  return out;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state,
                             const std::function<bool(const std::string&)>& skip) {
  // Every problem is listed at once (a checkpoint of another variant mismatches in many places),
  // and nothing is copied unless all entries fit.
  std::vector<std::string> missing, mistyped, unexpected;
  std::vector<std::pair<Tensor, Tensor>> copies;  // handles: named_parameters() is a copy
  std::set<std::string> expected;
  auto check = [&](const std::string& name, const Tensor& dst) {
    expected.insert(name);
    if (skip && skip(name)) return;
    auto it = state.find(name);
    if (it == state.end()) {
      missing.push_back(name + " " + shape_str(dst.shape()));
    } else if (it->second.shape() != dst.shape()) {
      mistyped.push_back(name + " is " + shape_str(it->second.shape()) + ", the model's " +
                         shape_str(dst.shape()));
    } else if (it->second.dtype() != dst.dtype()) {
      mistyped.push_back(name + " is " + dtype_name(it->second.dtype()) + ", the model's " +
                         dtype_name(dst.dtype()));
    } else {
      copies.emplace_back(dst, it->second);
    }
  };
  for (auto& [name, t] : named_parameters()) check(name, t);
  for (auto& [name, t] : named_buffers()) check(name, t);
  for (const auto& [name, t] : state)
    if (!expected.count(name) && !(skip && skip(name))) unexpected.push_back(name);
  if (!missing.empty() || !mistyped.empty() || !unexpected.empty()) {
    std::string message = "the state dict does not fit the model:";
    auto list = [&](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      message += std::string("\n  ") + what + " (" + std::to_string(names.size()) + "):";
      for (const std::string& n : names) message += "\n    " + n;
    };
    list("missing from the state dict", missing);
    list("with another shape or dtype than the model's", mistyped);
    list("not in the model", unexpected);
    ND_FAIL(message);
  }
  NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

void Sequential::push_back(std::shared_ptr<Module> m) {
  register_module(std::to_string(layers_.size()), m);
  layers_.push_back(std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& l : layers_) h = (*l)(h);
  return h;
}

}  // namespace nd
