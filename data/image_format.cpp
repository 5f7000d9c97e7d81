// Checks of image files before stb_image decodes them (see image_format.h).
#include "data/image_format.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace nd::data {

namespace {

const ImageFormat kImageFormats[] = {
    {"PNG", "\x89PNG\r\n\x1a\n", 8, 8 * 1032},
    {"JPEG", "\xff\xd8\xff", 3, 512},
    {"BMP", "BM", 2, 8},
    {"GIF", "GIF87a", 6, 4096},
    {"GIF", "GIF89a", 6, 4096},
    {"PGM", "P5", 2, 1},
    {"PPM", "P6", 2, 1},
};

uint32_t le(const uint8_t* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Where the pixels of a binary PGM/PPM start (after "P5"/"P6", width, height and maxval, with
// comments, then one whitespace byte) and their bytes per sample, parsed as stb_image does; 0 when
// the header does not end within `head`.
size_t pnm_data_start(const uint8_t* head, size_t n, int* sample_bytes) {
  size_t i = 2;
  long value = 0;
  for (int field = 0; field < 3; ++field) {
    while (i < n && (std::isspace(head[i]) || head[i] == '#')) {
      if (head[i] == '#')
        while (i < n && head[i] != '\n' && head[i] != '\r') ++i;
      else
        ++i;
    }
    if (i >= n || !std::isdigit(head[i])) return 0;
    value = 0;
    while (i < n && std::isdigit(head[i]) && value < 1'000'000'000)
      value = value * 10 + (head[i++] - '0');
  }
  *sample_bytes = value > 255 ? 2 : 1;
  return i < n ? i + 1 : 0;
}

// The bytes an uncompressed BMP or binary PGM/PPM of width x height needs (stb_image fills
// missing BMP rows with zeros and leaves missing PNM pixels uninitialised instead of failing), or
// 0 for the compressed formats and headers this cannot tell.
uint64_t uncompressed_bytes_needed(const ImageFormat& format, const uint8_t* head, size_t n,
                                   int width, int height) {
  const std::string name = format.name;
  if (name == "BMP" && n >= 30) {
    const uint32_t offset = le(head + 10, 4), header = le(head + 14, 4);
    const uint32_t bits = header == 12 ? le(head + 24, 2) : le(head + 28, 2);
    const uint32_t compression = header == 12 || n < 34 ? 0 : le(head + 30, 4);
    if (compression != 0 && compression != 3) return 0;  // RLE: stb_image refuses it anyway
    const uint64_t row_bytes = (uint64_t(width) * bits + 7) / 8, padded = (row_bytes + 3) / 4 * 4;
    // The last row's padding is often left out.
    return std::max<uint64_t>(offset, 14 + header) + padded * uint64_t(height - 1) + row_bytes;
  }
  if (name == "PGM" || name == "PPM") {
    int sample_bytes = 1;
    const size_t start = pnm_data_start(head, n, &sample_bytes);
    if (start == 0) return 0;
    return start +
           uint64_t(width) * uint64_t(height) * (name == "PPM" ? 3 : 1) * uint64_t(sample_bytes);
  }
  return 0;
}

// Empty when every PNG chunk lies inside the file, else the reason: stb_image allocates an IDAT
// chunk's claimed length before reading it.
std::string png_chunk_problem(const uint8_t* bytes, size_t n) {
  size_t at = 8;
  while (at + 8 <= n) {
    const uint64_t length = (uint64_t(bytes[at]) << 24) | (uint64_t(bytes[at + 1]) << 16) |
                            (uint64_t(bytes[at + 2]) << 8) | bytes[at + 3];
    std::string type(reinterpret_cast<const char*>(bytes + at + 4), 4);
    for (char& c : type)
      if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
    if (length + 12 > n - at)
      return "truncated PNG: chunk '" + type + "' at byte " + std::to_string(at) + " claims " +
             std::to_string(length) + " bytes, the file has " + std::to_string(n - at - 12) +
             " after its header";
    if (type == "IEND") break;
    at += size_t(length) + 12;
  }
  return {};
}

// Empty when every Huffman table of the JPEG has at most 256 codes (stb_image writes past its
// arrays otherwise), else the reason. Walks the marker segments as stb_image reads them, through
// the entropy-coded data after each SOS (DHT segments may come between progressive scans).
std::string jpeg_table_problem(const uint8_t* bytes, size_t n) {
  size_t at = 2;
  while (at + 4 <= n) {
    if (bytes[at] != 0xff) return {};  // not at a marker: leave it to stb_image
    const uint8_t marker = bytes[at + 1];
    if (marker == 0xff) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0xd9) return {};                               // EOI
    if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {  // no length
      at += 2;
      continue;
    }
    const size_t length = (size_t(bytes[at + 2]) << 8) | bytes[at + 3];
    if (marker == 0xc4) {
      // As stb_image: tables while the segment's count is positive, each a class/id byte, 16
      // code counts and that many values, read on even past the segment.
      long left = long(length) - 2;
      size_t p = at + 4;
      while (left > 0 && p + 17 <= n) {
        size_t codes = 0;
        for (size_t i = 1; i <= 16; ++i) codes += bytes[p + i];
        if (codes > 256)
          return "corrupt JPEG: a Huffman table at byte " + std::to_string(p) + " has " +
                 std::to_string(codes) + " codes, at most 256 are possible";
        p += 17 + codes;
        left -= long(17 + codes);
      }
    }
    at += 2 + length;
    if (marker == 0xda) {  // entropy-coded data up to the next marker
      while (at + 1 < n && !(bytes[at] == 0xff && bytes[at + 1] != 0 &&
                             !(bytes[at + 1] >= 0xd0 && bytes[at + 1] <= 0xd7)))
        ++at;
    }
  }
  return {};
}

}  // namespace

const char* const kKnownImageFormats = "PNG, JPEG, BMP, GIF, binary PGM/PPM";

const ImageFormat* find_image_format(const uint8_t* head, size_t bytes) {
  for (const ImageFormat& f : kImageFormats)
    if (bytes >= f.magic_bytes && std::memcmp(head, f.magic, f.magic_bytes) == 0) return &f;
  return nullptr;
}

std::string image_data_problem(const ImageFormat& format, const uint8_t* bytes, size_t n,
                               bool whole_file) {
  const std::string name = format.name;
  if (name == "JPEG") return jpeg_table_problem(bytes, n);
  if (name == "PNG" && whole_file) return png_chunk_problem(bytes, n);
  return {};
}

std::string image_size_problem(const ImageFormat& format, const uint8_t* head, size_t n,
                               uint64_t file_bytes, int width, int height) {
  const uint64_t pixels = uint64_t(width) * uint64_t(height);
  if (pixels > kMaxImagePixels)
    return std::string("its ") + format.name + " header claims " + std::to_string(width) + "x" +
           std::to_string(height) + " pixels, over this reader's limit of " +
           std::to_string(kMaxImagePixels) + " (8192 x 8192)";
  if (pixels > format.pixels_per_byte * file_bytes)
    return std::string("its ") + format.name + " header claims " + std::to_string(width) + "x" +
           std::to_string(height) + " pixels, more than a file of " + std::to_string(file_bytes) +
           " bytes can encode (the header is damaged)";
  const uint64_t needed = uncompressed_bytes_needed(format, head, n, width, height);
  if (needed > file_bytes)
    return std::string("truncated ") + format.name + ": " + std::to_string(width) + "x" +
           std::to_string(height) + " pixels need " + std::to_string(needed) +
           " bytes, the file has " + std::to_string(file_bytes);
  return {};
}

}  // namespace nd::data
