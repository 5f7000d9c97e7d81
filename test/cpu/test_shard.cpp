// data/shard.cpp: the ranks' shares of an epoch, for dataset sizes that divide the global batch,
// that do not, and that are smaller than the world, with a shuffled order and with the stored
// (identity) order of --no-shuffle. Within each global batch the ranks' pieces are contiguous and
// adjacent in rank order, so together the ranks cover the order exactly once up to the dropped
// tail (a last global batch with fewer images than ranks), and the local sizes add up to the
// global ones.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/shard.h"
#include "engine/random.h"
#include "test/catch.h"

using nd::data::Shard;

namespace {

// The shards of every rank of `world` with `b` images per rank, checked against `order`.
void check_partition(const std::vector<int64_t>& order, int64_t b, int world) {
  const int64_t n = int64_t(order.size()), global = b * world;
  INFO("size " << n << ", world " << world << ", batch per rank " << b);
  std::vector<Shard> shards;
  for (int r = 0; r < world; ++r) shards.push_back(nd::data::shard_epoch(order, b, r, world));

  // What a single-process run with batch `global` would see, less the too-small last batch.
  const int64_t rest = n % global;
  const int64_t dropped = rest > 0 && rest < world ? rest : 0, kept = n - dropped;
  const int64_t steps = nd::data::sharded_steps(n, b, world);
  CHECK(steps == (kept + global - 1) / global);

  std::vector<int64_t> seen(size_t(n), 0);  // per position: how many ranks took it
  for (int r = 0; r < world; ++r) {
    const Shard& s = shards[size_t(r)];
    INFO("rank " << r);
    CHECK(s.dropped == dropped);
    REQUIRE(int64_t(s.local_sizes.size()) == steps);
    REQUIRE(int64_t(s.global_sizes.size()) == steps);
    REQUIRE(s.indices.size() == s.positions.size());
    CHECK(std::accumulate(s.local_sizes.begin(), s.local_sizes.end(), int64_t(0)) ==
          int64_t(s.indices.size()));
    for (size_t i = 0; i < s.indices.size(); ++i) {
      REQUIRE(s.positions[i] >= 0);
      REQUIRE(s.positions[i] < n);
      CHECK(s.indices[i] == order[size_t(s.positions[i])]);
      seen[size_t(s.positions[i])]++;
    }
  }

  // Step by step: rank r's piece starts where rank r - 1's ended, the pieces fill the global batch
  // from its first position to its last, and differ in length by at most one (longer first).
  for (int64_t k = 0; k < steps; ++k) {
    INFO("step " << k);
    const int64_t begin = k * global, m = std::min(global, n - begin);
    int64_t next = begin, total = 0;
    for (int r = 0; r < world; ++r) {
      const Shard& s = shards[size_t(r)];
      INFO("rank " << r);
      CHECK(s.global_sizes[size_t(k)] == m);
      const int64_t local = s.local_sizes[size_t(k)];
      CHECK(local == m / world + (r < m % world ? 1 : 0));
      if (m == global) CHECK(local == b);
      // This rank's entries of step k follow its entries of the earlier steps.
      const int64_t offset =
          std::accumulate(s.local_sizes.begin(), s.local_sizes.begin() + k, int64_t(0));
      for (int64_t j = 0; j < local; ++j) CHECK(s.positions[size_t(offset + j)] == next + j);
      next += local;
      total += local;
    }
    CHECK(next == begin + m);
    CHECK(total == m);
  }

  // Every kept position exactly once, none of the dropped ones.
  for (int64_t p = 0; p < n; ++p) {
    INFO("position " << p);
    CHECK(seen[size_t(p)] == (p < kept ? 1 : 0));
  }
}

}  // namespace

TEST_CASE("shard_epoch partitions the epoch order among the ranks", "[data][shard]") {
  nd::Generator gen(41);
  // Sizes that divide the global batch, that leave a last batch of at least or fewer than
  // `world` images, that are smaller than the world, and empty.
  for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 12, 13, 31, 32, 33, 100, 257}) {
    for (int world : {1, 2, 3, 4, 8}) {
      for (int64_t b : {1, 2, 3, 4}) {
        std::vector<int64_t> identity(static_cast<size_t>(n));
        std::iota(identity.begin(), identity.end(), int64_t(0));
        {
          INFO("identity order (--no-shuffle)");
          check_partition(identity, b, world);
        }
        INFO("shuffled order");
        check_partition(gen.permutation(n), b, world);
      }
    }
  }
}

TEST_CASE("shard_epoch: every image dropped when the epoch is smaller than the world",
          "[data][shard]") {
  const std::vector<int64_t> order{2, 0, 1};
  for (int r = 0; r < 4; ++r) {
    const Shard s = nd::data::shard_epoch(order, 8, r, 4);
    CHECK(s.indices.empty());
    CHECK(s.local_sizes.empty());
    CHECK(s.dropped == 3);
  }
  CHECK(nd::data::sharded_steps(3, 8, 4) == 0);
}

TEST_CASE("shard_epoch rejects a rank outside the world and empty batches", "[data][shard]") {
  const std::vector<int64_t> order{0, 1, 2, 3};
  CHECK_THROWS_AS(nd::data::shard_epoch(order, 1, 2, 2), nd::Error);
  CHECK_THROWS_AS(nd::data::shard_epoch(order, 1, -1, 2), nd::Error);
  CHECK_THROWS_AS(nd::data::shard_epoch(order, 0, 0, 2), nd::Error);
  CHECK_THROWS_AS(nd::data::shard_epoch(order, 1, 0, 0), nd::Error);
}
