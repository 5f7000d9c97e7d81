// Fashion-MNIST / MNIST split loader on top of the IDX reader: finds the image and label files
// (.gz preferred), checks their shapes, counts and label range, and widens labels to int64.
#include "data/fashion_mnist.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "data/idx.h"

namespace nd::data {

namespace {

constexpr int64_t kMnistSide = 28;
constexpr int64_t kMnistClasses = 10;

const char* const kInstallHint =
    "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass "
    "--data-dir";

bool regular_file_exists(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// dir/<name>.gz if it exists, else dir/<name>; the error names both when neither is there.
std::string find_split_file(const std::filesystem::path& dir, const std::string& name) {
  const std::filesystem::path gz = dir / (name + ".gz");
  const std::filesystem::path raw = dir / name;
  if (regular_file_exists(gz)) return gz.string();
  if (regular_file_exists(raw)) return raw.string();
  ND_FAIL("data directory ", dir.string(), " has neither ", gz.filename().string(), " nor ",
          raw.filename().string(), ": ", kInstallHint);
}

}  // namespace

ImageClassSet load_mnist_split(const std::string& dir, bool train) {
  std::error_code ec;
  const std::filesystem::path dir_path(dir);
  if (!std::filesystem::exists(dir_path, ec))
    ND_FAIL("data directory ", dir, " not found: ", kInstallHint);
  if (!std::filesystem::is_directory(dir_path, ec))
    ND_FAIL("data directory ", dir, " is not a directory: ", kInstallHint);

  const std::string prefix = train ? "train" : "t10k";
  const std::string images_path = find_split_file(dir_path, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_split_file(dir_path, prefix + "-labels-idx1-ubyte");

  IdxArray images = read_idx_u8(images_path, 3);
  if (images.dims[1] != kMnistSide || images.dims[2] != kMnistSide)
    ND_FAIL(images_path, ": expected 28x28 images, the file holds ", images.dims[1], "x",
            images.dims[2]);
  IdxArray labels = read_idx_u8(labels_path, 1);
  if (labels.dims[0] != images.dims[0])
    ND_FAIL(labels_path, " holds ", labels.dims[0], " labels but ", images_path, " holds ",
            images.dims[0], " images; the two files come from different sets");

  ImageClassSet set;
  set.count = images.dims[0];
  set.channels = 1;
  set.height = kMnistSide;
  set.width = kMnistSide;
  set.num_classes = kMnistClasses;
  set.labels.resize(set.count);
  for (int64_t i = 0; i < set.count; ++i) {
    const uint8_t label = labels.bytes[i];
    if (label >= kMnistClasses)
      ND_FAIL(labels_path, ": label ", int(label), " at index ", i,
              " is outside 0..9; the file is damaged or not an MNIST label file");
    set.labels[i] = label;
  }
  set.pixels = std::move(images.bytes);
  return set;
}

ImageClassSet grey_to_cifar_layout(const ImageClassSet& grey, int64_t side) {
  ND_CHECK(grey.channels == 1, "grey_to_cifar_layout: expected 1-channel images, got ",
           grey.channels, " channels");
  ND_CHECK(grey.height <= side && grey.width <= side, "grey_to_cifar_layout: ", grey.height, "x",
           grey.width, " images do not fit in ", side, "x", side);
  ImageClassSet out;
  out.count = grey.count;
  out.channels = 3;
  out.height = out.width = side;
  out.num_classes = grey.num_classes;
  out.labels = grey.labels;
  out.pixels.assign(size_t(out.count * 3 * side * side), 0);
  const int64_t top = (side - grey.height) / 2, left = (side - grey.width) / 2;
  for (int64_t i = 0; i < grey.count; ++i) {
    const uint8_t* in = grey.pixels.data() + i * grey.height * grey.width;
    for (int64_t c = 0; c < 3; ++c) {
      uint8_t* plane = out.pixels.data() + (i * 3 + c) * side * side;
      for (int64_t y = 0; y < grey.height; ++y)
        std::copy(in + y * grey.width, in + (y + 1) * grey.width, plane + (y + top) * side + left);
    }
  }
  return out;
}

}  // namespace nd::data
