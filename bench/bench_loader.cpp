// nd-bench-loader: images per second of the data loader alone (no training), for workers 0, 1,
// 2, 4 (or --workers), on
//   cifar:    a synthetic in-memory CIFAR-shaped set (50000 32x32 RGB images), random crop with
//             padding 4 + flip + normalize, batch 128;
//   imagenet: a folder of generated JPEG files (500x375 by default, written with stb_image_write
//             into a temporary folder), RandomResizedCrop 224 + flip + normalize, batch 64.
// Each row is one epoch over the set, timed from start() to the last batch.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "data/cifar.h"
#include "data/dataset.h"
#include "data/image_folder.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "engine/random.h"

#if ND_WITH_STB
#include "stb_image_write.h"
#endif

namespace {

namespace fs = std::filesystem;
using nd::data::Dataset;

struct Settings {
  std::vector<int> workers = {0, 1, 2, 4};
  int prefetch = 0;  // 0: 2 per worker
  int64_t cifar_images = 50000;
  int64_t folder_images = 320;
  int64_t folder_classes = 4;
  int jpeg_width = 500, jpeg_height = 375, jpeg_quality = 90;
  int64_t crop = 224;
  bool skip_cifar = false, skip_folder = false;
};

// One epoch of `data` in a shuffled order; prints a table row.
void time_epoch(const char* label, std::shared_ptr<const Dataset> data, int64_t batch, int workers,
                int prefetch) {
  nd::data::LoaderOptions options;
  options.batch_size = batch;
  options.workers = workers;
  options.prefetch = prefetch > 0 ? prefetch : 2 * std::max(workers, 1);
  nd::data::Loader loader(data, options);
  nd::Generator gen(7);
  const auto begin = std::chrono::steady_clock::now();
  loader.start(gen.permutation(data->size()), 1234);
  nd::data::Batch b;
  int64_t images = 0;
  while (loader.next(b)) images += b.labels.numel();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  std::printf("%-9s %7d %8d %6lld %8lld %9.3f %10.0f\n", label, workers, options.prefetch,
              (long long)batch, (long long)images, seconds, double(images) / seconds);
  std::fflush(stdout);
}

std::shared_ptr<const Dataset> synthetic_cifar(int64_t count) {
  nd::data::ImageClassSet set;
  set.count = count;
  set.channels = nd::data::kCifarChannels;
  set.height = set.width = nd::data::kCifarSide;
  set.num_classes = nd::data::kCifar10Classes;
  set.pixels.resize(size_t(count * nd::data::kCifarImageBytes));
  nd::Generator gen(1);
  for (uint8_t& p : set.pixels) p = uint8_t(gen.next_u64() >> 56);
  set.labels.resize(size_t(count));
  for (int64_t i = 0; i < count; ++i) set.labels[size_t(i)] = i % set.num_classes;
  nd::data::InMemoryTransform t;
  t.crop_padding = nd::data::kCifarCropPadding;
  t.flip = t.normalize = true;
  t.mean = nd::data::kCifar10Mean;
  t.stddev = nd::data::kCifar10Std;
  return std::make_shared<nd::data::InMemoryDataset>(std::move(set), t, "synthetic CIFAR");
}

// A temporary folder removed with its contents at scope end.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    path = fs::temp_directory_path() / ("nd_bench_loader_" + std::to_string(getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

#if ND_WITH_STB
// class_<k>/img_<i>.jpg: smooth colour gradients with noise, different per image, so the JPEG
// files have a realistic size.
void write_jpeg_folder(const fs::path& root, const Settings& s) {
  nd::Generator gen(3);
  std::vector<uint8_t> pixels(size_t(s.jpeg_width * s.jpeg_height * 3));
  for (int64_t i = 0; i < s.folder_images; ++i) {
    const fs::path dir = root / ("class_" + std::to_string(i % s.folder_classes));
    fs::create_directories(dir);
    const double fx = gen.uniform(0.5, 3.0), fy = gen.uniform(0.5, 3.0);
    for (int y = 0; y < s.jpeg_height; ++y)
      for (int x = 0; x < s.jpeg_width; ++x)
        for (int c = 0; c < 3; ++c) {
          const double v = 127.5 + 100.0 * std::sin(fx * x / 40.0 + c) * std::cos(fy * y / 30.0) +
                           double(gen.next_u64() >> 60);
          pixels[size_t((y * s.jpeg_width + x) * 3 + c)] = uint8_t(std::clamp(v, 0.0, 255.0));
        }
    const std::string path = (dir / ("img_" + std::to_string(i) + ".jpg")).string();
    if (!stbi_write_jpg(path.c_str(), s.jpeg_width, s.jpeg_height, 3, pixels.data(),
                        s.jpeg_quality))
      throw std::runtime_error("cannot write " + path);
  }
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"nd-bench-loader: images/s of the data loader alone (CIFAR- and ImageNet-shaped)"};
  app.add_option("--workers", s.workers, "worker counts to time")->expected(1, 16);
  app.add_option("--prefetch", s.prefetch, "batches prepared ahead (default 2 per worker)");
  app.add_option("--cifar-images", s.cifar_images, "images of the synthetic CIFAR set");
  app.add_option("--folder-images", s.folder_images, "JPEG files of the generated folder");
  app.add_option("--folder-classes", s.folder_classes, "class folders of the generated folder");
  app.add_option("--jpeg-width", s.jpeg_width, "width of the generated JPEG files");
  app.add_option("--jpeg-height", s.jpeg_height, "height of the generated JPEG files");
  app.add_option("--crop", s.crop, "RandomResizedCrop output side");
  app.add_flag("--skip-cifar", s.skip_cifar, "time only the image folder");
  app.add_flag("--skip-folder", s.skip_folder, "time only the in-memory set");
  CLI11_PARSE(app, argc, argv);

  try {
    std::printf(
        "nd-bench-loader: one shuffled epoch per row, timed from start() to the last "
        "batch; %u hardware threads\n\n",
        std::thread::hardware_concurrency());
    std::printf("%-9s %7s %8s %6s %8s %9s %10s\n", "data", "workers", "prefetch", "batch", "images",
                "seconds", "images/s");
    if (!s.skip_cifar) {
      const auto cifar = synthetic_cifar(s.cifar_images);
      for (int w : s.workers) time_epoch("cifar", cifar, 128, w, s.prefetch);
    }
    if (!s.skip_folder) {
#if ND_WITH_STB
      ScratchDir dir;
      write_jpeg_folder(dir.path, s);
      nd::data::ImageFolderOptions options;
      options.train = true;
      options.size = s.crop;
      const auto folder =
          std::make_shared<nd::data::ImageFolderDataset>(dir.path.string(), options);
      char label[64];
      std::snprintf(label, sizeof label, "jpeg %dx%d", s.jpeg_width, s.jpeg_height);
      std::printf("(%s: %lld files, RandomResizedCrop %lld + flip + normalize)\n", label,
                  (long long)folder->size(), (long long)s.crop);
      for (int w : s.workers) time_epoch("imagenet", folder, 64, w, s.prefetch);
#else
      std::printf("imagenet: skipped, built without stb_image (install libstb-dev)\n");
#endif
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nd-bench-loader: %s\n", e.what());
    return 1;
  }
  return 0;
}
