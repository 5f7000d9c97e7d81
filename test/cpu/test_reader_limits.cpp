// Readers never allocate more than the file can justify: a header claiming a terabyte tensor, an
// 8 GiB IDX array or a 60000 x 60000 image in a file of a few bytes fails with a message before
// anything of that size is allocated (test/alloc_probe.h records the largest allocation), and a
// gzip IDX file grows its buffer only as data arrives. Also: PyTorch's pickle and zip files are
// refused with the conversion command, never unpickled.
#include <zlib.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "data/idx.h"
#include "data/image_folder.h"
#include "data/safetensors.h"
#include "engine/random.h"
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
    CHECK(largest_allocation_of_failure([&] { nd::data::load_safetensors(path); },
                                        "run past the end of the data section") < kMiB);
  }
  SECTION("1 TB of F16") {
    write_bytes(path, safetensors_with_header("{\"w\":{\"dtype\":\"F16\",\"shape\":[549755813888],"
                                              "\"data_offsets\":[0,1099511627776]}}"));
    CHECK(largest_allocation_of_failure([&] { nd::data::load_safetensors(path); },
                                        "run past the end") < kMiB);
  }
  SECTION("a 90 MB header length in a 100-byte file") {
    Bytes b;
    put_le(b, 90'000'000, 8);
    b.resize(100, ' ');
    write_bytes(path, b);
    CHECK(largest_allocation_of_failure([&] { nd::data::load_safetensors(path); },
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
  auto require_refused = [&](const Bytes& b, const std::string& format) {
    INFO(format);
    write_bytes(path, b);
    nd::test::check_error_contains([&] { nd::data::decode_image_file(path); },
                                   {"its " + format + " header claims", "can encode"});
  };
  SECTION("PNG 16000 x 16000 (stb_image itself refuses over 2^30 bytes)") {
    Bytes b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    put_be(b, 13, 4);
    for (char c : std::string("IHDR")) b.push_back(uint8_t(c));
    put_be(b, 16000, 4);
    put_be(b, 16000, 4);
    b.insert(b.end(), {8, 2, 0, 0, 0});
    const uLong crc = crc32(crc32(0, nullptr, 0), b.data() + 12, 17);
    put_be(b, crc, 4);
    require_refused(b, "PNG");
  }
  SECTION("GIF canvas 65535 x 65535") {
    Bytes b = {'G', 'I', 'F', '8', '9', 'a'};
    put_le(b, 65535, 2);
    put_le(b, 65535, 2);
    b.insert(b.end(), {0x80, 0, 0, 0, 0, 0, 255, 255, 255, 0x3B});
    require_refused(b, "GIF");
  }
  SECTION("BMP 30000 x 30000 without pixel data") {
    Bytes b = {'B', 'M'};
    put_le(b, 54, 4);
    put_le(b, 0, 4);
    put_le(b, 54, 4);
    put_le(b, 40, 4);
    put_le(b, 30000, 4);
    put_le(b, 30000, 4);
    put_le(b, 1, 2);
    put_le(b, 24, 2);
    b.resize(54, 0);
    require_refused(b, "BMP");
  }
}
#endif

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
    nd::test::check_error_contains([&] { nd::data::load_safetensors(dir.file("model.pth")); },
                                   parts);
  }
  SECTION("a bare pickle (protocol 2, older torch.save)") {
    write_bytes(dir.file("model.pt"), {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20});
    std::vector<std::string> parts = needed;
    parts.push_back("Python pickle");
    nd::test::check_error_contains([&] { nd::data::load_safetensors(dir.file("model.pt")); },
                                   parts);
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
    CHECK(nd::data::load_safetensors(dir.file("big_header.safetensors")).empty());
  }
}
