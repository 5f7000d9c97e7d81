// Batches from an in-memory image set (see batch.h).
#include "data/batch.h"

#include <algorithm>
#include <numeric>

namespace nd::data {

Batch gather_batch(const ImageClassSet& set, const std::vector<int64_t>& order, int64_t begin,
                   int64_t end) {
  ND_CHECK(begin >= 0 && begin < end && end <= int64_t(order.size()), "bad batch range [", begin,
           ", ", end, ")");
  const int64_t b = end - begin;
  const int64_t image = set.channels * set.height * set.width;
  Batch out;
  out.images = Tensor::empty({b, set.channels, set.height, set.width}, DType::F32);
  out.labels = Tensor::empty({b}, DType::I64);
  float* px = out.images.data<float>();
  int64_t* lb = out.labels.data<int64_t>();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t src = order[begin + i];
    const uint8_t* in = set.pixels.data() + src * image;
    for (int64_t j = 0; j < image; ++j) px[i * image + j] = float(in[j]) / 255.0f;
    lb[i] = set.labels[src];
  }
  return out;
}

BatchIterator::BatchIterator(const ImageClassSet& set, int64_t batch_size, bool shuffle,
                             Generator* gen)
    : set_(set), batch_size_(batch_size) {
  ND_CHECK(batch_size > 0, "batch size must be positive, got ", batch_size);
  ND_CHECK(set.count > 0, "empty data set");
  if (shuffle) {
    ND_CHECK(gen, "shuffling needs a generator");
    order_ = gen->permutation(set.count);
  } else {
    order_.resize(size_t(set.count));
    std::iota(order_.begin(), order_.end(), 0);
  }
}

int64_t BatchIterator::num_batches() const {
  return (set_.count + batch_size_ - 1) / batch_size_;
}

bool BatchIterator::next(Batch& out) {
  if (pos_ >= set_.count) return false;
  const int64_t end = std::min(pos_ + batch_size_, set_.count);
  out = gather_batch(set_, order_, pos_, end);
  pos_ = end;
  return true;
}

ImageClassSet take_first(const ImageClassSet& set, int64_t count) {
  ND_CHECK(count > 0 && count <= set.count, "take_first: ", count, " of ", set.count, " images");
  ImageClassSet out = set;
  const int64_t image = set.channels * set.height * set.width;
  out.count = count;
  out.pixels.resize(size_t(count * image));
  out.labels.resize(size_t(count));
  return out;
}

}  // namespace nd::data
