// CPU training transforms (see transforms.h): seeded crop/flip parameters, their application as
// row copies (forward or mirrored) between zero-filled margins, and per-channel normalisation.
#include "data/transforms.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace nd::data {

namespace {

// Checks that batch.images is a CPU, contiguous, float32 (B, C, H, W) tensor; returns its data.
float* checked_images(const Batch& batch, const char* what) {
  const Tensor& images = batch.images;
  ND_CHECK(images.defined(), what, ": the batch has no images");
  ND_CHECK(images.dim() == 4, what, ": images must be (B, C, H, W), got shape ",
           shape_str(images.shape()));
  ND_CHECK(images.dtype() == DType::F32, what,
           ": images must be float32 (as gather_batch makes "
           "them), got another dtype");
  ND_CHECK(images.device().is_cpu(), what,
           ": images must be on the CPU; transform before moving the batch to the GPU");
  ND_CHECK(images.is_contiguous(), what, ": images must be contiguous");
  return images.data<float>();
}

// Writes one channel plane (H, W) of the crop/flip of `in` into `out` (distinct buffers).
void crop_flip_plane(const float* in, float* out, int64_t height, int64_t width, int64_t pad,
                     const CropFlip& cf) {
  const int64_t shift_y = cf.top - pad;
  const int64_t shift_x = cf.left - pad;
  // Unflipped output columns [x_begin, x_end) read input columns [x_begin + shift_x, ...).
  const int64_t x_begin = std::clamp<int64_t>(-shift_x, 0, width);
  const int64_t x_end = std::clamp<int64_t>(width - shift_x, x_begin, width);
  for (int64_t y = 0; y < height; ++y) {
    float* out_row = out + y * width;
    const int64_t source_y = y + shift_y;
    if (source_y < 0 || source_y >= height || x_begin == x_end) {
      std::fill(out_row, out_row + width, 0.0f);
      continue;
    }
    // The input columns behind unflipped output columns [x_begin, x_end).
    const float* source_begin = in + source_y * width + (x_begin + shift_x);
    const float* source_end = source_begin + (x_end - x_begin);
    if (!cf.flip) {
      std::fill(out_row, out_row + x_begin, 0.0f);
      std::copy(source_begin, source_end, out_row + x_begin);
      std::fill(out_row + x_end, out_row + width, 0.0f);
    } else {
      // Output column x shows unflipped column width-1-x: the valid ones are [width-x_end,
      // width-x_begin), filled by the unflipped valid range read backwards.
      std::fill(out_row, out_row + (width - x_end), 0.0f);
      std::reverse_copy(source_begin, source_end, out_row + (width - x_end));
      std::fill(out_row + (width - x_begin), out_row + width, 0.0f);
    }
  }
}

}  // namespace

std::vector<CropFlip> draw_crop_flips(int64_t count, int64_t pad, Generator& gen) {
  ND_CHECK(count >= 0, "draw_crop_flips: negative image count ", count);
  ND_CHECK(pad >= 0, "random crop: padding must be >= 0, got ", pad);
  std::vector<CropFlip> draws(static_cast<size_t>(count));
  const uint64_t offsets = uint64_t(2 * pad + 1);
  for (CropFlip& d : draws) {
    d.top = int64_t(gen.below(offsets));
    d.left = int64_t(gen.below(offsets));
    d.flip = gen.below(2) == 1;
  }
  return draws;
}

void apply_crop_flips(Batch& batch, int64_t pad, const std::vector<CropFlip>& crop_flips) {
  float* images = checked_images(batch, "random crop/flip");
  ND_CHECK(pad >= 0, "random crop: padding must be >= 0, got ", pad);
  const int64_t count = batch.images.size(0);
  const int64_t channels = batch.images.size(1);
  const int64_t height = batch.images.size(2);
  const int64_t width = batch.images.size(3);
  ND_CHECK(int64_t(crop_flips.size()) == count, "random crop/flip: ", crop_flips.size(),
           " crop/flip draws for a batch of ", count, " images");
  const int64_t plane = height * width;
  const int64_t image_size = channels * plane;
  std::vector<float> scratch(static_cast<size_t>(image_size));
  for (int64_t i = 0; i < count; ++i) {
    const CropFlip& cf = crop_flips[size_t(i)];
    ND_CHECK(cf.top >= 0 && cf.top <= 2 * pad && cf.left >= 0 && cf.left <= 2 * pad,
             "random crop: offsets (", cf.top, ", ", cf.left, ") of image ", i, " are outside [0, ",
             2 * pad, "]");
    if (cf.top == pad && cf.left == pad && !cf.flip) continue;  // identity
    float* image = images + i * image_size;
    std::memcpy(scratch.data(), image, size_t(image_size) * sizeof(float));
    for (int64_t c = 0; c < channels; ++c)
      crop_flip_plane(scratch.data() + c * plane, image + c * plane, height, width, pad, cf);
  }
}

void random_crop_flip(Batch& batch, int64_t pad, Generator& gen) {
  checked_images(batch, "random crop/flip");
  apply_crop_flips(batch, pad, draw_crop_flips(batch.images.size(0), pad, gen));
}

void normalize(Batch& batch, const std::array<float, 3>& mean, const std::array<float, 3>& stddev) {
  float* images = checked_images(batch, "normalize");
  ND_CHECK(batch.images.size(1) == 3, "normalize: 3 channel means and stds given for images of ",
           batch.images.size(1), " channels");
  for (int c = 0; c < 3; ++c)
    ND_CHECK(stddev[c] > 0.0f && std::isfinite(stddev[c]) && std::isfinite(mean[c]),
             "normalize: channel ", c, " has mean ", mean[c], " and std ", stddev[c],
             "; the std must be positive and both finite");
  const int64_t count = batch.images.size(0);
  const int64_t plane = batch.images.size(2) * batch.images.size(3);
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t c = 0; c < 3; ++c) {
      float* p = images + (i * 3 + c) * plane;
      const float m = mean[size_t(c)];
      const float s = stddev[size_t(c)];
      for (int64_t j = 0; j < plane; ++j) p[j] = (p[j] - m) / s;
    }
  }
}

}  // namespace nd::data
