// The loader: worker threads prepare the next batches (decode, augment, normalise, stack) while
// the current one trains. Batches are identical whatever the number of workers: the sample at
// position i of an epoch draws its augmentation from a generator seeded by (epoch seed, i).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "data/batch.h"
#include "data/dataset.h"

namespace nd::data {

struct LoaderOptions {
  int64_t batch_size = 128;
  int workers = 2;         // threads preparing batches; 0 prepares them in next() on the caller
  int prefetch = 2;        // batches prepared ahead of the one being consumed (per epoch, bounded);
                           // at most min(workers, prefetch) workers are busy; >= 1 when workers > 0
  bool drop_last = false;  // drop a last batch smaller than batch_size
};

// The seed of the generator that augments the sample at `position` of an epoch's order: a
// splitmix64 mix of both, so neighbouring positions and epochs get unrelated streams.
uint64_t sample_seed(uint64_t epoch_seed, int64_t position);

class Loader {
 public:
  Loader(std::shared_ptr<const Dataset> data, LoaderOptions options);
  ~Loader();  // stops and joins the workers
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Starts an epoch over `order` (indices into the dataset, any length); `seed` seeds the
  // augmentation of this epoch. An epoch in progress is abandoned. `positions` (empty, or one
  // per entry of order) gives the epoch position whose augmentation stream each entry draws
  // (default: its own), so a data-parallel rank's share augments as in the whole epoch.
  void start(std::vector<int64_t> order, uint64_t seed, std::vector<int64_t> positions = {});
  int64_t num_batches() const;
  // The next batch: images (B, C, H, W) float32 and labels (B) int64 on the CPU; false once the
  // epoch is over (and before the first start()). Batches come in order: batch b holds positions
  // [b B, (b + 1) B) of the order. A worker's error (a corrupt file) is rethrown here, as the
  // original exception, when its batch is due; it ends the epoch.
  bool next(Batch& out);
  const Dataset& dataset() const { return *data_; }

 private:
  struct State;
  std::shared_ptr<const Dataset> data_;
  LoaderOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace nd::data
