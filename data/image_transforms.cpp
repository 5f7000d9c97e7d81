// ImageNet-style transforms (see image_transforms.h): Pillow's fixed-point bilinear resampling,
// torchvision's crop geometry and its RandomResizedCrop parameter search.
#include "data/image_transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace nd::data {

namespace {

// Pillow's PRECISION_BITS for 8-bit images: coefficients are fixed point with 22 fraction bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

// Python's round() of a float: to nearest, ties to even.
int64_t round_half_even(double x) {
  const double lower = std::floor(x);
  const double diff = x - lower;
  int64_t r = int64_t(lower);
  if (diff > 0.5 || (diff == 0.5 && (r % 2 != 0))) ++r;
  return r;
}

// Pillow's clip8: the fixed-point sum (with its rounding half already added) to 0..255.
uint8_t clip8(int32_t sum) {
  if (sum >= (1 << kPrecisionBits << 8)) return 255;
  if (sum <= 0) return 0;
  return uint8_t(sum >> kPrecisionBits);
}

// The taps of one resampling pass from in_size to out_size samples (Pillow's precompute_coeffs
// with the bilinear filter, then normalize_coeffs_8bpc): output sample i reads inputs
// first[i] .. first[i] + count[i] - 1 with weights[i * ksize + k].
struct Taps {
  int64_t ksize = 0;
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;
};

double triangle(double x) {
  x = std::abs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Taps of output samples [out_begin, out_end) of the pass (indexed from 0): the same numbers as
// the whole pass computes for them.
Taps bilinear_taps(int64_t in_size, int64_t out_size, int64_t out_begin, int64_t out_end) {
  const double scale = double(in_size) / double(out_size);
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;  // the triangle's radius, widened when shrinking
  Taps taps;
  taps.ksize = int64_t(std::ceil(support)) * 2 + 1;
  const int64_t count = out_end - out_begin;
  taps.first.resize(size_t(count));
  taps.count.resize(size_t(count));
  taps.weights.assign(size_t(count * taps.ksize), 0);
  const double inverse_scale = 1.0 / filter_scale;
  std::vector<double> k(size_t(taps.ksize));
  for (int64_t i = out_begin; i < out_end; ++i) {
    const double center = (double(i) + 0.5) * scale;
    // C casts truncate towards zero, as in Pillow.
    const int64_t xmin = std::max<int64_t>(int64_t(center - support + 0.5), 0);
    const int64_t xmax = std::min<int64_t>(int64_t(center + support + 0.5), in_size) - xmin;
    double total = 0.0;
    for (int64_t x = 0; x < xmax; ++x) {
      k[size_t(x)] = triangle((double(x + xmin) - center + 0.5) * inverse_scale);
      total += k[size_t(x)];
    }
    for (int64_t x = 0; x < xmax; ++x) {
      const double w = total != 0.0 ? k[size_t(x)] / total : k[size_t(x)];
      const double fixed = w * double(1 << kPrecisionBits);
      taps.weights[size_t((i - out_begin) * taps.ksize + x)] =
          int32_t(w < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    taps.first[size_t(i - out_begin)] = xmin;
    taps.count[size_t(i - out_begin)] = xmax;
  }
  return taps;
}

void check_box_inside(const RgbImage& in, const CropBox& box, const char* what) {
  ND_CHECK(box.height > 0 && box.width > 0 && box.top >= 0 && box.left >= 0 &&
               box.top + box.height <= in.height && box.left + box.width <= in.width,
           what, ": box (top ", box.top, ", left ", box.left, ", ", box.height, "x", box.width,
           ") is not inside the ", in.height, "x", in.width, " image");
}

}  // namespace

ImageSize resized_shorter_side(int64_t height, int64_t width, int64_t shorter) {
  ND_CHECK(height > 0 && width > 0 && shorter > 0, "resize: image ", height, "x", width,
           " to shorter side ", shorter, "; all must be positive");
  if (width <= height) return {shorter * height / width, shorter};
  return {shorter, shorter * width / height};
}

namespace {

// Rows and columns `win` (inside out_height x out_width) of box resized to out_height x out_width:
// both passes run only over the output samples of the window and the input rows they read.
RgbImage resize_window(const RgbImage& in, const CropBox& box, int64_t out_height,
                       int64_t out_width, const CropBox& win) {
  const bool horizontal = out_width != box.width;
  const bool vertical = out_height != box.height;
  Taps vertical_taps;
  // Box rows [row_begin, row_end) feed the vertical pass; only they go through the first pass.
  int64_t row_begin = win.top, row_end = win.top + win.height;
  if (vertical) {
    vertical_taps = bilinear_taps(box.height, out_height, win.top, win.top + win.height);
    row_begin = vertical_taps.first.front();
    row_end = vertical_taps.first.back() + vertical_taps.count.back();
  }

  // Horizontal pass: (row_end - row_begin) x win.width.
  RgbImage wide(row_end - row_begin, win.width);
  const int64_t row_bytes = win.width * 3;
  if (horizontal) {
    const Taps taps = bilinear_taps(box.width, out_width, win.left, win.left + win.width);
    for (int64_t r = 0; r < wide.height; ++r) {
      const uint8_t* src =
          &in.pixels[size_t(((box.top + row_begin + r) * in.width + box.left) * 3)];
      uint8_t* dst = &wide.pixels[size_t(r * row_bytes)];
      for (int64_t x = 0; x < win.width; ++x) {
        const int32_t* w = &taps.weights[size_t(x * taps.ksize)];
        const uint8_t* s = src + taps.first[size_t(x)] * 3;
        int32_t sum[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1),
                          1 << (kPrecisionBits - 1)};
        for (int64_t k = 0; k < taps.count[size_t(x)]; ++k)
          for (int c = 0; c < 3; ++c) sum[c] += int32_t(s[k * 3 + c]) * w[k];
        for (int c = 0; c < 3; ++c) dst[x * 3 + c] = clip8(sum[c]);
      }
    }
  } else {
    for (int64_t r = 0; r < wide.height; ++r)
      std::memcpy(
          &wide.pixels[size_t(r * row_bytes)],
          &in.pixels[size_t(((box.top + row_begin + r) * in.width + box.left + win.left) * 3)],
          size_t(row_bytes));
  }
  if (!vertical) return wide;

  // Vertical pass: win.height x win.width.
  RgbImage out(win.height, win.width);
  std::vector<int32_t> sum(static_cast<size_t>(row_bytes));
  for (int64_t y = 0; y < win.height; ++y) {
    std::fill(sum.begin(), sum.end(), 1 << (kPrecisionBits - 1));
    const int32_t* w = &vertical_taps.weights[size_t(y * vertical_taps.ksize)];
    const int64_t first = vertical_taps.first[size_t(y)] - row_begin;
    for (int64_t k = 0; k < vertical_taps.count[size_t(y)]; ++k) {
      const uint8_t* src = &wide.pixels[size_t((first + k) * row_bytes)];
      for (int64_t j = 0; j < row_bytes; ++j) sum[size_t(j)] += int32_t(src[j]) * w[k];
    }
    uint8_t* dst = &out.pixels[size_t(y * row_bytes)];
    for (int64_t j = 0; j < row_bytes; ++j) dst[j] = clip8(sum[size_t(j)]);
  }
  return out;
}

}  // namespace

RgbImage resize_bilinear(const RgbImage& in, const CropBox& box, int64_t out_height,
                         int64_t out_width) {
  check_box_inside(in, box, "resize");
  ND_CHECK(out_height > 0 && out_width > 0, "resize: output size ", out_height, "x", out_width,
           " must be positive");
  return resize_window(in, box, out_height, out_width, CropBox{0, 0, out_height, out_width});
}

RgbImage resize_then_crop(const RgbImage& in, int64_t out_height, int64_t out_width,
                          const CropBox& crop_box) {
  const CropBox all{0, 0, in.height, in.width};
  check_box_inside(in, all, "resize");
  ND_CHECK(out_height > 0 && out_width > 0, "resize: output size ", out_height, "x", out_width,
           " must be positive");
  ND_CHECK(crop_box.height > 0 && crop_box.width > 0, "crop: empty box ", crop_box.height, "x",
           crop_box.width);
  // The part of the crop over the resized image; the rest stays 0, as crop() leaves it.
  const int64_t top = std::clamp<int64_t>(crop_box.top, 0, out_height);
  const int64_t bottom = std::clamp<int64_t>(crop_box.top + crop_box.height, top, out_height);
  const int64_t left = std::clamp<int64_t>(crop_box.left, 0, out_width);
  const int64_t right = std::clamp<int64_t>(crop_box.left + crop_box.width, left, out_width);
  if (top == crop_box.top && left == crop_box.left && bottom - top == crop_box.height &&
      right - left == crop_box.width)
    return resize_window(in, all, out_height, out_width, crop_box);
  RgbImage out(crop_box.height, crop_box.width);
  if (top == bottom || left == right) return out;
  const RgbImage part =
      resize_window(in, all, out_height, out_width, CropBox{top, left, bottom - top, right - left});
  for (int64_t y = 0; y < part.height; ++y)
    std::memcpy(
        &out.pixels[size_t(((top - crop_box.top + y) * crop_box.width + left - crop_box.left) * 3)],
        &part.pixels[size_t(y * part.width * 3)], size_t(part.width * 3));
  return out;
}

RgbImage resize_bilinear(const RgbImage& in, int64_t out_height, int64_t out_width) {
  return resize_bilinear(in, CropBox{0, 0, in.height, in.width}, out_height, out_width);
}

RgbImage crop(const RgbImage& in, const CropBox& box) {
  ND_CHECK(box.height > 0 && box.width > 0, "crop: empty box ", box.height, "x", box.width);
  RgbImage out(box.height, box.width);
  // Output columns [x_begin, x_end) lie over the image; the rest stays 0.
  const int64_t x_begin = std::clamp<int64_t>(-box.left, 0, box.width);
  const int64_t x_end = std::clamp<int64_t>(in.width - box.left, x_begin, box.width);
  for (int64_t y = 0; y < box.height; ++y) {
    const int64_t source_y = box.top + y;
    if (source_y < 0 || source_y >= in.height || x_begin == x_end) continue;
    std::memcpy(&out.pixels[size_t((y * box.width + x_begin) * 3)],
                &in.pixels[size_t((source_y * in.width + box.left + x_begin) * 3)],
                size_t((x_end - x_begin) * 3));
  }
  return out;
}

CropBox center_crop_box(int64_t height, int64_t width, int64_t crop_height, int64_t crop_width) {
  ND_CHECK(height > 0 && width > 0 && crop_height > 0 && crop_width > 0, "center crop: image ",
           height, "x", width, ", crop ", crop_height, "x", crop_width,
           "; all sizes must be positive");
  // One axis: a negative offset is torchvision's zero padding of (crop - size) // 2 before.
  auto offset = [](int64_t size, int64_t crop_size) {
    if (crop_size > size) return -((crop_size - size) / 2);
    return round_half_even(double(size - crop_size) / 2.0);
  };
  return {offset(height, crop_height), offset(width, crop_width), crop_height, crop_width};
}

CropBox draw_resized_crop(int64_t height, int64_t width, const ResizedCropRange& range,
                          Generator& gen) {
  ND_CHECK(height > 0 && width > 0, "random resized crop: empty image ", height, "x", width);
  const double area = double(height) * double(width);
  const double log_ratio_min = std::log(range.ratio_min);
  const double log_ratio_max = std::log(range.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * gen.uniform(range.scale_min, range.scale_max);
    const double aspect = std::exp(gen.uniform(log_ratio_min, log_ratio_max));
    const int64_t w = round_half_even(std::sqrt(target_area * aspect));
    const int64_t h = round_half_even(std::sqrt(target_area / aspect));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int64_t top = int64_t(gen.below(uint64_t(height - h + 1)));
      const int64_t left = int64_t(gen.below(uint64_t(width - w + 1)));
      return {top, left, h, w};
    }
  }
  // The central crop of the whole image, its aspect ratio clamped to the range.
  const double in_ratio = double(width) / double(height);
  int64_t w = width, h = height;
  if (in_ratio < range.ratio_min) {
    h = round_half_even(double(w) / range.ratio_min);
  } else if (in_ratio > range.ratio_max) {
    w = round_half_even(double(h) * range.ratio_max);
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

void flip_horizontal(RgbImage& image) {
  for (int64_t y = 0; y < image.height; ++y) {
    uint8_t* row = &image.pixels[size_t(y * image.width * 3)];
    for (int64_t a = 0, b = image.width - 1; a < b; ++a, --b)
      for (int c = 0; c < 3; ++c) std::swap(row[a * 3 + c], row[b * 3 + c]);
  }
}

void to_chw_float(const RgbImage& image, bool normalize, const std::array<float, 3>& mean,
                  const std::array<float, 3>& stddev, float* out) {
  const int64_t plane = image.height * image.width;
  for (int64_t c = 0; c < 3; ++c) {
    float* dst = out + c * plane;
    const uint8_t* src = image.pixels.data() + c;
    for (int64_t j = 0; j < plane; ++j) dst[j] = float(src[j * 3]) / 255.0f;
    if (!normalize) continue;
    const float m = mean[size_t(c)];
    const float s = stddev[size_t(c)];
    for (int64_t j = 0; j < plane; ++j) dst[j] = (dst[j] - m) / s;
  }
}

ImageTransform imagenet_train_transform(int64_t size) {
  ImageTransform t;
  t.recipe = ImageRecipe::kTrain;
  t.size = size;
  return t;
}

ImageTransform imagenet_eval_transform(int64_t size, int64_t resize) {
  ImageTransform t;
  t.recipe = ImageRecipe::kEval;
  t.size = size;
  t.resize = resize;
  return t;
}

void check_image_transform(const ImageTransform& t) {
  ND_CHECK(t.size > 0, "image transform: output size must be positive, got ", t.size);
  if (t.recipe == ImageRecipe::kEval)
    ND_CHECK(t.resize > 0, "image transform: resize must be positive, got ", t.resize);
  if (t.normalize)
    for (int c = 0; c < 3; ++c)
      ND_CHECK(std::isfinite(t.mean[size_t(c)]) && std::isfinite(t.stddev[size_t(c)]) &&
                   t.stddev[size_t(c)] > 0.0f,
               "image transform: channel ", c, " has mean ", t.mean[size_t(c)], " and std ",
               t.stddev[size_t(c)], "; the std must be positive and both finite");
  if (t.recipe == ImageRecipe::kTrain) {
    const ResizedCropRange& r = t.range;
    ND_CHECK(r.scale_min > 0 && r.scale_min <= r.scale_max && r.scale_max <= 1.0,
             "random resized crop: scale range (", r.scale_min, ", ", r.scale_max,
             ") must satisfy 0 < min <= max <= 1");
    ND_CHECK(r.ratio_min > 0 && r.ratio_min <= r.ratio_max && std::isfinite(r.ratio_max),
             "random resized crop: ratio range (", r.ratio_min, ", ", r.ratio_max,
             ") must satisfy 0 < min <= max");
  }
}

void apply_image_transform(const ImageTransform& t, const RgbImage& image, Generator& gen,
                           float* out) {
  ND_CHECK(image.height > 0 && image.width > 0, "image transform: empty image");
  RgbImage result;
  if (t.recipe == ImageRecipe::kTrain) {
    const CropBox box = draw_resized_crop(image.height, image.width, t.range, gen);
    result = resize_bilinear(image, box, t.size, t.size);
    if (t.flip && gen.below(2) == 1) flip_horizontal(result);
  } else {
    const ImageSize resized = resized_shorter_side(image.height, image.width, t.resize);
    // Only the crop is resized: an extreme aspect ratio (1 x 100000) would make the whole
    // resized image gigabytes.
    result = resize_then_crop(image, resized.height, resized.width,
                              center_crop_box(resized.height, resized.width, t.size, t.size));
  }
  to_chw_float(result, t.normalize, t.mean, t.stddev, out);
}

}  // namespace nd::data
