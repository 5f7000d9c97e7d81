// A labelled image classification set held as plain buffers, what every reader of data/ returns
// (conversion to tensors is elsewhere).
#pragma once
#include <cstdint>
#include <vector>

namespace nd::data {

struct ImageClassSet {
  int64_t count = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;  // (count, channels, height, width), row-major, 0..255
  std::vector<int64_t> labels;  // (count), each in 0..num_classes-1
  int64_t num_classes = 0;
};

}  // namespace nd::data
