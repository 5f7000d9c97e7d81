// Tests of InMemoryDataset and the Loader. The per-sample CIFAR recipe is checked bit for bit
// against the batch transforms of transforms.h replayed from the same generator, including the
// three documented draws per sample. The loader is checked for identical batches with 0, 1 and 3
// workers (and against Dataset::load with sample_seed), drop_last, epochs abandoned mid-way, the
// prefetch bound, worker concurrency, and errors of a worker rethrown by next().
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "data/batch.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "test/catch.h"
#include "test/compare.h"

namespace {

using nd::Generator;
using nd::data::Batch;
using nd::data::ImageClassSet;
using nd::data::InMemoryDataset;
using nd::data::InMemoryTransform;
using nd::data::Loader;
using nd::data::LoaderOptions;
using nd::test::check_error_contains;

// `count` images of channels x side x side with seeded random pixels; label i % classes.
ImageClassSet random_set(int64_t count, int64_t channels, int64_t side, int64_t classes,
                         uint64_t seed) {
  ImageClassSet set;
  set.count = count;
  set.channels = channels;
  set.height = set.width = side;
  set.num_classes = classes;
  Generator gen(seed);
  set.pixels.resize(size_t(count * channels * side * side));
  for (uint8_t& p : set.pixels) p = uint8_t(gen.below(256));
  for (int64_t i = 0; i < count; ++i) set.labels.push_back(i % classes);
  return set;
}

InMemoryTransform cifar_recipe() {
  InMemoryTransform t;
  t.crop_padding = nd::data::kCifarCropPadding;
  t.flip = true;
  t.normalize = true;
  t.mean = nd::data::kCifar10Mean;
  t.stddev = nd::data::kCifar10Std;
  return t;
}

std::vector<float> load_sample(const nd::data::Dataset& data, int64_t index, Generator& gen) {
  std::vector<float> out(size_t(nd::shape_numel(data.sample_shape())));
  data.load(index, gen, out.data());
  return out;
}

std::vector<float> floats(const nd::Tensor& t) {
  return t.to_vector<float>();
}

// All batches of one epoch.
std::vector<Batch> epoch_batches(Loader& loader, const std::vector<int64_t>& order, uint64_t seed) {
  loader.start(order, seed);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

void require_same_batches(const std::vector<Batch>& got, const std::vector<Batch>& want,
                          const std::string& what) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    nd::test::require_equal(got[i].images, want[i].images,
                            what + ": images of batch " + std::to_string(i));
    nd::test::require_equal(got[i].labels, want[i].labels,
                            what + ": labels of batch " + std::to_string(i));
  }
}

// A dataset whose sample i is the constant i (shape 1x2x2), label i % 3; it can throw at one
// index, sleep per sample, and counts loads and the most loads running at once.
class ProbeDataset : public nd::data::Dataset {
 public:
  explicit ProbeDataset(int64_t count, int64_t fail_at = -1, int sleep_us = 0)
      : count_(count), fail_at_(fail_at), sleep_us_(sleep_us) {}
  int64_t size() const override { return count_; }
  int64_t num_classes() const override { return 3; }
  nd::Shape sample_shape() const override { return {1, 2, 2}; }
  int64_t label(int64_t index) const override { return index % 3; }
  void load(int64_t index, Generator& gen, float* out) const override {
    const int now = ++running_;
    int seen = max_running_.load();
    while (now > seen && !max_running_.compare_exchange_weak(seen, now)) {
    }
    if (sleep_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us_));
    --running_;
    ++loads_;
    if (index == fail_at_) ND_FAIL("probe: sample ", index, " is corrupt");
    // A draw from the generator makes the augmentation stream visible in the output.
    const float noise = float(gen.uniform());
    for (int j = 0; j < 4; ++j) out[j] = float(index) + (j == 3 ? noise : 0.0f);
  }
  std::string name() const override { return "probe"; }
  int64_t loads() const { return loads_.load(); }
  int max_running() const { return max_running_.load(); }

 private:
  int64_t count_, fail_at_;
  int sleep_us_;
  mutable std::atomic<int64_t> loads_{0};
  mutable std::atomic<int> running_{0}, max_running_{0};
};

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// Waits (up to 5 s) until pred holds.
template <typename Pred>
bool eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

}  // namespace

TEST_CASE("InMemoryDataset without transforms gives pixels / 255", "[data]") {
  ImageClassSet set = random_set(4, 1, 5, 2, 11);
  const std::vector<uint8_t> pixels = set.pixels;
  InMemoryDataset data(std::move(set), InMemoryTransform{}, "plain");
  REQUIRE(data.size() == 4);
  REQUIRE(data.sample_shape() == nd::Shape{1, 5, 5});
  REQUIRE(data.num_classes() == 2);
  REQUIRE(data.label(3) == 1);
  Generator gen(5);
  const auto state = gen.state();
  const std::vector<float> got = load_sample(data, 2, gen);
  for (size_t j = 0; j < got.size(); ++j) REQUIRE(got[j] == float(pixels[50 + j]) / 255.0f);
  CHECK(gen.state() == state);  // no augmentation, no draws
}

TEST_CASE("InMemoryDataset's CIFAR recipe equals the batch transforms with the same draws",
          "[data]") {
  ImageClassSet set = random_set(6, 3, 32, 10, 12);
  const ImageClassSet copy = set;
  InMemoryDataset data(std::move(set), cifar_recipe(), "cifar-like");
  int flips = 0, shifted = 0;
  for (int64_t i = 0; i < 6; ++i) {
    for (uint64_t seed : {1u, 2u, 3u, 40u}) {
      Generator gen(seed * 100 + uint64_t(i));
      const std::vector<float> got = load_sample(data, i, gen);
      // Reference: gather_batch of this one image, then random_crop_flip and normalize.
      Batch want = nd::data::gather_batch(copy, {i}, 0, 1);
      Generator replay(seed * 100 + uint64_t(i));
      const nd::data::CropFlip draw =
          nd::data::draw_crop_flips(1, nd::data::kCifarCropPadding, replay)[0];
      flips += draw.flip;
      shifted += draw.top != 4 || draw.left != 4;
      nd::data::apply_crop_flips(want, nd::data::kCifarCropPadding, {draw});
      nd::data::normalize(want, nd::data::kCifar10Mean, nd::data::kCifar10Std);
      REQUIRE(got == floats(want.images));
      // Exactly the three documented draws were taken.
      CHECK(gen.state() == replay.state());
    }
  }
  CHECK(flips > 0);
  CHECK(flips < 24);
  CHECK(shifted > 0);
}

TEST_CASE("InMemoryDataset with flip only still takes the three draws", "[data]") {
  ImageClassSet set = random_set(2, 3, 8, 2, 13);
  const ImageClassSet copy = set;
  InMemoryTransform t;
  t.flip = true;
  InMemoryDataset data(std::move(set), t, "flip-only");
  bool saw_flip = false, saw_plain = false;
  for (uint64_t seed = 0; seed < 16; ++seed) {
    Generator gen(seed), replay(seed);
    const std::vector<float> got = load_sample(data, 1, gen);
    replay.below(1);
    replay.below(1);
    const bool flip = replay.below(2) == 1;
    CHECK(gen.state() == replay.state());
    Batch want = nd::data::gather_batch(copy, {1}, 0, 1);
    nd::data::apply_crop_flips(want, 0, {nd::data::CropFlip{0, 0, flip}});
    REQUIRE(got == floats(want.images));
    (flip ? saw_flip : saw_plain) = true;
  }
  CHECK(saw_flip);
  CHECK(saw_plain);
}

TEST_CASE("InMemoryDataset rejects inconsistent sets and bad indices", "[data]") {
  InMemoryTransform normalize_gray;
  normalize_gray.normalize = true;
  normalize_gray.stddev = {1, 1, 1};
  check_error_contains([&] { InMemoryDataset(random_set(2, 1, 4, 2, 1), normalize_gray, "gray"); },
                       {"gray", "normalize needs 3 channels"});
  ImageClassSet bad_label = random_set(3, 1, 4, 2, 1);
  bad_label.labels[1] = 7;
  check_error_contains([&] { InMemoryDataset(bad_label, InMemoryTransform{}, "labels"); },
                       {"label 7 of image 1"});
  ImageClassSet short_pixels = random_set(3, 1, 4, 2, 1);
  short_pixels.pixels.pop_back();
  check_error_contains([&] { InMemoryDataset(short_pixels, InMemoryTransform{}, "short"); },
                       {"short", "pixel bytes"});
  InMemoryDataset data(random_set(3, 1, 4, 2, 1), InMemoryTransform{}, "small");
  Generator gen(1);
  std::vector<float> out(16);
  check_error_contains([&] { data.load(3, gen, out.data()); }, {"small", "sample 3"});
}

TEST_CASE("Loader batches are identical for 0, 1 and 3 workers", "[data]") {
  auto data = std::make_shared<InMemoryDataset>(random_set(50, 3, 32, 10, 21), cifar_recipe(),
                                                "cifar-like");
  Generator shuffle(3);
  const std::vector<int64_t> order = shuffle.permutation(50);
  std::vector<std::vector<Batch>> runs;
  for (int workers : {0, 1, 3}) {
    LoaderOptions options;
    options.batch_size = 7;
    options.workers = workers;
    options.prefetch = 2;
    Loader loader(data, options);
    runs.push_back(epoch_batches(loader, order, 99));
    REQUIRE(loader.num_batches() == 8);
  }
  REQUIRE(runs[0].size() == 8);
  CHECK(runs[0].back().labels.numel() == 1);
  require_same_batches(runs[1], runs[0], "1 worker vs 0");
  require_same_batches(runs[2], runs[0], "3 workers vs 0");

  // Each sample is Dataset::load with the generator of sample_seed(epoch seed, position).
  for (int64_t pos = 0; pos < 50; ++pos) {
    Generator gen(nd::data::sample_seed(99, pos));
    const std::vector<float> want = load_sample(*data, order[size_t(pos)], gen);
    const Batch& b = runs[0][size_t(pos / 7)];
    const std::vector<float> all = floats(b.images);
    const size_t at = size_t(pos % 7) * want.size();
    REQUIRE(std::equal(want.begin(), want.end(), all.begin() + std::ptrdiff_t(at)));
    REQUIRE(b.labels.to_vector<int64_t>()[size_t(pos % 7)] == order[size_t(pos)] % 10);
  }

  // Another epoch seed changes the augmentation; the same seed repeats it.
  LoaderOptions options;
  options.batch_size = 7;
  options.workers = 2;
  Loader loader(data, options);
  require_same_batches(epoch_batches(loader, order, 99), runs[0], "same seed again");
  const std::vector<Batch> other = epoch_batches(loader, order, 100);
  CHECK(floats(other[0].images) != floats(runs[0][0].images));
}

TEST_CASE("Loader drop_last and short orders", "[data]") {
  auto data = std::make_shared<ProbeDataset>(20);
  for (int workers : {0, 2}) {
    for (bool drop_last : {false, true}) {
      LoaderOptions options;
      options.batch_size = 6;
      options.workers = workers;
      options.drop_last = drop_last;
      Loader loader(data, options);
      Batch b;
      CHECK_FALSE(loader.next(b));  // before any start()
      const std::vector<Batch> batches = epoch_batches(loader, iota(20), 1);
      REQUIRE(int64_t(batches.size()) == (drop_last ? 3 : 4));
      REQUIRE(loader.num_batches() == int64_t(batches.size()));
      for (size_t i = 0; i < batches.size(); ++i) {
        const int64_t expected = (!drop_last && i == 3) ? 2 : 6;
        REQUIRE(batches[i].images.shape() == nd::Shape{expected, 1, 2, 2});
        const std::vector<float> px = floats(batches[i].images);
        for (int64_t j = 0; j < expected; ++j) {
          CHECK(px[size_t(j * 4)] == float(int64_t(i) * 6 + j));
          CHECK(batches[i].labels.to_vector<int64_t>()[size_t(j)] == (int64_t(i) * 6 + j) % 3);
        }
      }
      CHECK_FALSE(loader.next(b));  // stays over
      // Fewer samples than a batch: one short batch, or none with drop_last.
      CHECK(epoch_batches(loader, {4, 5, 6}, 2).size() == (drop_last ? 0u : 1u));
      CHECK(epoch_batches(loader, {}, 3).empty());
    }
  }
}

TEST_CASE("Loader rethrows a worker's error when its batch is due", "[data]") {
  auto data = std::make_shared<ProbeDataset>(30, /*fail_at=*/13);
  for (int workers : {0, 1, 3}) {
    LoaderOptions options;
    options.batch_size = 4;
    options.workers = workers;
    options.prefetch = 3;
    Loader loader(data, options);
    loader.start(iota(30), 5);
    Batch b;
    for (int i = 0; i < 3; ++i) REQUIRE(loader.next(b));  // samples 0..11 are fine
    // Batch 3 holds sample 13: the original exception and message.
    bool threw = false;
    try {
      loader.next(b);
    } catch (const nd::Error& e) {
      threw = true;
      CHECK(std::string(e.what()).find("probe: sample 13 is corrupt") != std::string::npos);
    }
    CHECK(threw);
    CHECK_FALSE(loader.next(b));  // the error ended the epoch
    // A new epoch without the bad sample runs to the end.
    std::vector<int64_t> good = iota(30);
    good.erase(good.begin() + 13);
    CHECK(epoch_batches(loader, good, 6).size() == 8);
  }
}

TEST_CASE("Loader start() mid-epoch abandons the old epoch", "[data]") {
  auto data = std::make_shared<ProbeDataset>(64, -1, /*sleep_us=*/300);
  LoaderOptions options;
  options.batch_size = 8;
  options.workers = 3;
  options.prefetch = 3;
  Loader fresh(data, options);
  const std::vector<Batch> want = epoch_batches(fresh, iota(40), 8);

  Loader loader(data, options);
  Generator g(1);
  loader.start(g.permutation(64), 7);
  Batch b;
  REQUIRE(loader.next(b));
  REQUIRE(loader.next(b));
  // Workers are busy with the old epoch's next batches; the new one must not see them.
  require_same_batches(epoch_batches(loader, iota(40), 8), want, "after an abandoned epoch");

  // Destroying a loader in the middle of an epoch joins its workers.
  {
    Loader busy(data, options);
    busy.start(iota(64), 9);
    REQUIRE(busy.next(b));
  }
  SUCCEED("destructor returned");
}

TEST_CASE("Loader prepares at most `prefetch` batches ahead, on several workers", "[data]") {
  auto data = std::make_shared<ProbeDataset>(80, -1, /*sleep_us=*/2000);
  LoaderOptions options;
  options.batch_size = 4;
  options.workers = 3;
  options.prefetch = 2;
  Loader loader(data, options);
  loader.start(iota(80), 1);
  // Before any next(): batches 0 and 1 only.
  REQUIRE(eventually([&] { return data->loads() >= 8; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(data->loads() == 8);
  Batch b;
  REQUIRE(loader.next(b));  // consuming batch 0 opens batch 2
  REQUIRE(eventually([&] { return data->loads() >= 12; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(data->loads() == 12);
  CHECK(data->max_running() >= 2);  // two workers loaded at the same time
  int64_t batches = 1;
  while (loader.next(b)) ++batches;
  CHECK(batches == 20);
  CHECK(data->loads() == 80);
}

TEST_CASE("Loader rejects bad options and orders", "[data]") {
  auto data = std::make_shared<ProbeDataset>(10);
  LoaderOptions options;
  options.batch_size = 0;
  check_error_contains([&] { Loader(data, options); }, {"batch size must be positive"});
  options.batch_size = 2;
  options.workers = -1;
  check_error_contains([&] { Loader(data, options); }, {"workers must be >= 0"});
  options.workers = 2;
  options.prefetch = 0;
  check_error_contains([&] { Loader(data, options); }, {"prefetch must be >= 1"});
  check_error_contains([&] { Loader(nullptr, LoaderOptions{}); }, {"no dataset"});
  Loader loader(data, LoaderOptions{});
  check_error_contains(
      [&] {
        loader.start({1, 2, 10}, 0);
      },
      {"probe", "order entry 2 is 10", "0..9"});
}
