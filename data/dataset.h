// Datasets read sample by sample, so one loader serves the in-memory sets (CIFAR, MNIST) and
// image folders decoded from disk. A sample is one float32 (C, H, W) image, already augmented
// and normalised, and its label.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/image_class_set.h"
#include "engine/random.h"
#include "engine/tensor.h"

namespace nd::data {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t num_classes() const = 0;
  virtual Shape sample_shape() const = 0;  // (C, H, W) of what load() writes
  virtual int64_t label(int64_t index) const = 0;
  // Writes sample `index` into out (C*H*W floats), drawing any augmentation from gen. Called
  // from several loader threads at once: implementations must be thread-safe.
  virtual void load(int64_t index, Generator& gen, float* out) const = 0;
  // A name for messages ("CIFAR-10 train", "imagenet/val").
  virtual std::string name() const = 0;
};

// The per-sample transforms of the in-memory sets, applied in this order to the [0, 1] image
// (pixels / 255): torchvision's RandomCrop(H x W, padding = crop_padding) when crop_padding > 0,
// RandomHorizontalFlip(0.5) when flip, Normalize(mean, std) when normalize.
struct InMemoryTransform {
  int64_t crop_padding = 0;
  bool flip = false;
  bool normalize = false;
  std::array<float, 3> mean{}, stddev{};
};

// An ImageClassSet (uint8 pixels in memory) as a Dataset.
class InMemoryDataset : public Dataset {
 public:
  InMemoryDataset(ImageClassSet set, InMemoryTransform transform, std::string name);
  int64_t size() const override { return set_.count; }
  int64_t num_classes() const override { return set_.num_classes; }
  Shape sample_shape() const override { return {set_.channels, set_.height, set_.width}; }
  int64_t label(int64_t index) const override;
  void load(int64_t index, Generator& gen, float* out) const override;
  std::string name() const override { return name_; }
  const ImageClassSet& set() const { return set_; }

 private:
  ImageClassSet set_;
  InMemoryTransform transform_;
  std::string name_;
};

}  // namespace nd::data
