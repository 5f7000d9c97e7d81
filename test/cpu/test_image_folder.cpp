// Tests of the ImageNet-style transforms and the image-folder sets. Resizing is checked against
// values worked out by hand from Pillow's algorithm (taps, weights, the 8-bit rounding after each
// pass), against an independent double-precision triangle filter, and for antialiasing; crops
// against torchvision's offsets (Python rounding, padding); RandomResizedCrop against a replay of
// its documented draws and its bounds. Image files are written here in their formats (PPM and BMP
// byte by byte, PNG and JPEG through stb_image_write), including broken ones, and read back
// through ImageFolderDataset and the Loader; the photographs of Debian's python3-skimage are read
// as a real-world folder, with pixel values taken from an independent PNG decoder.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/image_folder.h"
#include "data/image_transforms.h"
#include "data/loader.h"
#include "engine/random.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/temp_dir.h"

#if ND_WITH_STB
#include "stb_image_write.h"
#endif

namespace {

namespace fs = std::filesystem;
using nd::Generator;
using nd::data::CropBox;
using nd::data::RgbImage;
using nd::test::check_error_contains;
using Bytes = std::vector<uint8_t>;

struct TempDir : nd::test::TempDir {
  TempDir() : nd::test::TempDir("image_folder") {}
};

// Pixel (y, x, c) of pattern image `k`: changes with every coordinate, so a transposed, mirrored
// or channel-swapped image would not match.
uint8_t pattern(int64_t k, int64_t y, int64_t x, int64_t c) {
  return uint8_t((k * 53 + y * 37 + x * 11 + c * 71 + 5) % 251);
}

RgbImage pattern_image(int64_t k, int64_t height, int64_t width) {
  RgbImage im(height, width);
  for (int64_t y = 0; y < height; ++y)
    for (int64_t x = 0; x < width; ++x)
      for (int64_t c = 0; c < 3; ++c) im.at(y, x, c) = pattern(k, y, x, c);
  return im;
}

RgbImage random_image(int64_t height, int64_t width, uint64_t seed) {
  RgbImage im(height, width);
  Generator gen(seed);
  for (uint8_t& p : im.pixels) p = uint8_t(gen.below(256));
  return im;
}

// One row of single values per channel: rgb[c][x].
RgbImage row_image(const std::vector<std::vector<int>>& rgb) {
  RgbImage im(1, int64_t(rgb[0].size()));
  for (int64_t x = 0; x < im.width; ++x)
    for (int c = 0; c < 3; ++c) im.at(0, x, c) = uint8_t(rgb[size_t(c)][size_t(x)]);
  return im;
}

// An independent resize: the triangle filter of radius max(scale, 1) over every input sample,
// in double, both axes at once, no intermediate rounding.
std::vector<double> reference_resize(const RgbImage& in, int64_t out_h, int64_t out_w) {
  auto weights = [](int64_t in_size, int64_t out_size, int64_t i) {
    const double scale = double(in_size) / double(out_size);
    const double radius = std::max(scale, 1.0);
    const double center = (double(i) + 0.5) * scale;
    std::vector<double> w(static_cast<size_t>(in_size));
    double total = 0;
    for (int64_t j = 0; j < in_size; ++j) {
      w[size_t(j)] = std::max(0.0, 1.0 - std::abs(double(j) + 0.5 - center) / radius);
      total += w[size_t(j)];
    }
    for (double& v : w) v /= total;
    return w;
  };
  std::vector<double> out(size_t(out_h * out_w * 3));
  for (int64_t y = 0; y < out_h; ++y) {
    const std::vector<double> wy = weights(in.height, out_h, y);
    for (int64_t x = 0; x < out_w; ++x) {
      const std::vector<double> wx = weights(in.width, out_w, x);
      for (int64_t c = 0; c < 3; ++c) {
        double sum = 0;
        for (int64_t j = 0; j < in.height; ++j) {
          if (wy[size_t(j)] == 0) continue;
          for (int64_t i = 0; i < in.width; ++i)
            sum += wy[size_t(j)] * wx[size_t(i)] * double(in.at(j, i, c));
        }
        out[size_t((y * out_w + x) * 3 + c)] = sum;
      }
    }
  }
  return out;
}

// The (3, H, W) floats of an RgbImage as to_chw_float writes them without normalisation.
std::vector<float> chw(const RgbImage& im) {
  std::vector<float> out(size_t(im.height * im.width * 3));
  nd::data::to_chw_float(im, false, {}, {}, out.data());
  return out;
}

#if ND_WITH_STB
void write_bytes(const std::string& path, const Bytes& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Binary PPM (P6): "P6 <w> <h> 255\n" then RGB rows top to bottom.
void write_ppm(const std::string& path, const RgbImage& im) {
  const std::string header =
      "P6\n" + std::to_string(im.width) + " " + std::to_string(im.height) + "\n255\n";
  Bytes bytes(header.begin(), header.end());
  bytes.insert(bytes.end(), im.pixels.begin(), im.pixels.end());
  write_bytes(path, bytes);
}

void append_le(Bytes& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

// 24-bit BMP: 14-byte file header, 40-byte BITMAPINFOHEADER, rows bottom to top in B, G, R order,
// each padded to a multiple of 4 bytes.
void write_bmp(const std::string& path, const RgbImage& im) {
  const uint32_t row = uint32_t((im.width * 3 + 3) / 4 * 4);
  const uint32_t data = row * uint32_t(im.height);
  Bytes b = {'B', 'M'};
  append_le(b, 54 + data, 4);
  append_le(b, 0, 4);
  append_le(b, 54, 4);
  append_le(b, 40, 4);
  append_le(b, uint32_t(im.width), 4);
  append_le(b, uint32_t(im.height), 4);
  append_le(b, 1, 2);   // planes
  append_le(b, 24, 2);  // bits per pixel
  append_le(b, 0, 4);   // no compression
  append_le(b, data, 4);
  append_le(b, 2835, 4);
  append_le(b, 2835, 4);
  append_le(b, 0, 4);
  append_le(b, 0, 4);
  for (int64_t y = im.height - 1; y >= 0; --y) {
    for (int64_t x = 0; x < im.width; ++x)
      for (int c = 2; c >= 0; --c) b.push_back(im.at(y, x, c));
    for (uint32_t p = uint32_t(im.width * 3); p < row; ++p) b.push_back(0);
  }
  write_bytes(path, b);
}

// PNG of `channels` (1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) interleaved bytes.
void write_png(const std::string& path, int64_t height, int64_t width, int channels,
               const Bytes& pixels) {
  fs::create_directories(fs::path(path).parent_path());
  REQUIRE(stbi_write_png(path.c_str(), int(width), int(height), channels, pixels.data(),
                         int(width) * channels) != 0);
}

void write_jpeg(const std::string& path, const RgbImage& im, int quality = 95) {
  fs::create_directories(fs::path(path).parent_path());
  REQUIRE(stbi_write_jpg(path.c_str(), int(im.width), int(im.height), 3, im.pixels.data(),
                         quality) != 0);
}

void write_pattern_png(const std::string& path, int64_t k, int64_t height, int64_t width) {
  write_png(path, height, width, 3, pattern_image(k, height, width).pixels);
}

// The first `fraction` of a file's bytes.
void truncate_file(const std::string& path, double fraction) {
  Bytes b = read_bytes(path);
  REQUIRE(b.size() > 100);
  b.resize(size_t(double(b.size()) * fraction));
  write_bytes(path, b);
}

nd::data::ImageFolderOptions eval_options(int64_t size, int64_t resize, bool normalize = false) {
  nd::data::ImageFolderOptions options;
  options.size = size;
  options.resize = resize;
  options.normalize = normalize;
  return options;
}

std::vector<float> load_sample(const nd::data::Dataset& data, int64_t index, uint64_t seed) {
  std::vector<float> out(size_t(nd::shape_numel(data.sample_shape())));
  Generator gen(seed);
  data.load(index, gen, out.data());
  return out;
}

// Where Debian's python3-skimage keeps its sample photographs ($ND_SKIMAGE_DATA_DIR overrides).
std::string skimage_data_dir() {
  const char* env = std::getenv("ND_SKIMAGE_DATA_DIR");
  return env && *env ? env : "/usr/lib/python3/dist-packages/skimage/data";
}
#endif

}  // namespace

// ------------------------------------------------------------------------------ transforms

TEST_CASE("Resize keeps the aspect ratio with the shorter side given", "[data]") {
  CHECK(nd::data::resized_shorter_side(375, 500, 256).height == 256);
  CHECK(nd::data::resized_shorter_side(375, 500, 256).width == 341);  // floor(341.33)
  CHECK(nd::data::resized_shorter_side(500, 375, 256).height == 341);
  CHECK(nd::data::resized_shorter_side(500, 375, 256).width == 256);
  CHECK(nd::data::resized_shorter_side(80, 80, 20).height == 20);
  CHECK(nd::data::resized_shorter_side(80, 80, 20).width == 20);
  CHECK(nd::data::resized_shorter_side(3, 1000, 10).width == 3333);
  check_error_contains([] { nd::data::resized_shorter_side(0, 5, 3); }, {"must be positive"});
}

TEST_CASE("Bilinear resize matches hand-computed Pillow values", "[data]") {
  // Shrinking 4 -> 2 (scale 2): the filter's radius is 2 input pixels. Output 0 is centred at 1.0
  // and reads inputs 0..2 with triangle weights .75 .75 .25 (sum 1.75): (3a + 3b + c) / 7.
  // Output 1 (centre 3.0) reads inputs 1..3 with .25 .75 .75: (b + 3c + 3d) / 7.
  const RgbImage in = row_image({{0, 100, 200, 50}, {7, 7, 7, 7}, {255, 0, 255, 0}});
  const RgbImage down = nd::data::resize_bilinear(in, 1, 2);
  REQUIRE(down.height == 1);
  REQUIRE(down.width == 2);
  CHECK(int(down.at(0, 0, 0)) == 71);   // 500 / 7 = 71.4
  CHECK(int(down.at(0, 1, 0)) == 121);  // 850 / 7 = 121.4
  CHECK(int(down.at(0, 0, 1)) == 7);
  CHECK(int(down.at(0, 0, 2)) == 146);  // (765 + 255) / 7 = 145.7
  CHECK(int(down.at(0, 1, 2)) == 109);  // (0 + 765) / 7 = 109.3

  // Growing 2 -> 4 (scale 0.5, radius 1): a, .75a + .25b, .25a + .75b, b; ties round up.
  const RgbImage up = nd::data::resize_bilinear(row_image({{10, 20}, {0, 200}, {3, 3}}), 1, 4);
  const int want_r[4] = {10, 13, 18, 20};  // 12.5 -> 13, 17.5 -> 18
  const int want_g[4] = {0, 50, 150, 200};
  for (int x = 0; x < 4; ++x) {
    CHECK(int(up.at(0, x, 0)) == want_r[x]);
    CHECK(int(up.at(0, x, 1)) == want_g[x]);
    CHECK(int(up.at(0, x, 2)) == 3);
  }

  // 2x2 -> 1x1: Pillow rounds after the horizontal pass, so [[0, 1], [0, 0]] gives
  // round(round(0.5) / 2) = round(0.5) = 1 where the exact mean 0.25 would round to 0.
  RgbImage square(2, 2);
  square.at(0, 1, 0) = 1;
  square.at(1, 1, 1) = 9;
  square.at(0, 0, 1) = 4;
  const RgbImage one = nd::data::resize_bilinear(square, 1, 1);
  CHECK(int(one.at(0, 0, 0)) == 1);
  CHECK(int(one.at(0, 0, 1)) == 4);  // rows: (4 + 0) / 2 = 2, (0 + 9) / 2 = 4.5 -> 5; (2 + 5) / 2
  CHECK(int(one.at(0, 0, 2)) == 0);
}

TEST_CASE("Bilinear resize agrees with a double-precision triangle filter", "[data]") {
  struct Case {
    int64_t in_h, in_w, out_h, out_w;
  };
  for (const Case& c : {Case{37, 53, 16, 20}, Case{10, 7, 23, 31}, Case{40, 9, 13, 9},
                        Case{5, 64, 5, 11}, Case{31, 31, 31, 31}}) {
    const RgbImage in = random_image(c.in_h, c.in_w, uint64_t(c.in_h * 100 + c.in_w));
    const RgbImage got = nd::data::resize_bilinear(in, c.out_h, c.out_w);
    REQUIRE(got.height == c.out_h);
    REQUIRE(got.width == c.out_w);
    const std::vector<double> want = reference_resize(in, c.out_h, c.out_w);
    double max_diff = 0;
    for (size_t i = 0; i < want.size(); ++i)
      max_diff = std::max(max_diff, std::abs(double(got.pixels[i]) - want[i]));
    INFO(c.in_h << "x" << c.in_w << " -> " << c.out_h << "x" << c.out_w);
    CHECK(max_diff <= 1.0);  // two roundings to 8 bits
    if (c.in_h == c.out_h && c.in_w == c.out_w) CHECK(got.pixels == in.pixels);
  }
}

TEST_CASE("Shrinking antialiases, and a crop box resizes like its crop", "[data]") {
  // One-pixel stripes, 64 -> 16 wide: each output averages 4+ stripes instead of picking one.
  RgbImage stripes(4, 64);
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t x = 0; x < 64; ++x)
      for (int c = 0; c < 3; ++c) stripes.at(y, x, c) = x % 2 ? 255 : 0;
  const RgbImage small = nd::data::resize_bilinear(stripes, 4, 16);
  for (uint8_t p : small.pixels) {
    CHECK(int(p) >= 110);
    CHECK(int(p) <= 145);
  }
  const RgbImage in = random_image(30, 40, 5);
  const CropBox box{3, 7, 20, 25};
  CHECK(nd::data::resize_bilinear(in, box, 9, 11).pixels ==
        nd::data::resize_bilinear(nd::data::crop(in, box), 9, 11).pixels);
  check_error_contains(
      [&] {
        nd::data::resize_bilinear(in, CropBox{25, 0, 10, 5}, 4, 4);
      },
      {"not inside the 30x40 image"});
}

TEST_CASE("CenterCrop offsets follow torchvision", "[data]") {
  auto box = [](int64_t h, int64_t w, int64_t ch, int64_t cw) {
    const CropBox b = nd::data::center_crop_box(h, w, ch, cw);
    return std::vector<int64_t>{b.top, b.left, b.height, b.width};
  };
  CHECK(box(256, 341, 224, 224) == std::vector<int64_t>{16, 58, 224, 224});  // round(58.5) = 58
  CHECK(box(259, 257, 224, 224) == std::vector<int64_t>{18, 16, 224, 224});  // 17.5->18, 16.5->16
  CHECK(box(224, 224, 224, 224) == std::vector<int64_t>{0, 0, 224, 224});
  CHECK(box(5, 6, 8, 9) == std::vector<int64_t>{-1, -1, 8, 9});  // zero padding (3//2, 3//2)
  // The padded crop: the image sits at (1, 1), zeros around it.
  const RgbImage in = pattern_image(0, 5, 6);
  const RgbImage out = nd::data::crop(in, nd::data::center_crop_box(5, 6, 8, 9));
  for (int64_t y = 0; y < 8; ++y)
    for (int64_t x = 0; x < 9; ++x) {
      const bool inside = y >= 1 && y <= 5 && x >= 1 && x <= 6;
      CHECK(int(out.at(y, x, 2)) == (inside ? int(pattern(0, y - 1, x - 1, 2)) : 0));
    }
}

TEST_CASE("RandomResizedCrop replays its documented draws and stays in range", "[data]") {
  const nd::data::ResizedCropRange range;
  Generator gen(17);
  int full_scale_range_hits = 0;
  for (int i = 0; i < 500; ++i) {
    Generator replay = gen;
    const CropBox box = nd::data::draw_resized_crop(375, 500, range, gen);
    // Replay: attempts of (scale, log ratio) until one fits, then top and left.
    CropBox want;
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double area = 375.0 * 500.0 * replay.uniform(0.08, 1.0);
      const double r = std::exp(replay.uniform(std::log(0.75), std::log(4.0 / 3.0)));
      const int64_t w = std::llround(std::sqrt(area * r)), h = std::llround(std::sqrt(area / r));
      if (w <= 500 && h <= 375) {
        want = {int64_t(replay.below(uint64_t(375 - h + 1))),
                int64_t(replay.below(uint64_t(500 - w + 1))), h, w};
        break;
      }
    }
    CHECK(box.top == want.top);
    CHECK(box.left == want.left);
    CHECK(box.height == want.height);
    CHECK(box.width == want.width);
    CHECK(gen.state() == replay.state());
    REQUIRE(box.top >= 0);
    REQUIRE(box.left >= 0);
    REQUIRE(box.top + box.height <= 375);
    REQUIRE(box.left + box.width <= 500);
    const double scale = double(box.height * box.width) / (375.0 * 500.0);
    const double ratio = double(box.width) / double(box.height);
    CHECK(scale >= 0.07);
    CHECK(scale <= 1.0);
    CHECK(ratio >= 0.75 * 0.97);
    CHECK(ratio <= 4.0 / 3.0 * 1.03);
    if (scale > 0.5) ++full_scale_range_hits;
  }
  CHECK(full_scale_range_hits > 50);  // the scale is not stuck at small values

  // 100 tall and 10 wide: no crop of area >= 500 with ratio >= 3/4 fits, so all 10 attempts
  // (20 draws) fail and the fallback takes width 10, height round(10 / 0.75) = 13, centred.
  nd::data::ResizedCropRange big;
  big.scale_min = 0.5;
  Generator tall(3), replay(3);
  const CropBox fb = nd::data::draw_resized_crop(100, 10, big, tall);
  CHECK(fb.top == 43);
  CHECK(fb.left == 0);
  CHECK(fb.height == 13);
  CHECK(fb.width == 10);
  for (int i = 0; i < 20; ++i) replay.uniform();
  CHECK(tall.state() == replay.state());
}

TEST_CASE("Flip, ToTensor and Normalize", "[data]") {
  RgbImage im = pattern_image(2, 2, 3);
  const RgbImage before = im;
  nd::data::flip_horizontal(im);
  for (int64_t y = 0; y < 2; ++y)
    for (int64_t x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) CHECK(im.at(y, x, c) == before.at(y, 2 - x, c));
  std::vector<float> out(18);
  nd::data::to_chw_float(before, true, nd::data::kImageNetMean, nd::data::kImageNetStd, out.data());
  for (int c = 0; c < 3; ++c)
    for (int64_t y = 0; y < 2; ++y)
      for (int64_t x = 0; x < 3; ++x) {
        const float v = float(before.at(y, x, c)) / 255.0f;
        CHECK(out[size_t(c * 6 + y * 3 + x)] ==
              (v - nd::data::kImageNetMean[size_t(c)]) / nd::data::kImageNetStd[size_t(c)]);
      }
}

TEST_CASE("The train and eval recipes compose the transforms", "[data]") {
  const RgbImage in = random_image(60, 90, 8);
  // Train: the crop's draws, then the flip draw.
  const nd::data::ImageTransform train = nd::data::imagenet_train_transform(16);
  int flipped = 0;
  for (uint64_t seed = 0; seed < 12; ++seed) {
    Generator gen(seed), replay(seed);
    std::vector<float> got(3 * 16 * 16);
    nd::data::apply_image_transform(train, in, gen, got.data());
    const CropBox box = nd::data::draw_resized_crop(60, 90, train.range, replay);
    RgbImage want = nd::data::resize_bilinear(in, box, 16, 16);
    if (replay.below(2) == 1) {
      nd::data::flip_horizontal(want);
      ++flipped;
    }
    std::vector<float> want_f(got.size());
    nd::data::to_chw_float(want, true, nd::data::kImageNetMean, nd::data::kImageNetStd,
                           want_f.data());
    REQUIRE(got == want_f);
    CHECK(gen.state() == replay.state());
  }
  CHECK(flipped > 0);
  CHECK(flipped < 12);
  // Eval: resize the shorter side to 20 (60x90 -> 20x30), centre crop 16 (top 2, left 7): no
  // draws.
  nd::data::ImageTransform eval = nd::data::imagenet_eval_transform(16, 20);
  eval.normalize = false;
  Generator gen(1);
  const auto state = gen.state();
  std::vector<float> got(3 * 16 * 16);
  nd::data::apply_image_transform(eval, in, gen, got.data());
  CHECK(gen.state() == state);
  const RgbImage scaled = nd::data::resize_bilinear(in, 20, 30);
  CHECK(got == chw(nd::data::crop(scaled, CropBox{2, 7, 16, 16})));
  nd::data::ImageTransform bad = eval;
  bad.size = 0;
  check_error_contains([&] { nd::data::check_image_transform(bad); }, {"output size"});
  bad = train;
  bad.range.scale_min = 0;
  check_error_contains([&] { nd::data::check_image_transform(bad); }, {"scale range"});
}

// ------------------------------------------------------------------------------ image folders

#if !ND_WITH_STB
TEST_CASE("Without stb_image, image folders say to install libstb-dev", "[data]") {
  CHECK_FALSE(nd::data::image_decoding_available());
  check_error_contains([] { nd::data::ImageFolderDataset("/tmp", nd::data::ImageFolderOptions{}); },
                       {"libstb-dev"});
}
#else

TEST_CASE("Image files of every format decode to RGB", "[data]") {
  TempDir dir;
  const RgbImage im = pattern_image(1, 5, 7);  // odd width: BMP rows are padded
  write_ppm(dir.file("a.ppm"), im);
  write_bmp(dir.file("a.bmp"), im);
  write_png(dir.file("a.png"), 5, 7, 3, im.pixels);
  CHECK(nd::data::decode_image_file(dir.file("a.ppm")).pixels == im.pixels);
  CHECK(nd::data::decode_image_file(dir.file("a.bmp")).pixels == im.pixels);
  const RgbImage png = nd::data::decode_image_file(dir.file("a.png"));
  CHECK(png.height == 5);
  CHECK(png.width == 7);
  CHECK(png.pixels == im.pixels);

  // Gray and gray + alpha replicate the gray value; RGBA drops alpha.
  Bytes gray(35), gray_alpha(70), rgba(140);
  for (int64_t i = 0; i < 35; ++i) {
    gray[size_t(i)] = uint8_t(i * 7);
    gray_alpha[size_t(2 * i)] = uint8_t(i * 5);
    gray_alpha[size_t(2 * i + 1)] = uint8_t(i);  // alpha varies
    for (int c = 0; c < 3; ++c) rgba[size_t(4 * i + c)] = im.pixels[size_t(3 * i + c)];
    rgba[size_t(4 * i + 3)] = uint8_t(255 - i);
  }
  write_png(dir.file("g.png"), 5, 7, 1, gray);
  write_png(dir.file("ga.png"), 5, 7, 2, gray_alpha);
  write_png(dir.file("rgba.png"), 5, 7, 4, rgba);
  const RgbImage g = nd::data::decode_image_file(dir.file("g.png"));
  const RgbImage ga = nd::data::decode_image_file(dir.file("ga.png"));
  for (int64_t i = 0; i < 35; ++i)
    for (int c = 0; c < 3; ++c) {
      CHECK(g.pixels[size_t(3 * i + c)] == gray[size_t(i)]);
      CHECK(ga.pixels[size_t(3 * i + c)] == gray_alpha[size_t(2 * i)]);
    }
  CHECK(nd::data::decode_image_file(dir.file("rgba.png")).pixels == im.pixels);

  // JPEG is lossy: a smooth image comes back close.
  RgbImage smooth(16, 24);
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 24; ++x)
      for (int c = 0; c < 3; ++c) smooth.at(y, x, c) = uint8_t(60 + 40 * c + 2 * x + y);
  write_jpeg(dir.file("s.jpg"), smooth);
  const RgbImage jpg = nd::data::decode_image_file(dir.file("s.jpg"));
  REQUIRE(jpg.pixels.size() == smooth.pixels.size());
  for (size_t i = 0; i < jpg.pixels.size(); ++i)
    CHECK(std::abs(int(jpg.pixels[i]) - int(smooth.pixels[i])) <= 6);

  // A one-channel JPEG comes back as grey RGB (equal channels, close to the original).
  Bytes gray_smooth(16 * 24);
  for (int64_t y = 0; y < 16; ++y)
    for (int64_t x = 0; x < 24; ++x) gray_smooth[size_t(y * 24 + x)] = uint8_t(50 + 3 * x + 2 * y);
  REQUIRE(stbi_write_jpg(dir.file("g.jpg").c_str(), 24, 16, 1, gray_smooth.data(), 95) != 0);
  const RgbImage gjpg = nd::data::decode_image_file(dir.file("g.jpg"));
  REQUIRE(gjpg.pixels.size() == size_t(16 * 24 * 3));
  for (size_t i = 0; i < gray_smooth.size(); ++i) {
    CHECK(gjpg.pixels[3 * i] == gjpg.pixels[3 * i + 1]);
    CHECK(gjpg.pixels[3 * i] == gjpg.pixels[3 * i + 2]);
    CHECK(std::abs(int(gjpg.pixels[3 * i]) - int(gray_smooth[i])) <= 6);
  }
}

TEST_CASE("Broken image files give errors naming the file", "[data]") {
  TempDir dir;
  write_pattern_png(dir.file("cut.png"), 0, 40, 50);
  truncate_file(dir.file("cut.png"), 0.6);
  write_jpeg(dir.file("cut.jpg"), random_image(40, 50, 1));
  truncate_file(dir.file("cut.jpg"), 0.5);
  // Formats of uncompressed pixels, cut short: stb_image would fill the missing rows with zeros.
  write_bmp(dir.file("cut.bmp"), random_image(40, 50, 2));
  truncate_file(dir.file("cut.bmp"), 0.6);
  write_ppm(dir.file("cut.ppm"), random_image(40, 50, 3));
  truncate_file(dir.file("cut.ppm"), 0.6);
  write_bytes(dir.file("text.jpg"), Bytes{'h', 'e', 'l', 'l', 'o', '\n'});
  write_bytes(dir.file("tga.png"),
              Bytes{0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 24, 0, 1, 2, 3});
  write_bytes(dir.file("empty.png"), Bytes{});
  check_error_contains([&] { nd::data::decode_image_file(dir.file("cut.png")); },
                       {"cannot decode image", dir.file("cut.png")});
  check_error_contains([&] { nd::data::decode_image_file(dir.file("cut.jpg")); },
                       {"cannot decode image", dir.file("cut.jpg")});
  check_error_contains([&] { nd::data::decode_image_file(dir.file("text.jpg")); },
                       {"cannot decode image", dir.file("text.jpg")});
  for (const char* name : {"cut.bmp", "cut.ppm"})
    check_error_contains([&] { nd::data::decode_image_file(dir.file(name)); },
                         {"cannot decode image", dir.file(name), "truncated"});
  // A 1x1 TGA, which stb_image could decode, is not one of the formats read.
  check_error_contains([&] { nd::data::decode_image_file(dir.file("tga.png")); },
                       {dir.file("tga.png"), "not an image in a known format", "PNG, JPEG"});
  check_error_contains([&] { nd::data::decode_image_file(dir.file("empty.png")); },
                       {dir.file("empty.png"), "empty"});
  check_error_contains([&] { nd::data::decode_image_file(dir.file("missing.png")); },
                       {"cannot read image", dir.file("missing.png"), "No such file"});
}

TEST_CASE("ImageFolderDataset lists classes and files in torchvision's order", "[data]") {
  TempDir dir;
  const std::string root = dir.file("set");
  // Classes made out of order; extensions in mixed case, a nested folder, files that do not
  // count.
  write_pattern_png(root + "/zebra/b.png", 0, 6, 8);
  write_ppm(root + "/zebra/a.PPM", pattern_image(1, 6, 8));
  write_pattern_png(root + "/cat/x.Png", 2, 9, 6);
  write_bmp(root + "/cat/sub/0.bmp", pattern_image(3, 6, 6));
  write_jpeg(root + "/cat/c.JPEG", pattern_image(4, 8, 8));
  write_jpeg(root + "/dog/1.jpg", pattern_image(5, 8, 8));
  write_bytes(root + "/dog/notes.txt", Bytes{'x'});
  write_bytes(root + "/readme.md", Bytes{'x'});
  nd::data::ImageFolderDataset data(root, eval_options(6, 6));
  CHECK(data.classes() == std::vector<std::string>{"cat", "dog", "zebra"});
  CHECK(data.num_classes() == 3);
  REQUIRE(data.size() == 6);
  // By folder, then name: cat's own files before cat/sub.
  const std::vector<std::string> files = {"cat/c.JPEG", "cat/x.Png",   "cat/sub/0.bmp",
                                          "dog/1.jpg",  "zebra/a.PPM", "zebra/b.png"};
  const std::vector<int64_t> labels = {0, 0, 0, 1, 2, 2};
  for (int64_t i = 0; i < 6; ++i) {
    CHECK(fs::path(data.path(i)) == fs::path(root) / files[size_t(i)]);
    CHECK(data.label(i) == labels[size_t(i)]);
  }
  CHECK(data.sample_shape() == nd::Shape{3, 6, 6});
  CHECK(data.name() == root);
  CHECK(data.skipped().empty());
  // zebra/a.PPM is 6x8: the shorter side is already 6, the centre crop starts at column 1.
  const RgbImage a = pattern_image(1, 6, 8);
  CHECK(load_sample(data, 4, 0) == chw(nd::data::crop(a, CropBox{0, 1, 6, 6})));
  check_error_contains([&] { data.label(6); }, {"sample 6 is outside 0..5"});
}

TEST_CASE("ImageFolderDataset stops on missing, empty and broken folders and files", "[data]") {
  TempDir dir;
  const auto options = eval_options(4, 4);
  check_error_contains([&] { nd::data::ImageFolderDataset(dir.file("nowhere"), options); },
                       {dir.file("nowhere"), "does not exist"});
  write_bytes(dir.file("file"), Bytes{'x'});
  check_error_contains([&] { nd::data::ImageFolderDataset(dir.file("file"), options); },
                       {dir.file("file"), "is not a directory"});
  write_bytes(dir.file("flat/a.png"), Bytes{'x'});
  check_error_contains([&] { nd::data::ImageFolderDataset(dir.file("flat"), options); },
                       {dir.file("flat"), "has no class folders"});
  write_pattern_png(dir.file("holes/a/0.png"), 0, 4, 4);
  fs::create_directories(dir.file("holes/b"));
  check_error_contains([&] { nd::data::ImageFolderDataset(dir.file("holes"), options); },
                       {"class folder", dir.file("holes/b"), "has no image files"});
  write_bytes(dir.file("holes/b/readme.txt"), Bytes{'x'});
  check_error_contains([&] { nd::data::ImageFolderDataset(dir.file("holes"), options); },
                       {dir.file("holes/b"), "has no image files"});
  auto bad = options;
  bad.resize = 0;
  check_error_contains([&] { nd::data::ImageFolderDataset(dir.file("holes"), bad); },
                       {"resize must be positive"});

  // Bad files are found when loaded (no skip_bad): the error names the file, also through the
  // loader's workers.
  const std::string root = dir.file("broken");
  write_pattern_png(root + "/a/0.png", 0, 8, 8);
  write_pattern_png(root + "/a/1.png", 1, 40, 50);
  truncate_file(root + "/a/1.png", 0.5);
  write_bytes(root + "/b/2.jpg", Bytes{'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  auto data = std::make_shared<nd::data::ImageFolderDataset>(root, options);
  REQUIRE(data->size() == 3);
  CHECK(load_sample(*data, 0, 1).size() == 48);
  check_error_contains([&] { load_sample(*data, 1, 1); }, {"cannot decode image", "a/1.png"});
  check_error_contains([&] { load_sample(*data, 2, 1); }, {"cannot decode image", "b/2.jpg"});
  nd::data::LoaderOptions lo;
  lo.batch_size = 1;
  lo.workers = 2;
  nd::data::Loader loader(data, lo);
  loader.start({0, 2, 1}, 4);
  nd::data::Batch b;
  REQUIRE(loader.next(b));
  check_error_contains([&] { loader.next(b); }, {"cannot decode image", "b/2.jpg"});
}

TEST_CASE("ImageFolderDataset skip_bad leaves out or replaces bad files and counts them",
          "[data]") {
  TempDir dir;
  const std::string root = dir.file("set");
  write_pattern_png(root + "/a/good0.png", 0, 8, 8);
  write_pattern_png(root + "/a/good1.png", 1, 8, 8);
  write_bytes(root + "/a/text.jpg", Bytes{'h', 'e', 'l', 'l', 'o'});  // no image header
  write_pattern_png(root + "/a/cut.png", 2, 40, 50);                  // header fine, data cut
  truncate_file(root + "/a/cut.png", 0.5);
  write_pattern_png(root + "/b/good.png", 3, 8, 8);
  write_jpeg(root + "/b/cut.jpg", random_image(40, 50, 2));
  truncate_file(root + "/b/cut.jpg", 0.5);
  auto options = eval_options(8, 8);
  options.skip_bad = true;
  nd::data::ImageFolderDataset data(root, options);
  REQUIRE(data.skipped().size() == 1);
  CHECK(fs::path(data.skipped()[0].path) == fs::path(root) / "a/text.jpg");
  CHECK_FALSE(data.skipped()[0].reason.empty());
  // a: cut.png, good0.png, good1.png; b: cut.jpg, good.png.
  REQUIRE(data.size() == 5);
  CHECK(data.load_failures() == 0);
  // cut.png is replaced by the next file of its class, b/cut.jpg by the first of b (cyclic).
  CHECK(load_sample(data, 0, 9) == load_sample(data, 1, 9));
  CHECK(data.load_failures() == 1);
  CHECK(load_sample(data, 3, 9) == load_sample(data, 4, 9));
  CHECK(data.load_failures() == 2);
  const std::vector<nd::data::BadImage> failed = data.failed_files();
  REQUIRE(failed.size() == 2);
  CHECK(fs::path(failed[0].path) == fs::path(root) / "a/cut.png");
  CHECK(failed[1].reason.find("cannot decode image") != std::string::npos);

  // A class whose only file fails to decode has nothing to substitute.
  write_pattern_png(dir.file("lonely/a/ok.png"), 0, 8, 8);
  write_pattern_png(dir.file("lonely/b/cut.png"), 1, 40, 50);
  truncate_file(dir.file("lonely/b/cut.png"), 0.5);
  nd::data::ImageFolderDataset lonely(dir.file("lonely"), options);
  check_error_contains([&] { load_sample(lonely, 1, 0); },
                       {"b/cut.png", "nor could any of the 0 next files of class 'b'"});
  // A class whose files all lack a readable header is an error at construction.
  write_bytes(dir.file("lonely/c/x.png"), Bytes{'x', 'y'});
  check_error_contains([&] { nd::data::ImageFolderDataset(dir.file("lonely"), options); },
                       {dir.file("lonely/c"), "that stb_image can read"});
}

TEST_CASE("ImageFolderDataset through the Loader is the same for any worker count", "[data]") {
  TempDir dir;
  const std::string root = dir.file("set");
  for (int64_t i = 0; i < 10; ++i)
    write_pattern_png(root + "/class" + std::to_string(i % 2) + "/" + std::to_string(i) + ".png", i,
                      20 + 3 * i, 30 - i);
  nd::data::ImageFolderOptions options;
  options.train = true;
  options.size = 12;
  auto data = std::make_shared<nd::data::ImageFolderDataset>(root, options);
  Generator shuffle(4);
  const std::vector<int64_t> order = shuffle.permutation(10);
  std::vector<std::vector<float>> images;
  for (int workers : {0, 2}) {
    nd::data::LoaderOptions lo;
    lo.batch_size = 4;
    lo.workers = workers;
    nd::data::Loader loader(data, lo);
    loader.start(order, 21);
    std::vector<float> all;
    std::vector<int64_t> labels;
    nd::data::Batch b;
    while (loader.next(b)) {
      REQUIRE(b.images.shape()[1] == 3);
      REQUIRE(b.images.shape()[2] == 12);
      const std::vector<float> px = b.images.to_vector<float>();
      all.insert(all.end(), px.begin(), px.end());
      for (int64_t l : b.labels.to_vector<int64_t>()) labels.push_back(l);
    }
    REQUIRE(labels.size() == 10);
    for (size_t i = 0; i < 10; ++i) CHECK(labels[i] == data->label(order[i]));
    images.push_back(all);
  }
  REQUIRE(images[0] == images[1]);
  for (int64_t pos : {0, 5, 9}) {
    const std::vector<float> want =
        load_sample(*data, order[size_t(pos)], nd::data::sample_seed(21, pos));
    CHECK(std::equal(want.begin(), want.end(),
                     images[0].begin() + std::ptrdiff_t(pos * 3 * 12 * 12)));
  }
}

TEST_CASE("Photographs of python3-skimage as an image folder", "[data]") {
  const fs::path photos = skimage_data_dir();
  const std::vector<std::pair<std::string, std::string>> layout = {
      {"color", "astronaut.png"}, {"color", "chelsea.png"}, {"color", "coffee.png"},
      {"gray", "camera.png"},     {"gray", "moon.png"},     {"other", "hubble_deep_field.jpg"},
      {"other", "logo.png"},      {"other", "rocket.jpg"}};
  for (const auto& [cls, file] : layout) {
    INFO("install python3-skimage (or set ND_SKIMAGE_DATA_DIR): missing " << (photos / file));
    REQUIRE(fs::exists(photos / file));
  }
  // Pixels read by an independent PNG decoder (zlib and the PNG filters in Python).
  struct Pixel {
    const char* file;
    int64_t height, width, y, x;
    int r, g, b;
  };
  for (const Pixel& p : {Pixel{"astronaut.png", 512, 512, 0, 0, 154, 147, 151},
                         Pixel{"astronaut.png", 512, 512, 100, 200, 81, 57, 17},
                         Pixel{"astronaut.png", 512, 512, 256, 300, 53, 21, 7},
                         Pixel{"chelsea.png", 300, 451, 150, 225, 190, 150, 124},
                         Pixel{"coffee.png", 400, 600, 399, 599, 143, 60, 29},
                         Pixel{"camera.png", 512, 512, 200, 300, 36, 36, 36},
                         Pixel{"logo.png", 500, 500, 250, 250, 255, 159, 83}}) {
    const RgbImage im = nd::data::decode_image_file((photos / p.file).string());
    INFO(p.file << " at (" << p.y << ", " << p.x << ")");
    CHECK(im.height == p.height);
    CHECK(im.width == p.width);
    CHECK(int(im.at(p.y, p.x, 0)) == p.r);
    CHECK(int(im.at(p.y, p.x, 1)) == p.g);
    CHECK(int(im.at(p.y, p.x, 2)) == p.b);
  }
  // Shrinking a photo keeps its mean colour and follows the exact filter.
  const RgbImage astronaut = nd::data::decode_image_file((photos / "astronaut.png").string());
  const RgbImage small = nd::data::resize_bilinear(astronaut, 73, 73);
  const double mean[3] = {141.5625, 105.7594, 96.4751};  // of the 512x512 original
  for (int c = 0; c < 3; ++c) {
    double sum = 0;
    for (int64_t i = 0; i < 73 * 73; ++i) sum += small.pixels[size_t(i * 3 + c)];
    CHECK(std::abs(sum / (73 * 73) - mean[c]) < 1.0);
  }
  const RgbImage chelsea = nd::data::decode_image_file((photos / "chelsea.png").string());
  const RgbImage cat = nd::data::resize_bilinear(chelsea, 64, 96);
  const std::vector<double> want = reference_resize(chelsea, 64, 96);
  for (size_t i = 0; i < want.size(); ++i) REQUIRE(std::abs(double(cat.pixels[i]) - want[i]) <= 1);

  // The folder: symlinks to the photos in three classes.
  TempDir dir;
  const fs::path root = dir.file("photos");
  for (const auto& [cls, file] : layout) {
    fs::create_directories(root / cls);
    fs::create_symlink(photos / file, root / cls / file);
  }
  auto eval = std::make_shared<nd::data::ImageFolderDataset>(root.string(), eval_options(64, 73));
  REQUIRE(eval->size() == 8);
  CHECK(eval->classes() == std::vector<std::string>{"color", "gray", "other"});
  for (int64_t i = 0; i < 8; ++i) {
    const std::vector<float> px = load_sample(*eval, i, 0);
    REQUIRE(px.size() == 3 * 64 * 64);
    for (float v : px) REQUIRE((v >= 0.0f && v <= 1.0f));
    if (eval->label(i) == 1)  // gray photos: R = G = B
      for (size_t j = 0; j < 64 * 64; ++j) {
        REQUIRE(px[j] == px[j + 64 * 64]);
        REQUIRE(px[j] == px[j + 2 * 64 * 64]);
      }
  }
  nd::data::ImageFolderOptions train;
  train.train = true;
  train.size = 64;
  auto data = std::make_shared<nd::data::ImageFolderDataset>(root.string(), train);
  nd::data::LoaderOptions lo;
  lo.batch_size = 3;
  lo.workers = 2;
  nd::data::Loader loader(data, lo);
  Generator shuffle(2);
  const std::vector<int64_t> order = shuffle.permutation(8);
  std::vector<std::vector<float>> epochs;
  for (uint64_t seed : {1u, 2u}) {
    loader.start(order, seed);
    nd::data::Batch b;
    std::vector<float> all;
    int64_t seen = 0;
    while (loader.next(b)) {
      for (int64_t l : b.labels.to_vector<int64_t>())
        CHECK(l == data->label(order[size_t(seen++)]));
      for (float v : b.images.to_vector<float>()) REQUIRE(std::isfinite(v));
      const std::vector<float> px = b.images.to_vector<float>();
      all.insert(all.end(), px.begin(), px.end());
    }
    CHECK(seen == 8);
    epochs.push_back(all);
  }
  CHECK(epochs[0] != epochs[1]);  // other crops and flips
}
#endif
