// Data-parallel sharding of an epoch (see shard.h).
#include "data/shard.h"

#include <algorithm>

#include "core/error.h"

namespace nd::data {

Shard shard_epoch(const std::vector<int64_t>& order, int64_t batch_per_rank, int rank, int world) {
  ND_CHECK(batch_per_rank > 0 && world > 0 && rank >= 0 && rank < world, "shard_epoch: rank ", rank,
           " of ", world, " with batch ", batch_per_rank);
  const int64_t n = int64_t(order.size()), global = batch_per_rank * world;
  Shard s;
  for (int64_t begin = 0; begin < n; begin += global) {
    const int64_t m = std::min(global, n - begin);
    if (m < world) {
      s.dropped = m;
      break;
    }
    const int64_t base = m / world, extra = m % world;
    const int64_t first = begin + rank * base + std::min<int64_t>(rank, extra);
    const int64_t size = base + (rank < extra ? 1 : 0);
    for (int64_t p = first; p < first + size; ++p) {
      s.indices.push_back(order[size_t(p)]);
      s.positions.push_back(p);
    }
    s.local_sizes.push_back(size);
    s.global_sizes.push_back(m);
  }
  return s;
}

int64_t sharded_steps(int64_t images, int64_t batch_per_rank, int world) {
  const int64_t global = batch_per_rank * world;
  const int64_t full = images / global, rest = images % global;
  return full + (rest >= world ? 1 : 0);
}

}  // namespace nd::data
