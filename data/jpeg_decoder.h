// JPEG decoding through libjpeg-turbo (Debian's libjpeg62-turbo-dev, the decoder Pillow and
// torchvision use) instead of stb_image 2.27, whose JPEG decoder shifts out of range, fails its
// own asserts and reads out of bounds on corrupt entropy-coded data (found by fuzzing:
// docs/reliability.md). Built when CMake finds the library (ND_WITH_LIBJPEG).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/image_transforms.h"

namespace nd::data {

// The most progressive scans a file may have: each scan decodes the whole image again, so a
// small file of thousands of scans would take minutes (libjpeg-turbo's own tjDecompress limit).
constexpr int kMaxJpegScans = 500;

// Decodes a JPEG of n bytes to RGB (grey replicated, CMYK/YCCK converted as Adobe writes them).
// On failure returns false with the reason in `error`: libjpeg's message, a truncated file, or
// a header whose size `size_ok` rejects (called with width and height before any pixel buffer
// is allocated; it returns the empty string when the size is acceptable).
using JpegSizeCheck = std::string (*)(int width, int height, const void* context);
bool decode_jpeg_rgb(const uint8_t* bytes, size_t n, JpegSizeCheck size_ok, const void* context,
                     RgbImage& out, std::string& error);

}  // namespace nd::data
