// What an image file must satisfy before stb_image decodes it. Debian's stb_image (2.27) trusts
// headers: it allocates what a header claims before reading the data, fills missing BMP rows with
// zeros, leaves missing PGM/PPM pixels uninitialised, overflows an int reading a long PGM/PPM
// number, reads past a 16-bit PGM/PPM it converted to RGB, allocates a PNG chunk's claimed length,
// and writes past its arrays for a JPEG Huffman table of more than 256 codes. So a file must start
// like one of the accepted formats (PNG, JPEG, BMP, GIF, 8-bit binary PGM/PPM; stb_image's other
// decoders are never reached); the pixels its header claims must fit what a file of its size can
// encode, and at most 8192 x 8192; uncompressed formats must hold all their pixels; every PNG chunk
// must lie inside the file; every JPEG Huffman table must have at most 256 codes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace nd::data {

struct ImageFormat {
  const char* name;  // "PNG", "JPEG", ...
  const char* magic;
  size_t magic_bytes;
  // The most pixels one byte of such a file can encode: BMP 1 bit per pixel; binary PGM/PPM 1
  // byte; PNG 1 bit per pixel behind deflate's 1032:1; JPEG at least 1 bit per 8x8 block (the DC
  // coefficient); GIF LZW codes of 12 bits for up to 4096 pixels (rounded up from 2731).
  uint64_t pixels_per_byte;
};

// "PNG, JPEG, BMP, GIF, binary PGM/PPM".
extern const char* const kKnownImageFormats;
// Larger images are refused whatever the file size (8192 x 8192; stb_image then allocates at most
// about 540 MB for one buffer, a 16-bit RGBA PNG's).
constexpr uint64_t kMaxImagePixels = uint64_t{1} << 26;

// The accepted format the bytes start with, or nullptr.
const ImageFormat* find_image_format(const uint8_t* head, size_t bytes);

// Empty when n bytes of a file (all of it, or its start) may go to stb_image at all, even to
// read the header (stbi_info processes a JPEG's Huffman tables before the size), else the reason:
// the JPEG tables within the n bytes, the PGM/PPM header (numbers within stb_image's limits, 8-bit
// samples); with the whole file, also the PNG chunks.
std::string image_data_problem(const ImageFormat& format, const uint8_t* bytes, size_t n,
                               bool whole_file);
// Empty when the width x height that stbi_info read from the header fit a file of `file_bytes`
// bytes starting with `head` (n bytes, enough for the header), else the reason.
std::string image_size_problem(const ImageFormat& format, const uint8_t* head, size_t n,
                               uint64_t file_bytes, int width, int height);

}  // namespace nd::data
