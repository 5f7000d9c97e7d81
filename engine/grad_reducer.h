// Data-parallel gradient averaging in buckets, overlapped with the backward pass (as PyTorch's
// DistributedDataParallel does). Parameters are grouped, in reverse order (roughly the order
// backward produces their gradients), into buckets of about `bucket_bytes`; when the autograd
// engine reports that every gradient of a bucket is complete, the bucket is copied into one flat
// buffer and its all-reduce starts (MPI_Iallreduce on the CPU, NCCL on its own stream on a GPU)
// while backward goes on. Buckets start strictly in order, so every rank issues the same
// collectives in the same order. finish() waits and writes back the averages.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/autograd.h"
#include "engine/comm.h"

namespace nd {

class GradientReducer {
 public:
  static constexpr int64_t kDefaultBucketBytes = 25 << 20;  // DDP's default bucket cap
  explicit GradientReducer(std::vector<Tensor> params, int64_t bucket_bytes = kDefaultBucketBytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Call right before backward: installs the autograd hook that starts buckets.
  void begin();
  // After backward: starts what has not started (leaves backward never reached), waits for
  // every bucket and sets each gradient to the sum over ranks times `scale` (1 / world size
  // averages). A parameter that got no gradient on this pass keeps none. Removes the hook.
  void finish(double scale);

  int64_t num_buckets() const { return int64_t(buckets_.size()); }
  int64_t bytes_per_step() const;  // all-reduced per step by this rank
  // Buckets started from the hook during the last backward (the overlap achieved).
  int64_t started_during_backward() const { return started_in_backward_; }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<int64_t> offsets;
    Tensor flat;  // (sum of numels) on the parameters' device, made at the first start
    int64_t numel = 0;
    int64_t waiting = 0;  // gradients not yet complete this pass
    std::unique_ptr<comm::PendingAllReduce> pending;
  };
  void on_leaf_ready(size_t param);
  void start_ready_buckets();
  void start(Bucket& b);

  std::vector<Tensor> params_;
  std::vector<int> bucket_of_;  // per parameter
  std::vector<bool> has_grad_;  // per parameter, this pass
  std::vector<Bucket> buckets_;
  size_t next_to_start_ = 0;
  bool active_ = false;
  int64_t started_in_backward_ = 0;
  LeafGradHook previous_hook_;
};

}  // namespace nd
