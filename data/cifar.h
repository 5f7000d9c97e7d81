// CIFAR-10 and CIFAR-100 readers for the published binary versions
// (https://www.cs.toronto.edu/~kriz/cifar.html). CIFAR-10 splits are data_batch_1.bin ..
// data_batch_5.bin (train) and test_batch.bin, each a run of 3073-byte records: one label byte,
// then 3072 pixel bytes (the 32x32 red plane row-major, then green, then blue). CIFAR-100 splits
// are train.bin and test.bin with 3074-byte records: coarse label byte, fine label byte, pixels.
// Both return an ImageClassSet of (count, 3, 32, 32) uint8 pixels, channel 0 = red.
#pragma once
#include <cstdint>
#include <string>

#include "data/image_class_set.h"

namespace nd::data {

constexpr int64_t kCifarSide = 32;
constexpr int64_t kCifarChannels = 3;
constexpr int64_t kCifarImageBytes = kCifarChannels * kCifarSide * kCifarSide;  // 3072
constexpr int64_t kCifar10RecordBytes = 1 + kCifarImageBytes;                   // 3073
constexpr int64_t kCifar100RecordBytes = 2 + kCifarImageBytes;                  // 3074
constexpr int64_t kCifar10Classes = 10;
constexpr int64_t kCifar100Classes = 100;
constexpr int64_t kCifar100CoarseClasses = 20;

// Reads the CIFAR-10 train split (data_batch_1.bin .. data_batch_5.bin, concatenated in that
// order; 50000 images in the official files) or the test split (test_batch.bin, 10000 images).
// The files may lie in dir itself or in dir/cifar-10-batches-bin, where the official archive
// unpacks to. Any whole number of records per file is accepted. Throws nd::Error naming the file
// and the problem: missing directory or file, empty file, a size that is not a whole number of
// records, a label outside 0..9.
ImageClassSet load_cifar10(const std::string& dir, bool train);

// Reads the CIFAR-100 train split (train.bin, 50000 images) or test split (test.bin, 10000
// images) from dir or dir/cifar-100-binary. Labels are the fine labels (num_classes 100); the
// coarse label is only checked to be in 0..19. Errors as for load_cifar10.
ImageClassSet load_cifar100(const std::string& dir, bool train);

}  // namespace nd::data
