// Readers never allocate more than the file can justify: a header claiming a terabyte tensor, an
// 8 GiB IDX array or a 4000 x 4000 image in a file of a few bytes fails with a message before
// anything of that size is allocated (test/alloc_probe.h records the largest allocation), a gzip
// IDX file grows its buffer only as data arrives, and the eval transform of a banner image resizes
// only its crop. Also: PyTorch's pickle and zip files are refused with the conversion command,
// never unpickled.
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "data/idx.h"
#include "data/image_folder.h"
#include "data/image_transforms.h"
#include "engine/random.h"
#include "io/safetensors.h"
#include "test/alloc_probe.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/temp_dir.h"

namespace {

using Bytes = std::vector<uint8_t>;
constexpr size_t kMiB = size_t{1} << 20;

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

void put_le(Bytes& b, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(uint8_t(v >> (8 * i)));
}

void put_be(Bytes& b, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) b.push_back(uint8_t(v >> (8 * i)));
}

Bytes safetensors_with_header(const std::string& header, size_t data_bytes = 0) {
  Bytes b;
  put_le(b, header.size(), 8);
  b.insert(b.end(), header.begin(), header.end());
  b.resize(b.size() + data_bytes, 0);
  return b;
}

// gzip of `raw` (zlib, one member).
Bytes gzip(const Bytes& raw) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&zs, uLong(raw.size())) + 64);
  zs.next_in = const_cast<Bytef*>(raw.data());
  zs.avail_in = uInt(raw.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Runs f, which must fail with nd::Error containing `part`, and returns the largest allocation
// it made.
template <typename F>
size_t largest_allocation_of_failure(F&& f, const std::string& part) {
  nd::test::AllocationProbe probe;
  nd::test::check_error_contains(f, {part});
  return probe.largest();
}

}  // namespace

TEST_CASE("the allocation probe sees a large allocation", "[limits]") {
  nd::test::AllocationProbe probe;
  std::vector<uint8_t> big(3 * kMiB);
  CHECK(probe.largest() >= 3 * kMiB);
}

TEST_CASE("safetensors: a header claiming a terabyte fails before allocating", "[limits]") {
  nd::test::TempDir dir("limits_st");
  const std::string path = dir.file("huge.safetensors");
  SECTION("1 TB F32 tensor, 16 bytes of data") {
    write_bytes(path,
                safetensors_with_header("{\"w\":{\"dtype\":\"F32\",\"shape\":[262144,1048576],"
                                        "\"data_offsets\":[0,1099511627776]}}",
                                        16));
    CHECK(largest_allocation_of_failure([&] { nd::io::load_safetensors(path); },
                                        "run past the end of the data section") < kMiB);
  }
  SECTION("1 TB of F16") {
    write_bytes(path, safetensors_with_header("{\"w\":{\"dtype\":\"F16\",\"shape\":[549755813888],"
                                              "\"data_offsets\":[0,1099511627776]}}"));
    CHECK(largest_allocation_of_failure([&] { nd::io::load_safetensors(path); },
                                        "run past the end") < kMiB);
  }
  SECTION("a 90 MB header length in a 100-byte file") {
    Bytes b;
    put_le(b, 90'000'000, 8);
    b.resize(100, ' ');
    write_bytes(path, b);
    CHECK(largest_allocation_of_failure([&] { nd::io::load_safetensors(path); },
                                        "runs past the end of the file") < kMiB);
  }
}

TEST_CASE("IDX: a header claiming gigabytes fails before allocating them", "[limits]") {
  nd::test::TempDir dir("limits_idx");
  // 2048 x 2048 x 2048 uint8: 8 GiB.
  Bytes header = {0, 0, 0x08, 3};
  for (int i = 0; i < 3; ++i) put_be(header, 2048, 4);
  SECTION("raw: 8 GiB claimed, 100 bytes there") {
    Bytes b = header;
    b.resize(b.size() + 100, 7);
    write_bytes(dir.file("raw"), b);
    CHECK(largest_allocation_of_failure([&] { nd::data::read_idx(dir.file("raw")); },
                                        "truncated: expected 8589934592 bytes") < kMiB);
  }
  SECTION("gzip: 8 GiB claimed, more than the compressed file can hold") {
    Bytes b = header;
    b.resize(b.size() + 100, 7);
    write_bytes(dir.file("gz"), gzip(b));
    CHECK(largest_allocation_of_failure([&] { nd::data::read_idx(dir.file("gz")); },
                                        "more than a gzip file of") < kMiB);
  }
  SECTION("gzip: 64 MiB claimed, 200 KB of incompressible data there") {
    // 64 MiB fits 1032 times the compressed size, so reading starts; the buffer grows only as
    // data arrives (it started at the whole claim before).
    Bytes b = {0, 0, 0x08, 1};
    put_be(b, 64 * kMiB, 4);
    nd::Generator gen(1);
    for (int i = 0; i < 200'000; ++i) b.push_back(uint8_t(gen.below(256)));
    write_bytes(dir.file("gz64"), gzip(b));
    CHECK(largest_allocation_of_failure([&] { nd::data::read_idx(dir.file("gz64")); },
                                        "truncated: expected 67108864 bytes") <= 2 * kMiB);
  }
}

#if ND_WITH_STB
TEST_CASE("images: a header claiming more pixels than the file can encode fails first",
          "[limits]") {
  nd::test::TempDir dir("limits_img");
  const std::string path = dir.file("image");
  auto require_refused = [&](const Bytes& b, const std::string& format,
                             const std::string& why = "can encode") {
    INFO(format);
    write_bytes(path, b);
    nd::test::check_error_contains([&] { nd::data::decode_image_file(path); },
                                   {"its " + format + " header claims", why});
  };
  auto png_header = [](uint32_t width, uint32_t height) {
    Bytes b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    put_be(b, 13, 4);
    for (char c : std::string("IHDR")) b.push_back(uint8_t(c));
    put_be(b, width, 4);
    put_be(b, height, 4);
    b.insert(b.end(), {8, 2, 0, 0, 0});
    const uLong crc = crc32(crc32(0, nullptr, 0), b.data() + 12, 17);
    put_be(b, crc, 4);
    return b;
  };
  SECTION("PNG 4000 x 4000") {
    require_refused(png_header(4000, 4000), "PNG");
  }
  SECTION("PNG 9000 x 9000, over the limit whatever the file size") {
    Bytes b = png_header(9000, 9000);
    put_be(b, 20'000'000, 4);  // an ancillary chunk to make the file big enough
    for (char c : std::string("zzZz")) b.push_back(uint8_t(c));
    b.resize(b.size() + 20'000'004, 0);
    require_refused(b, "PNG", "over this reader's limit of 67108864");
  }
  SECTION("PNG whose IDAT chunk claims 1 GB (stb_image would allocate it first)") {
    Bytes b = png_header(4, 4);
    put_be(b, 1u << 30, 4);
    for (char c : std::string("IDAT")) b.push_back(uint8_t(c));
    b.resize(b.size() + 100, 0);
    write_bytes(path, b);
    nd::test::check_error_contains([&] { nd::data::decode_image_file(path); },
                                   {"truncated PNG: chunk 'IDAT'", "claims 1073741824 bytes"});
  }
  SECTION("JPEG Huffman table of 300 codes (stb_image would write past its arrays)") {
    Bytes b = {0xff, 0xd8, 0xff, 0xc4};
    put_be(b, 2 + 17 + 300, 2);
    b.push_back(0x00);  // DC table 0
    for (int i = 0; i < 16; ++i) b.push_back(i == 14 ? 45 : i == 15 ? 255 : 0);
    b.resize(b.size() + 300, 1);
    b.insert(b.end(), {0xff, 0xd9});
    write_bytes(path, b);
    nd::test::check_error_contains([&] { nd::data::decode_image_file(path); },
                                   {"corrupt JPEG: a Huffman table at byte 6 has 300 codes"});
  }
  SECTION("PPM of width 0 (stb_image decodes it to nothing)") {
    const std::string ppm = "P6\n0 3\n255\n";
    write_bytes(path, Bytes(ppm.begin(), ppm.end()));
    nd::test::check_error_contains([&] { nd::data::decode_image_file(path); },
                                   {"its PPM header claims 0x3 pixels"});
  }
  SECTION("PPM whose width has 60 digits (stb_image would overflow an int)") {
    const std::string ppm = "P6\n" + std::string(60, '6') + " 3\n255\n";
    write_bytes(path, Bytes(ppm.begin(), ppm.end()));
    nd::test::check_error_contains([&] { nd::data::decode_image_file(path); },
                                   {"corrupt PGM/PPM: its width is over 16777216"});
  }
  SECTION("16-bit PGM (stb_image would read past its converted buffer)") {
    std::string pgm = "P5\n1 3\n2566\n";
    pgm.append(6, 'B');
    write_bytes(path, Bytes(pgm.begin(), pgm.end()));
    nd::test::check_error_contains([&] { nd::data::decode_image_file(path); },
                                   {"16-bit samples (maxval 2566) is not supported"});
  }
  SECTION("GIF canvas 8000 x 8000") {
    Bytes b = {'G', 'I', 'F', '8', '9', 'a'};
    put_le(b, 8000, 2);
    put_le(b, 8000, 2);
    b.insert(b.end(), {0x80, 0, 0, 0, 0, 0, 255, 255, 255, 0x3B});
    require_refused(b, "GIF");
  }
  SECTION("BMP 4000 x 4000 without pixel data") {
    Bytes b = {'B', 'M'};
    put_le(b, 54, 4);
    put_le(b, 0, 4);
    put_le(b, 54, 4);
    put_le(b, 40, 4);
    put_le(b, 4000, 4);
    put_le(b, 4000, 4);
    put_le(b, 1, 2);
    put_le(b, 24, 2);
    b.resize(54, 0);
    require_refused(b, "BMP");
  }
}
#endif

TEST_CASE("the eval transform resizes only the crop: equal bits, memory of the crop", "[limits]") {
  using nd::data::CropBox;
  using nd::data::RgbImage;
  nd::Generator gen(7);
  auto random_image = [&](int64_t h, int64_t w) {
    RgbImage im(h, w);
    for (auto& p : im.pixels) p = uint8_t(gen.below(256));
    return im;
  };
  struct Case {
    int64_t in_h, in_w, out_h, out_w;
    CropBox box;
  };
  for (const Case& c : {Case{9, 13, 20, 31, {3, 5, 10, 10}},    // enlarge, crop inside
                        Case{40, 30, 11, 7, {0, 0, 11, 7}},     // shrink, the whole output
                        Case{5, 8, 5, 19, {-2, 4, 9, 9}},       // one pass, crop over the top
                        Case{17, 6, 17, 6, {-3, -3, 23, 12}},   // no pass, padded all round
                        Case{12, 12, 30, 3, {10, 1, 5, 5}}}) {  // crop hanging off the right
    INFO(c.in_h << "x" << c.in_w << " -> " << c.out_h << "x" << c.out_w << ", crop at " << c.box.top
                << "," << c.box.left << " " << c.box.height << "x" << c.box.width);
    const RgbImage in = random_image(c.in_h, c.in_w);
    const RgbImage want = nd::data::crop(nd::data::resize_bilinear(in, c.out_h, c.out_w), c.box);
    const RgbImage got = nd::data::resize_then_crop(in, c.out_h, c.out_w, c.box);
    CHECK(got.height == want.height);
    CHECK(got.width == want.width);
    CHECK(got.pixels == want.pixels);
  }
  // A 2 x 4000 banner: resized to shorter side 256 it would be 256 x 512000 (393 MB).
  const RgbImage banner = random_image(2, 4000);
  std::vector<float> out(3 * 224 * 224);
  nd::test::AllocationProbe probe;
  nd::data::apply_image_transform(nd::data::imagenet_eval_transform(224, 256), banner, gen,
                                  out.data());
  CHECK(probe.largest() < 4 * kMiB);
}

TEST_CASE("PyTorch pickle and zip files are refused with how to convert them", "[limits]") {
  nd::test::TempDir dir("limits_pickle");
  const std::vector<std::string> needed = {
      "not a safetensors file", "never", "safetensors.torch import save_file", "weights_only=True"};
  SECTION("torch.save's zip archive") {
    Bytes b = {'P', 'K', 3, 4, 0, 0, 8, 8, 0, 0};
    const std::string name = "archive/data.pkl";
    b.insert(b.end(), name.begin(), name.end());
    write_bytes(dir.file("model.pth"), b);
    std::vector<std::string> parts = needed;
    parts.push_back("zip archive");
    nd::test::check_error_contains([&] { nd::io::load_safetensors(dir.file("model.pth")); }, parts);
  }
  SECTION("a bare pickle (protocol 2, older torch.save)") {
    write_bytes(dir.file("model.pt"), {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20});
    std::vector<std::string> parts = needed;
    parts.push_back("Python pickle");
    nd::test::check_error_contains([&] { nd::io::load_safetensors(dir.file("model.pt")); }, parts);
  }
  SECTION("a safetensors file whose header length starts like a zip still loads") {
    // 'P' 'K' 3 4 as a little-endian length is 67324752: a real header of that size loads.
    const size_t length = 0x04034B50;
    std::string header = "{}";
    header.resize(length, ' ');
    Bytes b;
    put_le(b, length, 8);
    b.insert(b.end(), header.begin(), header.end());
    write_bytes(dir.file("big_header.safetensors"), b);
    CHECK(nd::io::load_safetensors(dir.file("big_header.safetensors")).empty());
  }
}
