// The trainer's side of data-parallel training (docs/distributed.md): one rank's share of each
// epoch and of the test set, identical start (rank 0's weights and buffers broadcast), the
// bucketed gradient all-reduce around backward, and the reduction of what is logged. In a world of
// one every call is the single-process code path itself (nothing is sharded, scaled or reduced).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <vector>

#include "apps/train_config.h"
#include "data/loader.h"
#include "data/shard.h"
#include "engine/comm.h"
#include "engine/grad_reducer.h"
#include "layers/module.h"

namespace nd {

// The device of this rank: with several ranks, "cuda" means cuda:<local rank> (one GPU per
// rank); "auto" picks it when NCCL is built in and the GPU exists, else the CPU. A CUDA device
// across several ranks without NCCL is an error naming --device cpu.
Device rank_device(const std::string& spec);

class DataParallel {
 public:
  // Checks that every rank runs the same settings and, when resuming, the saved world size;
  // sets --sync-stats; broadcasts rank 0's parameters and buffers; prints the layout on `log`.
  DataParallel(const TrainConfig& cfg, Module& net, bool resuming, std::ostream& log);
  ~DataParallel();
  bool active() const { return comm::active(); }

  // The training steps of an epoch of `images`.
  int64_t steps_per_epoch(int64_t images) const;
  // Starts this rank's share of the epoch's `order` on the loader.
  void start_epoch(data::Loader& loader, std::vector<int64_t> order, uint64_t seed);
  // Backward of this rank's mean loss over its batch, with gradients averaged over the global
  // batch (uneven last batches weighted by their share); returns the global batch's mean loss.
  Tensor backward(const Tensor& loss, int64_t batch_index);
  // With --sync-stats off the ranks' running statistics drift apart: rank 0's are sent to all
  // before evaluating (what is then saved and evaluated is one model), as DDP does.
  void before_evaluation(Module& net) const;
  // Says whether the ranks ended with bitwise identical parameters and running buffers (with
  // --sync-stats on both must be; off, the buffers differ by design).
  void report_replicas(const Module& net, std::ostream& log) const;

 private:
  int world_;
  int64_t batch_per_rank_;
  bool sync_stats_;
  std::unique_ptr<GradientReducer> reducer_;
  data::Shard shard_;
};

// This rank's contiguous share of `count` images (the test set: evaluation is sharded); all of
// them in a world of one.
std::vector<int64_t> rank_share(int64_t count);
// The sum over ranks of per-rank counts (epoch and test totals); identity in a world of one.
void all_reduce_totals(std::vector<double>& totals);

}  // namespace nd
