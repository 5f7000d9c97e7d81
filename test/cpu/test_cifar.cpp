// Tests of the CIFAR readers and the training transforms. CIFAR-10 and CIFAR-100 files are written
// here byte by byte in the published formats (small files with known pixel patterns and labels)
// and read back: pixel placement, labels, counts, the archive subfolders, and errors for missing,
// empty, truncated and out-of-range files. The crop/flip is checked against a literal
// pad-crop-mirror reference replayed from the documented generator draws; normalize against the
// formula, bit for bit.
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/batch.h"
#include "data/cifar.h"
#include "data/transforms.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/temp_dir.h"

namespace {

using nd::test::check_error_contains;

namespace fs = std::filesystem;
using nd::data::Batch;
using nd::data::ImageClassSet;
using Bytes = std::vector<uint8_t>;

constexpr int64_t kSide = 32;
constexpr int64_t kPlaneBytes = kSide * kSide;

// test/temp_dir.h's directory, named for this file's tests.
struct TempDir : nd::test::TempDir {
  TempDir() : nd::test::TempDir("cifar") {}
};

// Pixel (channel, y, x) of pattern image `image`: differs when image, channel, row or column
// change, and a transposed or channel-swapped image would not match.
uint8_t pattern_pixel(int64_t image, int64_t channel, int64_t y, int64_t x) {
  return uint8_t((image * 131 + channel * 71 + y * 37 + x * 11 + 5) % 251);
}

// The 3072 pixel bytes of a record as the format defines them: the red plane (32x32 row-major),
// then green, then blue.
void append_pattern_pixels(Bytes& out, int64_t image) {
  const size_t start = out.size();
  out.resize(start + 3 * kPlaneBytes);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < kSide; ++y)
      for (int64_t x = 0; x < kSide; ++x)
        out[start + c * kPlaneBytes + y * kSide + x] = pattern_pixel(image, c, y, x);
}

void append_cifar10_record(Bytes& out, uint8_t label, int64_t image) {
  out.push_back(label);
  append_pattern_pixels(out, image);
}

void append_cifar100_record(Bytes& out, uint8_t coarse, uint8_t fine, int64_t image) {
  out.push_back(coarse);
  out.push_back(fine);
  append_pattern_pixels(out, image);
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// The generated CIFAR-10 set: five train files of these sizes (12 images), a test file of 5.
const int64_t kTrainFileImages[5] = {3, 2, 4, 1, 2};
constexpr int64_t kCifar10TrainImages = 12;
constexpr int64_t kCifar10TestImages = 5;
constexpr int64_t kTestPatternBase = 100;  // test image i shows pattern image 100 + i

uint8_t cifar10_train_label(int64_t image) {
  return uint8_t((image * 3 + 1) % 10);
}
uint8_t cifar10_test_label(int64_t image) {
  return uint8_t((image * 7 + 9) % 10);
}

std::string train_batch_name(int file) {
  return "data_batch_" + std::to_string(file) + ".bin";
}

// Writes data_batch_1..5.bin and test_batch.bin into folder (labels cover 0 and 9).
void write_cifar10_files(const fs::path& folder) {
  fs::create_directories(folder);
  int64_t image = 0;
  for (int file = 1; file <= 5; ++file) {
    Bytes bytes;
    for (int64_t i = 0; i < kTrainFileImages[file - 1]; ++i, ++image)
      append_cifar10_record(bytes, cifar10_train_label(image), image);
    write_file((folder / train_batch_name(file)).string(), bytes);
  }
  Bytes test;
  for (int64_t i = 0; i < kCifar10TestImages; ++i)
    append_cifar10_record(test, cifar10_test_label(i), kTestPatternBase + i);
  write_file((folder / "test_batch.bin").string(), test);
}

// Number of pixels of set image `index` that differ from pattern image `pattern_image`.
int64_t pattern_mismatches(const ImageClassSet& set, int64_t index, int64_t pattern_image) {
  int64_t mismatches = 0;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < kSide; ++y)
      for (int64_t x = 0; x < kSide; ++x) {
        const uint8_t got = set.pixels[size_t(((index * 3 + c) * kSide + y) * kSide + x)];
        mismatches += got != pattern_pixel(pattern_image, c, y, x);
      }
  return mismatches;
}

void check_cifar10_train(const ImageClassSet& set) {
  REQUIRE(set.count == kCifar10TrainImages);
  CHECK(set.channels == 3);
  CHECK(set.height == 32);
  CHECK(set.width == 32);
  CHECK(set.num_classes == 10);
  REQUIRE(set.pixels.size() == size_t(kCifar10TrainImages * 3072));
  REQUIRE(set.labels.size() == size_t(kCifar10TrainImages));
  for (int64_t i = 0; i < set.count; ++i) {
    INFO("train image " << i);
    CHECK(set.labels[size_t(i)] == cifar10_train_label(i));
    CHECK(pattern_mismatches(set, i, i) == 0);
  }
}

void check_cifar10_test(const ImageClassSet& set) {
  REQUIRE(set.count == kCifar10TestImages);
  CHECK(set.num_classes == 10);
  REQUIRE(set.pixels.size() == size_t(kCifar10TestImages * 3072));
  for (int64_t i = 0; i < set.count; ++i) {
    INFO("test image " << i);
    CHECK(set.labels[size_t(i)] == cifar10_test_label(i));
    CHECK(pattern_mismatches(set, i, kTestPatternBase + i) == 0);
  }
}

// The generated CIFAR-100 set: 7 train images (fine labels include 0 and 99), 3 test images.
constexpr int64_t kCifar100TrainImages = 7;
constexpr int64_t kCifar100TestImages = 3;
const uint8_t kCifar100TrainFine[kCifar100TrainImages] = {99, 0, 42, 57, 5, 98, 13};
const uint8_t kCifar100TestFine[kCifar100TestImages] = {7, 64, 99};

void write_cifar100_files(const fs::path& folder) {
  fs::create_directories(folder);
  Bytes train;
  for (int64_t i = 0; i < kCifar100TrainImages; ++i)
    append_cifar100_record(train, uint8_t(kCifar100TrainFine[i] / 5), kCifar100TrainFine[i], i);
  write_file((folder / "train.bin").string(), train);
  Bytes test;
  for (int64_t i = 0; i < kCifar100TestImages; ++i)
    append_cifar100_record(test, uint8_t(kCifar100TestFine[i] / 5), kCifar100TestFine[i],
                           kTestPatternBase + i);
  write_file((folder / "test.bin").string(), test);
}

void check_cifar100_sets(const ImageClassSet& train, const ImageClassSet& test) {
  REQUIRE(train.count == kCifar100TrainImages);
  CHECK(train.channels == 3);
  CHECK(train.height == 32);
  CHECK(train.width == 32);
  CHECK(train.num_classes == 100);
  REQUIRE(train.labels.size() == size_t(kCifar100TrainImages));
  for (int64_t i = 0; i < train.count; ++i) {
    INFO("CIFAR-100 train image " << i);
    CHECK(train.labels[size_t(i)] == kCifar100TrainFine[i]);
    CHECK(pattern_mismatches(train, i, i) == 0);
  }
  REQUIRE(test.count == kCifar100TestImages);
  CHECK(test.num_classes == 100);
  for (int64_t i = 0; i < test.count; ++i) {
    INFO("CIFAR-100 test image " << i);
    CHECK(test.labels[size_t(i)] == kCifar100TestFine[i]);
    CHECK(pattern_mismatches(test, i, kTestPatternBase + i) == 0);
  }
}

}  // namespace

TEST_CASE("CIFAR-10 splits read back in the published record layout", "[cifar]") {
  TempDir dir;
  SECTION("files directly in the data directory") {
    write_cifar10_files(dir.path());
    const ImageClassSet train = nd::data::load_cifar10(dir.path(), true);
    check_cifar10_train(train);
    check_cifar10_test(nd::data::load_cifar10(dir.path(), false));

    // Spot checks written out: the first record's bytes 1, 2 and 1 + 1024 + 32 are red (0, 0),
    // red (0, 1) and green (1, 0); the files were concatenated in order 1..5, so image 5 (the
    // first of data_batch_3.bin) starts at 5 * 3072.
    const Bytes first_file = [&] {
      std::ifstream in(dir.file("data_batch_1.bin"), std::ios::binary);
      return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }();
    REQUIRE(first_file.size() == size_t(3 * 3073));
    CHECK(train.labels[0] == first_file[0]);
    CHECK(train.pixels[0] == first_file[1]);
    CHECK(train.pixels[1] == first_file[2]);
    CHECK(train.pixels[1024 + 32] == first_file[1 + 1024 + 32]);
    CHECK(train.pixels[2048 + 32 * 31 + 31] == first_file[3072]);
    CHECK(train.pixels[3072] == first_file[3073 + 1]);
    CHECK(train.pixels[5 * 3072 + 2048 + 40] == pattern_pixel(5, 2, 1, 8));
  }
  SECTION("files in cifar-10-batches-bin, as the official archive unpacks") {
    write_cifar10_files(fs::path(dir.path()) / "cifar-10-batches-bin");
    check_cifar10_train(nd::data::load_cifar10(dir.path(), true));
    check_cifar10_test(nd::data::load_cifar10(dir.path(), false));
    // The subfolder itself works as the data directory too.
    check_cifar10_test(nd::data::load_cifar10(dir.file("cifar-10-batches-bin"), false));
  }
}

TEST_CASE("CIFAR-100 splits read back with the fine labels", "[cifar]") {
  TempDir dir;
  SECTION("files directly in the data directory") {
    write_cifar100_files(dir.path());
    check_cifar100_sets(nd::data::load_cifar100(dir.path(), true),
                        nd::data::load_cifar100(dir.path(), false));
  }
  SECTION("files in cifar-100-binary, as the official archive unpacks") {
    write_cifar100_files(fs::path(dir.path()) / "cifar-100-binary");
    check_cifar100_sets(nd::data::load_cifar100(dir.path(), true),
                        nd::data::load_cifar100(dir.path(), false));
  }
}

TEST_CASE("CIFAR readers reject missing and broken files, naming the file and the problem",
          "[cifar]") {
  TempDir dir;
  auto load10_train = [&] { nd::data::load_cifar10(dir.path(), true); };
  auto load10_test = [&] { nd::data::load_cifar10(dir.path(), false); };
  auto load100_train = [&] { nd::data::load_cifar100(dir.path(), true); };
  auto load100_test = [&] { nd::data::load_cifar100(dir.path(), false); };

  SECTION("missing data directory") {
    const std::string missing = dir.file("no_such_dir");
    check_error_contains([&] { nd::data::load_cifar10(missing, true); },
                         {missing, "not found", "cifar-10-binary.tar.gz"});
    check_error_contains([&] { nd::data::load_cifar100(missing, false); },
                         {missing, "not found", "cifar-100-binary.tar.gz"});
  }
  SECTION("data directory that is a file") {
    write_file(dir.file("plain_file"), Bytes{1, 2, 3});
    check_error_contains([&] { nd::data::load_cifar10(dir.file("plain_file"), true); },
                         {dir.file("plain_file"), "not a directory"});
  }
  SECTION("no files at all: the message lists the names looked for and both places") {
    check_error_contains(load10_train, {dir.path(), "data_batch_1.bin", "data_batch_2.bin",
                                        "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin",
                                        "cifar-10-batches-bin", "cifar-10-binary.tar.gz"});
    check_error_contains(load10_test, {dir.path(), "no CIFAR-10 test files", "test_batch.bin",
                                       "cifar-10-batches-bin"});
    check_error_contains(load100_train, {dir.path(), "train.bin", "cifar-100-binary"});
    check_error_contains(load100_test, {dir.path(), "test.bin", "cifar-100-binary"});
  }
  SECTION("one train file missing") {
    write_cifar10_files(dir.path());
    fs::remove(dir.file("data_batch_3.bin"));
    check_error_contains(load10_train, {dir.path(), "CIFAR-10 train split",
                                        "missing data_batch_3.bin", "data_batch_5.bin"});
    // The test split is complete and still reads.
    check_cifar10_test(nd::data::load_cifar10(dir.path(), false));
  }
  SECTION("truncated CIFAR-10 file") {
    write_cifar10_files(dir.path());
    Bytes bytes;
    append_cifar10_record(bytes, 1, 0);
    append_cifar10_record(bytes, 2, 1);
    bytes.resize(bytes.size() + 100, 7);
    write_file(dir.file("data_batch_2.bin"), bytes);
    check_error_contains(load10_train,
                         {dir.file("data_batch_2.bin"),
                          "truncated: 6246 bytes is not a whole number of 3073-byte records"});
  }
  SECTION("truncated CIFAR-100 file") {
    write_cifar100_files(dir.path());
    Bytes bytes;
    append_cifar100_record(bytes, 0, 1, 0);
    bytes.pop_back();
    write_file(dir.file("test.bin"), bytes);
    check_error_contains(
        load100_test,
        {dir.file("test.bin"), "truncated: 3073 bytes is not a whole number of 3074-byte records"});
  }
  SECTION("empty file") {
    write_cifar10_files(dir.path());
    write_file(dir.file("data_batch_4.bin"), Bytes{});
    check_error_contains(
        load10_train, {dir.file("data_batch_4.bin"), "empty file (0 bytes)", "3073-byte records"});
    write_cifar100_files(dir.path());
    write_file(dir.file("train.bin"), Bytes{});
    check_error_contains(load100_train, {dir.file("train.bin"), "empty file (0 bytes)"});
  }
  SECTION("CIFAR-10 label out of range") {
    write_cifar10_files(dir.path());
    Bytes bytes;
    append_cifar10_record(bytes, 3, 0);
    append_cifar10_record(bytes, 10, 1);
    write_file(dir.file("data_batch_2.bin"), bytes);
    check_error_contains(load10_train,
                         {dir.file("data_batch_2.bin"), "record 1 has label 10", "outside 0..9"});
  }
  SECTION("CIFAR-100 fine and coarse labels out of range") {
    write_cifar100_files(dir.path());
    Bytes bytes;
    append_cifar100_record(bytes, 0, 0, 0);
    append_cifar100_record(bytes, 1, 5, 1);
    append_cifar100_record(bytes, 19, 100, 2);
    write_file(dir.file("train.bin"), bytes);
    check_error_contains(load100_train,
                         {dir.file("train.bin"), "record 2 has label 100", "outside 0..99"});
    bytes.clear();
    append_cifar100_record(bytes, 20, 99, 0);
    write_file(dir.file("test.bin"), bytes);
    check_error_contains(load100_test,
                         {dir.file("test.bin"), "record 0 has coarse label 20", "outside 0..19"});
  }
}

namespace {

// A batch (count, channels, height, width) whose pixels are distinct values in (0, 1), so an
// output pixel of 0 can only be padding; labels 0..count-1.
Batch distinct_pixel_batch(int64_t count, int64_t channels, int64_t height, int64_t width) {
  const int64_t numel = count * channels * height * width;
  std::vector<float> pixels(static_cast<size_t>(numel));
  for (int64_t i = 0; i < numel; ++i) pixels[size_t(i)] = float(i + 1) / float(numel + 1);
  std::vector<int64_t> labels(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) labels[size_t(i)] = i;
  Batch batch;
  batch.images = nd::Tensor::from_vector(pixels, {count, channels, height, width});
  batch.labels = nd::Tensor::from_vector(labels, {count});
  return batch;
}

// torchvision's RandomCrop(padding=pad) + RandomHorizontalFlip written out literally for one
// plane (height, width): zero-pad to (height + 2 pad, width + 2 pad), cut the window at
// (top, left), mirror the columns when flip.
std::vector<float> reference_crop_flip_plane(const float* plane, int64_t height, int64_t width,
                                             int64_t pad, int64_t top, int64_t left, bool flip) {
  const int64_t padded_height = height + 2 * pad;
  const int64_t padded_width = width + 2 * pad;
  std::vector<float> padded(size_t(padded_height * padded_width), 0.0f);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      padded[size_t((y + pad) * padded_width + (x + pad))] = plane[y * width + x];
  std::vector<float> cropped(size_t(height * width));
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      cropped[size_t(y * width + x)] = padded[size_t((y + top) * padded_width + (x + left))];
  if (!flip) return cropped;
  std::vector<float> mirrored(cropped.size());
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      mirrored[size_t(y * width + x)] = cropped[size_t(y * width + (width - 1 - x))];
  return mirrored;
}

struct ReplayedDraw {
  int64_t top, left;
  bool flip;
};

// The draws as transforms.h documents them, taken from a generator seeded like the one used.
std::vector<ReplayedDraw> replay_documented_draws(nd::Generator& gen, int64_t count, int64_t pad) {
  std::vector<ReplayedDraw> draws;
  for (int64_t i = 0; i < count; ++i) {
    ReplayedDraw d;
    d.top = int64_t(gen.below(uint64_t(2 * pad + 1)));
    d.left = int64_t(gen.below(uint64_t(2 * pad + 1)));
    d.flip = gen.below(2) == 1;
    draws.push_back(d);
  }
  return draws;
}

// Runs random_crop_flip on a distinct-pixel batch and checks every output pixel against the
// literal reference at the replayed draws; returns the draws and counts zero (padding) pixels.
std::vector<ReplayedDraw> check_crop_flip_against_reference(int64_t count, int64_t channels,
                                                            int64_t height, int64_t width,
                                                            int64_t pad, uint64_t seed,
                                                            int64_t* zero_pixels) {
  Batch batch = distinct_pixel_batch(count, channels, height, width);
  const std::vector<float> input = batch.images.to_vector<float>();
  nd::Generator gen(seed);
  nd::data::random_crop_flip(batch, pad, gen);
  const std::vector<float> output = batch.images.to_vector<float>();

  nd::Generator replay(seed);
  const std::vector<ReplayedDraw> draws = replay_documented_draws(replay, count, pad);
  // Exactly three draws per image: both generators are in the same state afterwards.
  CHECK(gen.state() == replay.state());

  const int64_t plane = height * width;
  int64_t mismatches = 0;
  *zero_pixels = 0;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t offset = (i * channels + c) * plane;
      const std::vector<float> expected = reference_crop_flip_plane(
          input.data() + offset, height, width, pad, draws[i].top, draws[i].left, draws[i].flip);
      for (int64_t j = 0; j < plane; ++j) {
        mismatches += output[size_t(offset + j)] != expected[size_t(j)];
        *zero_pixels += output[size_t(offset + j)] == 0.0f;
      }
    }
  const std::vector<int64_t> labels = batch.labels.to_vector<int64_t>();
  for (int64_t i = 0; i < count; ++i) mismatches += labels[size_t(i)] != i;  // labels untouched
  INFO("shape " << count << "x" << channels << "x" << height << "x" << width << ", pad " << pad
                << ", seed " << seed);
  CHECK(mismatches == 0);
  return draws;
}

}  // namespace

TEST_CASE("random crop with padding 0 is the identity and flips are exact mirror images",
          "[cifar]") {
  const int64_t count = 16, channels = 3, height = 5, width = 7;
  Batch batch = distinct_pixel_batch(count, channels, height, width);
  const std::vector<float> input = batch.images.to_vector<float>();
  nd::Generator gen(3);
  nd::data::random_crop_flip(batch, 0, gen);
  const std::vector<float> output = batch.images.to_vector<float>();

  nd::Generator replay(3);
  const std::vector<ReplayedDraw> draws = replay_documented_draws(replay, count, 0);
  int64_t unchanged = 0, mirrored = 0;
  for (int64_t i = 0; i < count; ++i) {
    bool same = true, mirror = true;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t y = 0; y < height; ++y)
        for (int64_t x = 0; x < width; ++x) {
          const size_t base = size_t(((i * channels + c) * height + y) * width);
          same = same && output[base + x] == input[base + x];
          mirror = mirror && output[base + x] == input[base + (width - 1 - x)];
        }
    INFO("image " << i << ", documented flip draw " << draws[i].flip);
    CHECK(same != mirror);  // exactly one (all pixels distinct, width > 1)
    CHECK(mirror == draws[i].flip);
    unchanged += same;
    mirrored += mirror;
  }
  CHECK(unchanged > 0);
  CHECK(mirrored > 0);
  CHECK(unchanged + mirrored == count);
  CHECK(gen.state() == replay.state());
}

TEST_CASE("random crop with padding shows zero padding or the shifted input, per documented draws",
          "[cifar]") {
  SECTION("CIFAR shape, padding 4") {
    int64_t zero_pixels = 0;
    const std::vector<ReplayedDraw> draws =
        check_crop_flip_against_reference(64, 3, 32, 32, 4, 11, &zero_pixels);
    // The seed exercises the extreme offsets, both flips and therefore real padding.
    bool top_zero = false, top_max = false, left_zero = false, left_max = false;
    int64_t flips = 0;
    for (const ReplayedDraw& d : draws) {
      top_zero = top_zero || d.top == 0;
      top_max = top_max || d.top == 8;
      left_zero = left_zero || d.left == 0;
      left_max = left_max || d.left == 8;
      flips += d.flip;
    }
    CHECK(top_zero);
    CHECK(top_max);
    CHECK(left_zero);
    CHECK(left_max);
    CHECK(flips > 0);
    CHECK(flips < 64);
    CHECK(zero_pixels > 0);
  }
  SECTION("non-square images, odd sizes, one channel and four") {
    int64_t zero_pixels = 0;
    check_crop_flip_against_reference(20, 1, 7, 5, 2, 5, &zero_pixels);
    check_crop_flip_against_reference(9, 4, 3, 11, 1, 6, &zero_pixels);
  }
  SECTION("padding larger than the image: some crops are all zero") {
    int64_t zero_pixels = 0;
    check_crop_flip_against_reference(40, 2, 4, 3, 6, 8, &zero_pixels);
    CHECK(zero_pixels > 0);
  }
  SECTION("draw_crop_flips returns the documented draws; apply_crop_flips checks its input") {
    nd::Generator gen(21), replay(21);
    const auto draws = nd::data::draw_crop_flips(10, 4, gen);
    const auto expected = replay_documented_draws(replay, 10, 4);
    REQUIRE(draws.size() == expected.size());
    for (size_t i = 0; i < draws.size(); ++i) {
      CHECK(draws[i].top == expected[i].top);
      CHECK(draws[i].left == expected[i].left);
      CHECK(draws[i].flip == expected[i].flip);
    }
    Batch batch = distinct_pixel_batch(10, 3, 8, 8);
    const std::vector<nd::data::CropFlip> one_short(draws.begin(), draws.end() - 1);
    check_error_contains([&] { nd::data::apply_crop_flips(batch, 4, one_short); },
                         {"9 crop/flip draws for a batch of 10 images"});
    auto bad = draws;
    bad[3].left = 9;
    check_error_contains([&] { nd::data::apply_crop_flips(batch, 4, bad); },
                         {"image 3", "outside [0, 8]"});
    nd::Generator unused(0);
    check_error_contains([&] { nd::data::random_crop_flip(batch, -1, unused); },
                         {"padding must be >= 0, got -1"});
  }
}

TEST_CASE("random crop/flip repeats bitwise for the same seed", "[cifar]") {
  auto run = [](uint64_t seed) {
    Batch batch = distinct_pixel_batch(32, 3, 32, 32);
    nd::Generator gen(seed);
    nd::data::random_crop_flip(batch, nd::data::kCifarCropPadding, gen);
    nd::data::random_crop_flip(batch, nd::data::kCifarCropPadding, gen);  // a second step
    return batch.images.to_vector<float>();
  };
  const std::vector<float> first = run(42);
  const std::vector<float> second = run(42);
  REQUIRE(first.size() == second.size());
  CHECK(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)) == 0);
  CHECK(run(43) != first);
}

TEST_CASE("normalize computes (x - mean) / std per channel exactly", "[cifar]") {
  CHECK(nd::data::kCifar10Mean == std::array<float, 3>{0.4914f, 0.4822f, 0.4465f});
  CHECK(nd::data::kCifar10Std == std::array<float, 3>{0.2023f, 0.1994f, 0.2010f});
  CHECK(nd::data::kCifar100Mean == std::array<float, 3>{0.5071f, 0.4865f, 0.4409f});
  CHECK(nd::data::kCifar100Std == std::array<float, 3>{0.2009f, 0.1984f, 0.2023f});
  CHECK(nd::data::kCifarCropPadding == 4);

  for (int which = 0; which < 2; ++which) {
    const auto& mean = which == 0 ? nd::data::kCifar10Mean : nd::data::kCifar100Mean;
    const auto& stddev = which == 0 ? nd::data::kCifar10Std : nd::data::kCifar100Std;
    INFO((which == 0 ? "CIFAR-10" : "CIFAR-100") << " statistics");
    // The training order: crop/flip on [0, 1] images (zero padding), then normalize.
    Batch batch = distinct_pixel_batch(6, 3, 32, 32);
    nd::Generator gen(7);
    nd::data::random_crop_flip(batch, 4, gen);
    const std::vector<float> before = batch.images.to_vector<float>();
    nd::data::normalize(batch, mean, stddev);
    const std::vector<float> after = batch.images.to_vector<float>();
    int64_t mismatches = 0, padded = 0, padded_mismatches = 0;
    const int64_t plane = 32 * 32;
    for (size_t k = 0; k < before.size(); ++k) {
      const size_t c = (k / size_t(plane)) % 3;
      mismatches += after[k] != (before[k] - mean[c]) / stddev[c];
      if (before[k] == 0.0f) {
        ++padded;
        padded_mismatches += after[k] != (0.0f - mean[c]) / stddev[c];
      }
    }
    CHECK(mismatches == 0);
    CHECK(padded > 0);
    CHECK(padded_mismatches == 0);
  }

  Batch gray = distinct_pixel_batch(2, 1, 4, 4);
  check_error_contains(
      [&] { nd::data::normalize(gray, nd::data::kCifar10Mean, nd::data::kCifar10Std); },
      {"normalize", "images of 1 channels"});
  Batch rgb = distinct_pixel_batch(2, 3, 4, 4);
  check_error_contains(
      [&] {
        nd::data::normalize(rgb, nd::data::kCifar10Mean, {0.2f, 0.0f, 0.2f});
      },
      {"channel 1", "std must be positive"});
  Batch as_double;
  as_double.images = rgb.images.to(nd::DType::F64);
  check_error_contains(
      [&] { nd::data::normalize(as_double, nd::data::kCifar10Mean, nd::data::kCifar10Std); },
      {"float32"});
}

TEST_CASE("a generated CIFAR-10 set flows through batches, crop/flip and normalize", "[cifar]") {
  TempDir dir;
  write_cifar10_files(dir.path());
  const ImageClassSet set = nd::data::load_cifar10(dir.path(), true);
  nd::Generator gen(0);
  nd::data::BatchIterator batches(set, 5, true, &gen);
  Batch batch;
  int64_t seen = 0;
  while (batches.next(batch)) {
    nd::data::random_crop_flip(batch, nd::data::kCifarCropPadding, gen);
    nd::data::normalize(batch, nd::data::kCifar10Mean, nd::data::kCifar10Std);
    CHECK(batch.images.shape() == nd::Shape{batch.labels.size(0), 3, 32, 32});
    for (float v : batch.images.to_vector<float>()) {
      // Every value is (p / 255 - mean) / std for some channel: within [-2.43, 2.76].
      if (v < -2.5f || v > 2.8f) FAIL("normalized value " << v << " outside the CIFAR-10 range");
    }
    seen += batch.labels.size(0);
  }
  CHECK(seen == kCifar10TrainImages);
}
