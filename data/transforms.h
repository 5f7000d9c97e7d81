// Training transforms on a Batch (images float32 (B, C, H, W) in [0, 1] on the CPU, as
// gather_batch makes them), matching torchvision: RandomCrop(size = input size, padding = pad)
// with zero padding of the [0, 1] image, RandomHorizontalFlip(p = 0.5), and Normalize(mean, std)
// per channel. Random parameters come from nd::Generator in a documented order, so CPU runs repeat
// bitwise; the draws are separate from their application so another device can apply the same
// ones. Also the CIFAR-10 / CIFAR-100 channel means and standard deviations of the reference.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "data/batch.h"
#include "engine/random.h"

namespace nd::data {

// Per-channel (R, G, B) statistics of the reference recipes (network-deconvolution.md, sec. 5).
inline constexpr std::array<float, 3> kCifar10Mean = {0.4914f, 0.4822f, 0.4465f};
inline constexpr std::array<float, 3> kCifar10Std = {0.2023f, 0.1994f, 0.2010f};
inline constexpr std::array<float, 3> kCifar100Mean = {0.5071f, 0.4865f, 0.4409f};
inline constexpr std::array<float, 3> kCifar100Std = {0.2009f, 0.1984f, 0.2023f};
// The padding of the reference's RandomCrop(32, padding=4).
inline constexpr int64_t kCifarCropPadding = 4;

// One image's random crop and flip. The crop window of the zero-padded image
// ((H + 2 pad) x (W + 2 pad)) starts at row `top`, column `left`, both in [0, 2 pad]; top = left
// = pad is the unshifted image. Output pixel (y, x) is, with x' = flip ? W-1-x : x,
// input(y + top - pad, x' + left - pad), or 0 where that lies outside the input.
struct CropFlip {
  int64_t top = 0;
  int64_t left = 0;
  bool flip = false;
};

// Draws `count` images' parameters in image order; per image exactly three draws, in this order:
// top = gen.below(2 pad + 1), left = gen.below(2 pad + 1), flip = gen.below(2) == 1.
// (With pad 0 the two offset draws still happen, so the stream does not depend on pad.)
std::vector<CropFlip> draw_crop_flips(int64_t count, int64_t pad, Generator& gen);

// Applies one CropFlip per image in place (batch.images is (B, C, H, W) float32, contiguous, on
// the CPU; crop_flips.size() == B). One pass per image through a one-image scratch copy.
void apply_crop_flips(Batch& batch, int64_t pad, const std::vector<CropFlip>& crop_flips);

// draw_crop_flips(B, pad, gen) then apply_crop_flips: torchvision's
// RandomCrop(H x W, padding=pad) followed by RandomHorizontalFlip(0.5), on the [0, 1] images.
void random_crop_flip(Batch& batch, int64_t pad, Generator& gen);

// In place, per channel c: x = (x - mean[c]) / stddev[c], computed in float exactly as written
// (torchvision's Normalize). The images must have 3 channels; every stddev must be positive.
void normalize(Batch& batch, const std::array<float, 3>& mean, const std::array<float, 3>& stddev);

}  // namespace nd::data
