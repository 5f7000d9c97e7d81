// InMemoryDataset (see dataset.h): one image of an ImageClassSet through the CIFAR recipe, reusing
// the batch transforms of transforms.h on a one-image batch so both paths agree bit for bit.
#include "data/dataset.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "data/batch.h"
#include "data/transforms.h"

namespace nd::data {

InMemoryDataset::InMemoryDataset(ImageClassSet set, InMemoryTransform transform, std::string name)
    : set_(std::move(set)), transform_(transform), name_(std::move(name)) {
  ND_CHECK(set_.count > 0 && set_.channels > 0 && set_.height > 0 && set_.width > 0, name_,
           ": empty image set (", set_.count, " images of ", set_.channels, "x", set_.height, "x",
           set_.width, ")");
  ND_CHECK(int64_t(set_.pixels.size()) == set_.count * set_.channels * set_.height * set_.width,
           name_, ": ", set_.pixels.size(), " pixel bytes for ", set_.count, " images of ",
           set_.channels, "x", set_.height, "x", set_.width);
  ND_CHECK(int64_t(set_.labels.size()) == set_.count, name_, ": ", set_.labels.size(),
           " labels for ", set_.count, " images");
  ND_CHECK(set_.num_classes > 0, name_, ": num_classes must be positive");
  for (int64_t i = 0; i < set_.count; ++i)
    ND_CHECK(set_.labels[size_t(i)] >= 0 && set_.labels[size_t(i)] < set_.num_classes, name_,
             ": label ", set_.labels[size_t(i)], " of image ", i, " is outside 0..",
             set_.num_classes - 1);
  ND_CHECK(transform_.crop_padding >= 0, name_, ": crop padding must be >= 0, got ",
           transform_.crop_padding);
  if (transform_.normalize) {
    ND_CHECK(set_.channels == 3, name_, ": normalize needs 3 channels, the images have ",
             set_.channels);
    for (int c = 0; c < 3; ++c)
      ND_CHECK(transform_.stddev[size_t(c)] > 0.0f && std::isfinite(transform_.stddev[size_t(c)]) &&
                   std::isfinite(transform_.mean[size_t(c)]),
               name_, ": channel ", c, " has mean ", transform_.mean[size_t(c)], " and std ",
               transform_.stddev[size_t(c)], "; the std must be positive and both finite");
  }
}

int64_t InMemoryDataset::label(int64_t index) const {
  ND_CHECK(index >= 0 && index < set_.count, name_, ": sample ", index, " is outside 0..",
           set_.count - 1);
  return set_.labels[size_t(index)];
}

void InMemoryDataset::load(int64_t index, Generator& gen, float* out) const {
  ND_CHECK(index >= 0 && index < set_.count, name_, ": sample ", index, " is outside 0..",
           set_.count - 1);
  const int64_t numel = set_.channels * set_.height * set_.width;
  const uint8_t* pixels = set_.pixels.data() + index * numel;
  const bool crop_or_flip = transform_.crop_padding > 0 || transform_.flip;
  if (!crop_or_flip && !transform_.normalize) {
    for (int64_t j = 0; j < numel; ++j) out[j] = float(pixels[j]) / 255.0f;
    return;
  }
  // A one-image batch through the batch transforms (same arithmetic as gather_batch).
  Batch one;
  one.images = Tensor::empty({1, set_.channels, set_.height, set_.width}, DType::F32);
  float* image = one.images.data<float>();
  for (int64_t j = 0; j < numel; ++j) image[j] = float(pixels[j]) / 255.0f;
  if (crop_or_flip) {
    // Always the three documented draws (top, left, flip); the unused ones are ignored.
    std::vector<CropFlip> draw = draw_crop_flips(1, transform_.crop_padding, gen);
    if (!transform_.flip) draw[0].flip = false;
    apply_crop_flips(one, transform_.crop_padding, draw);
  }
  if (transform_.normalize) normalize(one, transform_.mean, transform_.stddev);
  std::memcpy(out, image, size_t(numel) * sizeof(float));
}

}  // namespace nd::data
