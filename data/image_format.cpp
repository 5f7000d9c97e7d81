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

// A binary PGM/PPM header ("P5"/"P6", width, height and maxval with comments between, then one
// whitespace byte), parsed as stb_image does.
struct PnmHeader {
  size_t data_start = 0;  // 0: the header does not end within the bytes given
  int sample_bytes = 1;
  std::string problem;  // a number stb_image would overflow an int reading
};

PnmHeader parse_pnm_header(const uint8_t* head, size_t n) {
  static const char* const kFields[] = {"width", "height", "maxval"};
  PnmHeader h;
  size_t i = 2;
  uint64_t value = 0;
  for (int field = 0; field < 3; ++field) {
    while (i < n && (std::isspace(head[i]) || head[i] == '#')) {
      if (head[i] == '#')
        while (i < n && head[i] != '\n' && head[i] != '\r') ++i;
      else
        ++i;
    }
    if (i >= n || !std::isdigit(head[i])) return h;
    value = 0;
    for (; i < n && std::isdigit(head[i]); ++i) {
      value = value * 10 + uint64_t(head[i] - '0');
      if (value > (field < 2 ? (uint64_t{1} << 24) : 65535)) {
        h.problem = std::string("corrupt PGM/PPM: its ") + kFields[field] + " is over " +
                    (field < 2 ? "16777216" : "65535");
        return h;
      }
    }
  }
  h.sample_bytes = value > 255 ? 2 : 1;
  h.data_start = i < n ? i + 1 : 0;
  // stb_image 2.27 converts 16-bit PGM/PPM to RGB with its 8-bit routine, then reads that
  // buffer as 16-bit samples: past its end.
  if (value > 255)
    h.problem = "PGM/PPM of 16-bit samples (maxval " + std::to_string(value) +
                ") is not supported: convert it to 8 bits or to PNG";
  return h;
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
    const PnmHeader h = parse_pnm_header(head, n);
    if (h.data_start == 0) return 0;
    return h.data_start +
           uint64_t(width) * uint64_t(height) * (name == "PPM" ? 3 : 1) * uint64_t(h.sample_bytes);
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

// The JPEG bytes as stb_image's stbi__get8 serves them: 0 past the end.
struct JpegReader {
  const uint8_t* bytes;
  size_t n;
  size_t at;
  bool eof() const { return at >= n; }
  uint32_t get8() { return at < n ? bytes[at++] : 0; }
  uint32_t get16() {
    const uint32_t high = get8();
    return (high << 8) | get8();
  }
  void skip(size_t k) { at = k > n - std::min(at, n) ? n : at + k; }
};

constexpr uint32_t kNoMarker = 0xff;  // stb_image's STBI__MARKER_none

// stbi__get_marker: kNoMarker unless at 0xff, fill bytes skipped.
uint32_t jpeg_marker(JpegReader& r) {
  uint32_t x = r.get8();
  if (x != 0xff) return kNoMarker;
  while (x == 0xff) x = r.get8();
  return x;
}

// One marker segment as stbi__process_marker reads it; false where stb_image fails (then nothing
// further is read), with *problem set when the segment would make it write out of bounds.
bool jpeg_segment(JpegReader& r, uint32_t marker, std::string* problem) {
  if (marker == 0xdd) {  // DRI
    if (r.get16() != 4) return false;
    r.get16();
    return true;
  }
  if (marker == 0xdb) {  // DQT: tables of 64 samples of 8 or 16 bits
    long left = long(r.get16()) - 2;
    while (left > 0) {
      const uint32_t q = r.get8(), precision = q >> 4;
      if (precision > 1 || (q & 15) > 3) return false;
      r.skip(precision ? 128 : 64);
      left -= precision ? 129 : 65;
    }
    return left == 0;
  }
  if (marker == 0xc4) {  // DHT: class/id, 16 code counts, that many values; tables while left
    long left = long(r.get16()) - 2;
    while (left > 0) {
      const size_t table = r.at;
      const uint32_t q = r.get8();
      if ((q >> 4) > 1 || (q & 15) > 3) return false;
      size_t codes = 0;
      for (int i = 0; i < 16; ++i) codes += r.get8();
      if (codes > 256) {
        *problem = "corrupt JPEG: a Huffman table at byte " + std::to_string(table) + " has " +
                   std::to_string(codes) + " codes, at most 256 are possible";
        return false;
      }
      r.skip(codes);
      left -= long(17 + codes);
    }
    return left == 0;
  }
  if ((marker >= 0xe0 && marker <= 0xef) || marker == 0xfe) {  // APPn, COM
    const uint32_t length = r.get16();
    if (length < 2) return false;
    r.skip(length - 2);
    return true;
  }
  return false;  // stb_image: unknown marker
}

// Empty when no Huffman table stb_image would build from the JPEG has more than 256 codes (it
// writes past its arrays then), else the reason. Reads the segments in stb_image's order:
// stbi__decode_jpeg_header up to the frame header (scanning forward to the next 0xff between
// segments), then stbi__decode_jpeg_image's scans (entropy-coded data up to the next marker) and
// the segments between them, up to EOI.
std::string jpeg_table_problem(const uint8_t* bytes, size_t n) {
  JpegReader r{bytes, n, 2};
  std::string problem;
  uint32_t marker = jpeg_marker(r);
  while (marker < 0xc0 || marker > 0xc2) {  // SOF0-SOF2
    if (!jpeg_segment(r, marker, &problem)) return problem;
    marker = jpeg_marker(r);
    while (marker == kNoMarker) {
      if (r.eof()) return {};
      marker = jpeg_marker(r);
    }
  }
  const uint32_t frame = r.get16();
  if (frame < 2) return {};
  r.skip(frame - 2);
  marker = jpeg_marker(r);
  while (marker != 0xd9 && !r.eof()) {  // EOI
    if (marker == 0xda) {               // SOS, then the entropy-coded data
      const uint32_t header = r.get16();
      if (header < 2) return {};
      r.skip(header - 2);
      while (r.at + 1 < n && !(bytes[r.at] == 0xff && bytes[r.at + 1] != 0 &&
                               (bytes[r.at + 1] < 0xd0 || bytes[r.at + 1] > 0xd7)))
        ++r.at;
    } else if (marker == 0xdc) {  // DNL
      r.skip(4);
    } else if (!jpeg_segment(r, marker, &problem)) {
      return problem;
    }
    marker = jpeg_marker(r);
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
  if (name == "PGM" || name == "PPM") return parse_pnm_header(bytes, n).problem;
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
