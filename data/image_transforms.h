// ImageNet-style transforms of decoded 8-bit RGB images, with the semantics torchvision has on PIL
// images: Resize (shorter side), CenterCrop, RandomResizedCrop, RandomHorizontalFlip, ToTensor
// and Normalize. Resizing is PIL's antialiased bilinear filter in its 8-bit fixed-point form
// (horizontal pass, then vertical, each rounded to uint8), so results match Pillow bit for bit.
// Random parameters come from nd::Generator in a documented order, so runs repeat bitwise.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace nd::data {

// Per-channel (R, G, B) statistics of ImageNet, as the torchvision recipes use them.
inline constexpr std::array<float, 3> kImageNetMean = {0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImageNetStd = {0.229f, 0.224f, 0.225f};

// An 8-bit RGB image: (height, width, 3) row-major with channels interleaved, as decoded.
struct RgbImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;

  RgbImage() = default;
  RgbImage(int64_t h, int64_t w) : height(h), width(w), pixels(size_t(h * w * 3), 0) {}
  uint8_t at(int64_t y, int64_t x, int64_t c) const {
    return pixels[size_t((y * width + x) * 3 + c)];
  }
  uint8_t& at(int64_t y, int64_t x, int64_t c) { return pixels[size_t((y * width + x) * 3 + c)]; }
};

// Rows [top, top + height) and columns [left, left + width) of an image.
struct CropBox {
  int64_t top = 0;
  int64_t left = 0;
  int64_t height = 0;
  int64_t width = 0;
};

struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
};

// torchvision Resize(shorter): the shorter side becomes `shorter`, the longer one
// floor(shorter * longer / shorter_side) (a square stays square).
ImageSize resized_shorter_side(int64_t height, int64_t width, int64_t shorter);

// Pillow's resize(BILINEAR) of the region `box` (inside the image) to out_height x out_width, as
// torchvision does it after cropping: a triangle filter of radius max(scale, 1) input pixels
// (widened when shrinking, so it antialiases), weights normalised over the taps inside the box,
// 8-bit fixed point (22 fraction bits, round half up) after each pass. A pass whose size does not
// change is skipped, which is exact.
RgbImage resize_bilinear(const RgbImage& in, const CropBox& box, int64_t out_height,
                         int64_t out_width);
RgbImage resize_bilinear(const RgbImage& in, int64_t out_height, int64_t out_width);

// The window `box` of the image; pixels of the window outside the image are 0.
RgbImage crop(const RgbImage& in, const CropBox& box);

// crop(resize_bilinear(in, out_height, out_width), crop_box), bit for bit, computing only the
// pixels of the crop (memory in proportion to the crop, whatever the resized size).
RgbImage resize_then_crop(const RgbImage& in, int64_t out_height, int64_t out_width,
                          const CropBox& crop_box);

// torchvision CenterCrop: top = round((height - crop_height) / 2) with Python's round (half to
// even), left likewise; when the crop is larger than the image, the image is first zero-padded by
// (crop - size) // 2 before and the rest after, so the box starts at minus that padding.
CropBox center_crop_box(int64_t height, int64_t width, int64_t crop_height, int64_t crop_width);

// torchvision RandomResizedCrop.get_params: up to 10 attempts, each drawing
//   s = gen.uniform(scale_min, scale_max), then log_r = gen.uniform(log ratio_min, log ratio_max),
// w = round(sqrt(area s exp(log_r))), h = round(sqrt(area s / exp(log_r))) (half to even); the
// first attempt with 0 < w <= width and 0 < h <= height then draws top = gen.below(height - h + 1)
// and left = gen.below(width - w + 1). After 10 failures, the central crop of the whole image
// clamped to the ratio range (no further draws).
struct ResizedCropRange {
  double scale_min = 0.08;
  double scale_max = 1.0;
  double ratio_min = 3.0 / 4.0;
  double ratio_max = 4.0 / 3.0;
};
CropBox draw_resized_crop(int64_t height, int64_t width, const ResizedCropRange& range,
                          Generator& gen);

void flip_horizontal(RgbImage& image);

// ToTensor then Normalize: writes (3, height, width) float32 to out, x = pixel / 255.0f, then
// (x - mean[c]) / stddev[c] in float when normalize.
void to_chw_float(const RgbImage& image, bool normalize, const std::array<float, 3>& mean,
                  const std::array<float, 3>& stddev, float* out);

// A whole per-image recipe.
//   kTrain: RandomResizedCrop(size, range) then RandomHorizontalFlip(0.5) when flip.
//   kEval:  Resize(resize) (shorter side) then CenterCrop(size).
// Both end in ToTensor and, when normalize, Normalize(mean, stddev).
enum class ImageRecipe { kTrain, kEval };

struct ImageTransform {
  ImageRecipe recipe = ImageRecipe::kEval;
  int64_t size = 224;    // output side
  int64_t resize = 256;  // kEval: the shorter side before the center crop
  bool flip = true;      // kTrain
  bool normalize = true;
  std::array<float, 3> mean = kImageNetMean;
  std::array<float, 3> stddev = kImageNetStd;
  ResizedCropRange range;  // kTrain
};

// The ImageNet recipes of torchvision's reference scripts, with the sizes as options.
ImageTransform imagenet_train_transform(int64_t size = 224);
ImageTransform imagenet_eval_transform(int64_t size = 224, int64_t resize = 256);

// Throws nd::Error for sizes below 1, a non-positive or non-finite std, or a bad crop range.
void check_image_transform(const ImageTransform& transform);

// Applies the recipe, writing (3, size, size) float32 to out. Draws (kTrain only): those of
// draw_resized_crop, then flip = gen.below(2) == 1 when flip is on.
void apply_image_transform(const ImageTransform& transform, const RgbImage& image, Generator& gen,
                           float* out);

}  // namespace nd::data
