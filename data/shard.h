// Data-parallel sharding of an epoch: the ranks together see exactly the global batches of a
// single-process run with batch world * b. Each global batch of the epoch's order is cut into
// `world` contiguous pieces, as even as possible (the first m % world pieces one longer), and rank
// r takes piece r; a full global batch gives every rank exactly b. A last global batch with fewer
// images than ranks is dropped (a rank cannot train on nothing), and reported.
#pragma once
#include <cstdint>
#include <vector>

namespace nd::data {

struct Shard {
  std::vector<int64_t> indices;       // this rank's entries of the order, batch after batch
  std::vector<int64_t> positions;     // each entry's position in the whole epoch (augmentation)
  std::vector<int64_t> local_sizes;   // per step: this rank's batch
  std::vector<int64_t> global_sizes;  // per step: the global batch
  int64_t dropped = 0;                // images of a last global batch smaller than world
};

Shard shard_epoch(const std::vector<int64_t>& order, int64_t batch_per_rank, int rank, int world);

// Steps of an epoch of `images` with `world` ranks of `batch_per_rank` (the dropped batch aside).
int64_t sharded_steps(int64_t images, int64_t batch_per_rank, int world);

}  // namespace nd::data
