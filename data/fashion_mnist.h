// Fashion-MNIST and MNIST loader: both ship the same four IDX files (train-images-idx3-ubyte,
// train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each raw or .gz), so
// one function reads a split of either into plain buffers of pixels and labels.
#pragma once
#include <cstdint>
#include <string>

#include "data/image_class_set.h"

namespace nd::data {

// Reads the train (60000 images) or t10k (10000 images) split from dir, taking
// <name>.gz when present and <name> otherwise. Checks that the images are 3-D uint8 of 28x28, the
// labels 1-D uint8 in 0..9, and that both counts agree; throws nd::Error saying what to do.
ImageClassSet load_mnist_split(const std::string& dir, bool train);

// The grey images in the CIFAR layout, so the CIFAR networks take them unchanged: each image
// zero-padded (black) to side x side, centred (the extra pixel, if any, after), and its one
// channel repeated into three (R = G = B, as scripts/fashion_to_cifar.py writes them).
// Throws nd::Error for a set that is not single-channel or larger than side x side.
ImageClassSet grey_to_cifar_layout(const ImageClassSet& grey, int64_t side = 32);

}  // namespace nd::data
