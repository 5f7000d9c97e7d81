// Bucketed gradient all-reduce (see grad_reducer.h).
#include "engine/grad_reducer.h"

#include <unordered_map>

#include "engine/ops.h"

namespace nd {

GradientReducer::GradientReducer(std::vector<Tensor> params, int64_t bucket_bytes)
    : params_(std::move(params)) {
  ND_CHECK(bucket_bytes > 0, "GradientReducer: bucket size must be positive");
  bucket_of_.assign(params_.size(), -1);
  has_grad_.assign(params_.size(), false);
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const Tensor& p = params_[k];
    const int64_t b = p.numel() * int64_t(dtype_size(p.dtype()));
    const bool fits = !buckets_.empty() && bytes + b <= bucket_bytes &&
                      params_[buckets_.back().params[0]].dtype() == p.dtype() &&
                      params_[buckets_.back().params[0]].device() == p.device();
    if (!fits) {
      buckets_.emplace_back();
      bytes = 0;
    }
    Bucket& bucket = buckets_.back();
    bucket.params.push_back(k);
    bucket.offsets.push_back(bucket.numel);
    bucket.numel += p.numel();
    bucket_of_[k] = int(buckets_.size() - 1);
    bytes += b;
  }
}

GradientReducer::~GradientReducer() {
  if (active_) set_leaf_grad_hook(std::move(previous_hook_));
}

int64_t GradientReducer::bytes_per_step() const {
  int64_t bytes = 0;
  for (const Bucket& b : buckets_)
    bytes += b.numel * int64_t(dtype_size(params_[b.params[0]].dtype()));
  return bytes;
}

void GradientReducer::begin() {
  ND_CHECK(!active_, "GradientReducer::begin() twice without finish()");
  active_ = true;
  next_to_start_ = 0;
  started_in_backward_ = 0;
  has_grad_.assign(params_.size(), false);
  for (Bucket& b : buckets_) {
    b.waiting = int64_t(b.params.size());
    b.pending.reset();
  }
  if (!comm::active()) return;  // nothing to reduce: leave backward untouched
  std::unordered_map<TensorImpl*, size_t> index;
  for (size_t k = 0; k < params_.size(); ++k) index[&params_[k].impl()] = k;
  previous_hook_ = set_leaf_grad_hook([this, index = std::move(index)](const Tensor& leaf) {
    auto it = index.find(&leaf.impl());
    if (it != index.end()) on_leaf_ready(it->second);
  });
}

void GradientReducer::on_leaf_ready(size_t k) {
  has_grad_[k] = params_[k].grad().defined();
  --buckets_[size_t(bucket_of_[k])].waiting;
  const size_t before = next_to_start_;
  start_ready_buckets();
  started_in_backward_ += int64_t(next_to_start_ - before);
  for (size_t i = 0; i < next_to_start_; ++i)
    if (buckets_[i].pending) buckets_[i].pending->test();
}

void GradientReducer::start_ready_buckets() {
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].waiting == 0)
    start(buckets_[next_to_start_++]);
}

void GradientReducer::start(Bucket& b) {
  const Tensor& first = params_[b.params[0]];
  if (!b.flat.defined()) b.flat = Tensor::empty({b.numel}, first.dtype(), first.device());
  for (size_t i = 0; i < b.params.size(); ++i) {
    const Tensor& p = params_[b.params[i]];
    Tensor slot = b.flat.slice(0, b.offsets[i], b.offsets[i] + p.numel());
    if (has_grad_[b.params[i]])
      slot.copy_(p.grad().reshape({-1}));
    else
      slot.zero_();  // reached no gradient on any rank (the graph is the same on all)
  }
  b.pending = comm::start_all_reduce_sum(b.flat, comm::Channel::Gradients);
}

void GradientReducer::finish(double scale) {
  ND_CHECK(active_, "GradientReducer::finish() without begin()");
  set_leaf_grad_hook(std::move(previous_hook_));
  previous_hook_ = nullptr;
  active_ = false;
  if (!comm::active()) {
    if (scale != 1.0)
      for (Tensor& p : params_)
        if (p.grad().defined()) p.set_grad(ops::affine(p.grad(), scale, 0.0));
    return;
  }
  // Leaves backward never reached count as complete (their state is the same on every rank).
  for (size_t k = 0; k < params_.size(); ++k) has_grad_[k] = params_[k].grad().defined();
  for (Bucket& b : buckets_) b.waiting = 0;
  start_ready_buckets();
  NoGradGuard no_grad;
  for (Bucket& b : buckets_) {
    b.pending->wait();
    b.pending.reset();
    for (size_t i = 0; i < b.params.size(); ++i) {
      Tensor& p = params_[b.params[i]];
      if (!has_grad_[b.params[i]]) continue;
      Tensor slot = b.flat.slice(0, b.offsets[i], b.offsets[i] + p.numel()).reshape(p.shape());
      p.set_grad(ops::affine(slot, scale, 0.0));
    }
  }
}

}  // namespace nd
