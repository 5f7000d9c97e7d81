// JPEG decoding through libjpeg-turbo (data/jpeg_decoder.h): colour spaces stb_image_write cannot
// produce (Adobe CMYK) are written here with libjpeg's own compressor, then decoded.
#if ND_WITH_LIBJPEG
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include "data/jpeg_decoder.h"
#include "test/catch.h"

namespace {

using Bytes = std::vector<uint8_t>;

// A JPEG of `components` interleaved samples per pixel in `space`, quality 95, in memory.
Bytes compress(const Bytes& samples, int width, int height, int components, J_COLOR_SPACE space) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr err;
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = JDIMENSION(width);
  cinfo.image_height = JDIMENSION(height);
  cinfo.input_components = components;
  cinfo.in_color_space = space;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, 95, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPLE*>(samples.data()) +
                   size_t(cinfo.next_scanline) * size_t(width * components);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  Bytes out(buffer, buffer + size);
  std::free(buffer);
  return out;
}

std::string any_size(int, int, const void*) {
  return "";
}

}  // namespace

TEST_CASE("libjpeg decodes Adobe CMYK JPEGs to RGB as ink times black", "[data]") {
  // Adobe stores inverted inks; with no black (stored K = 255) the stored C, M, Y are R, G, B.
  const int w = 16, h = 8;
  Bytes cmyk(size_t(w * h * 4));
  for (int i = 0; i < w * h; ++i) {
    cmyk[size_t(4 * i)] = 200;
    cmyk[size_t(4 * i + 1)] = 100;
    cmyk[size_t(4 * i + 2)] = 30;
    cmyk[size_t(4 * i + 3)] = i < w * h / 2 ? 255 : 128;  // the lower half half black
  }
  const Bytes file = compress(cmyk, w, h, 4, JCS_CMYK);
  nd::data::RgbImage im;
  std::string error;
  REQUIRE(nd::data::decode_jpeg_rgb(file.data(), file.size(), any_size, nullptr, im, error));
  REQUIRE(im.width == w);
  REQUIRE(im.height == h);
  const int top[3] = {200, 100, 30};
  for (int c = 0; c < 3; ++c) {
    CHECK(std::abs(int(im.at(1, 3, c)) - top[c]) <= 4);
    CHECK(std::abs(int(im.at(6, 3, c)) - (top[c] * 128 + 127) / 255) <= 4);
  }
}

TEST_CASE("libjpeg decoding fails with a reason on truncated data and rejected sizes", "[data]") {
  const int w = 40, h = 24;
  Bytes rgb(size_t(w * h * 3));
  uint32_t state = 7;
  for (uint8_t& v : rgb) v = uint8_t((state = state * 1664525u + 1013904223u) >> 24);
  const Bytes file = compress(rgb, w, h, 3, JCS_RGB);
  nd::data::RgbImage im;
  std::string error;
  REQUIRE(nd::data::decode_jpeg_rgb(file.data(), file.size(), any_size, nullptr, im, error));
  CHECK(im.width == w);

  // Cut in the entropy-coded data: libjpeg warns and would fill with grey; we fail.
  CHECK_FALSE(
      nd::data::decode_jpeg_rgb(file.data(), file.size() / 2, any_size, nullptr, im, error));
  CHECK(error.find("corrupt or truncated") != std::string::npos);

  // Cut inside the header: a libjpeg error, returned rather than exiting the process.
  CHECK_FALSE(nd::data::decode_jpeg_rgb(file.data(), 20, any_size, nullptr, im, error));
  CHECK_FALSE(error.empty());

  // The size check sees the header's size before any pixels are decoded.
  const auto refuse = [](int width, int height, const void* seen) {
    *static_cast<int*>(const_cast<void*>(seen)) = width * 1000 + height;
    return std::string("too large");
  };
  int seen = 0;
  CHECK_FALSE(nd::data::decode_jpeg_rgb(file.data(), file.size(), refuse, &seen, im, error));
  CHECK(error == "too large");
  CHECK(seen == w * 1000 + h);
}
#endif
