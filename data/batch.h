// Turning an in-memory labelled image set into training batches: a seeded shuffled order per
// epoch and the gather of images (scaled to [0, 1] float32, (B, C, H, W)) and labels (int64).
#pragma once
#include <cstdint>
#include <vector>

#include "data/image_class_set.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace nd::data {

struct Batch {
  Tensor images;  // (B, C, H, W) float32 in [0, 1], on the CPU
  Tensor labels;  // (B) int64, on the CPU
};

// Rows [begin, end) of `order` (indices into the set).
Batch gather_batch(const ImageClassSet& set, const std::vector<int64_t>& order, int64_t begin,
                   int64_t end);

// Yields batches of `batch_size` (the last one may be smaller) in a shuffled or fixed order.
class BatchIterator {
 public:
  BatchIterator(const ImageClassSet& set, int64_t batch_size, bool shuffle, Generator* gen);
  int64_t num_batches() const;
  bool next(Batch& out);

 private:
  const ImageClassSet& set_;
  int64_t batch_size_;
  std::vector<int64_t> order_;
  int64_t pos_ = 0;
};

// The first `count` images of `set` (for small test slices).
ImageClassSet take_first(const ImageClassSet& set, int64_t count);

}  // namespace nd::data
