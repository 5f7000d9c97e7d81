// The datasets nd-train reads, as loader-ready Datasets with the reference recipes' transforms:
// CIFAR-10/100 (random crop 32 with padding 4 + flip + normalisation for training,
// normalisation for testing), Fashion-MNIST and MNIST (pixels in [0, 1]) and ImageNet-layout
// image folders (RandomResizedCrop 224 + flip / Resize 256 + CenterCrop 224, normalised).
#pragma once
#include <memory>
#include <string>

#include "apps/train_config.h"
#include "data/dataset.h"

namespace nd {

struct DataSplits {
  std::shared_ptr<const data::Dataset> train, test;  // either may be null when not asked for
};

std::string default_data_dir(const std::string& dataset);
DataSplits load_splits(const TrainConfig& cfg, bool want_train, bool want_test);
// Bad images an image folder skipped (--skip-bad-images) or replaced while loading, with the
// first few files and reasons; empty when there were none.
std::string bad_image_report(const data::Dataset& d);

}  // namespace nd
