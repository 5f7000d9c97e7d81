// Tests of the IDX reader and the (Fashion-)MNIST loader: IDX files of every element type written
// here by an independent encoder (raw and gzip through zlib's gzwrite) read back exactly; damaged
// files (truncated, bad magic, unknown type, trailing bytes, corrupt gzip...) give errors naming
// the path and the problem; and the real Fashion-MNIST splits have the published class counts.
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "data/fashion_mnist.h"
#include "data/idx.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/data_dir.h"
#include "test/temp_dir.h"

#ifndef ND_FASHION_MNIST_DIR
#define ND_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

namespace {

using nd::test::check_error_contains;

namespace fs = std::filesystem;
using nd::data::IdxArray;
using Bytes = std::vector<uint8_t>;

// test/temp_dir.h's directory, named for this file's tests.
struct TempDir : nd::test::TempDir {
  TempDir() : nd::test::TempDir("idx") {}
};

void append_u32_big_endian(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}

Bytes idx_header(uint8_t type, const std::vector<uint32_t>& dims) {
  Bytes out = {0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims) append_u32_big_endian(out, d);
  return out;
}

// Big-endian encoding by shifts on the bit pattern, so it holds on any host.
template <typename T>
Bytes big_endian_values(const std::vector<T>& values) {
  using Bits = std::conditional_t<
      sizeof(T) == 1, uint8_t,
      std::conditional_t<sizeof(T) == 2, uint16_t,
                         std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>>>;
  Bytes out;
  for (const T& v : values) {
    Bits bits;
    std::memcpy(&bits, &v, sizeof(T));
    for (int shift = 8 * int(sizeof(T)) - 8; shift >= 0; shift -= 8)
      out.push_back(uint8_t(bits >> shift));
  }
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void write_raw(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile gz = gzopen(path.c_str(), "wb");
  REQUIRE(gz != nullptr);
  if (!bytes.empty())
    REQUIRE(gzwrite(gz, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(gz) == Z_OK);
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Bytes that deflate can only partly compress (a 32-bit LCG's high byte).
Bytes pseudo_random_bytes(size_t n, uint32_t seed) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) {
    seed = seed * 1664525u + 1013904223u;
    out[i] = uint8_t(seed >> 24);
  }
  return out;
}

std::vector<int64_t> as_dims(const std::vector<uint32_t>& dims) {
  return std::vector<int64_t>(dims.begin(), dims.end());
}

// Writes values as raw and as gzip IDX and checks both read back bit for bit.
template <typename T>
void check_round_trip(const TempDir& dir, uint8_t type, const std::vector<uint32_t>& dims,
                      const std::vector<T>& values) {
  const Bytes file = concat(idx_header(type, dims), big_endian_values(values));
  for (bool gzip : {false, true}) {
    const std::string path =
        dir.file(std::string("rt_") + nd::data::idx_type_name(type) + (gzip ? ".gz" : ".idx"));
    if (gzip) {
      write_gzip(path, file);
    } else {
      write_raw(path, file);
    }
    INFO("file " << path);
    const IdxArray array = nd::data::read_idx(path);
    CHECK(array.type == type);
    CHECK(array.dims == as_dims(dims));
    CHECK(array.element_count() == int64_t(values.size()));
    REQUIRE(array.bytes.size() == values.size() * sizeof(T));
    const std::vector<T> got = nd::data::idx_values<T>(array);
    REQUIRE(got.size() == values.size());
    // Bit patterns, not ==, so -0.0 and NaN payloads count too.
    CHECK(big_endian_values(got) == big_endian_values(values));
  }
}

// The 40-byte body of a small uint8 IDX file with dims 10x4.
const std::vector<uint32_t> kSmallDims = {10, 4};
Bytes small_u8_file() {
  return concat(idx_header(0x08, kSmallDims), pseudo_random_bytes(40, 7));
}

}  // namespace

TEST_CASE("read_idx reads back every element type, raw and gzip", "[idx]") {
  TempDir dir;

  SECTION("uint8, 3-D") {
    std::vector<uint8_t> values(3 * 5 * 7);
    for (size_t i = 0; i < values.size(); ++i) values[i] = uint8_t(i * 37 + 11);
    check_round_trip<uint8_t>(dir, 0x08, {3, 5, 7}, values);
  }
  SECTION("int8, 1-D") {
    check_round_trip<int8_t>(dir, 0x09, {5}, {-128, -1, 0, 1, 127});
  }
  SECTION("int16, 2-D") {
    check_round_trip<int16_t>(dir, 0x0B, {2, 3}, {-32768, -2, 0, 258, 32767, 4660});
  }
  SECTION("int32, 1-D") {
    check_round_trip<int32_t>(dir, 0x0C, {4}, {INT32_MIN, -2, 0x01020304, INT32_MAX});
  }
  SECTION("float32, 4-D") {
    std::vector<float> values(2 * 1 * 3 * 2);
    for (size_t i = 0; i < values.size(); ++i) values[i] = std::ldexp(float(i) - 5.25f, int(i) - 6);
    values[0] = -0.0f;
    values[1] = 1e-45f;  // denormal
    values[2] = INFINITY;
    const uint32_t nan_with_payload = 0x7FC01234u;
    std::memcpy(&values[3], &nan_with_payload, 4);
    check_round_trip<float>(dir, 0x0D, {2, 1, 3, 2}, values);
  }
  SECTION("float64, 2-D") {
    check_round_trip<double>(dir, 0x0E, {1, 4}, {3.141592653589793, -1e300, 5e-324, -0.0});
  }
  SECTION("a zero dimension gives an empty array") {
    check_round_trip<uint8_t>(dir, 0x08, {0, 28, 28}, {});
  }
}

TEST_CASE("read_idx converts big-endian data to host order", "[idx]") {
  TempDir dir;
  SECTION("int32") {
    const Bytes file = {0, 0, 0x0C, 1, 0, 0, 0, 2, 0x01, 0x02, 0x03, 0x04, 0xFF, 0xFF, 0xFF, 0xFE};
    write_raw(dir.file("i32.idx"), file);
    const IdxArray array = nd::data::read_idx(dir.file("i32.idx"));
    CHECK(array.dims == std::vector<int64_t>{2});
    const std::vector<int32_t> values = nd::data::idx_values<int32_t>(array);
    REQUIRE(values.size() == 2);
    CHECK(values[0] == 0x01020304);
    CHECK(values[1] == -2);
  }
  SECTION("float32") {
    // 1.0f, -3.14159274f (0xC0490FDB) and -0.0f, one per row of a 3x1 array.
    const Bytes file = {0,    0,    0x0D, 2, 0,    0,    0,    3,    0,    0, 0, 1,
                        0x3F, 0x80, 0,    0, 0xC0, 0x49, 0x0F, 0xDB, 0x80, 0, 0, 0};
    write_gzip(dir.file("f32.gz"), file);
    const IdxArray array = nd::data::read_idx(dir.file("f32.gz"));
    CHECK(array.dims == std::vector<int64_t>{3, 1});
    const std::vector<float> values = nd::data::idx_values<float>(array);
    REQUIRE(values.size() == 3);
    CHECK(values[0] == 1.0f);
    CHECK(values[1] == -3.14159274f);
    CHECK(values[2] == 0.0f);
    CHECK(std::signbit(values[2]));
  }
}

TEST_CASE("read_idx handles files larger than its buffers", "[idx]") {
  TempDir dir;
  SECTION("gzip larger than the 1 MiB input chunk, from concatenated members") {
    // 3 MiB of poorly compressible data, split over two gzip members written back to back.
    const Bytes data = pseudo_random_bytes(3 * 1024 * 1024, 42);
    const Bytes file = concat(idx_header(0x08, {3, 1024, 1024}), data);
    const Bytes first(file.begin(), file.begin() + 1000001);
    const Bytes second(file.begin() + 1000001, file.end());
    write_gzip(dir.file("a.gz"), first);
    write_gzip(dir.file("b.gz"), second);
    write_raw(dir.file("two_members.gz"),
              concat(read_file(dir.file("a.gz")), read_file(dir.file("b.gz"))));
    const IdxArray array = nd::data::read_idx(dir.file("two_members.gz"));
    CHECK(array.dims == std::vector<int64_t>{3, 1024, 1024});
    CHECK(array.bytes == data);
  }
  SECTION("raw data larger than the first 64 MiB data chunk") {
    Bytes data(72u << 20);
    for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t((i * 31) >> 3);
    write_raw(dir.file("big.idx"), concat(idx_header(0x08, {72, 1u << 20}), data));
    const IdxArray array = nd::data::read_idx(dir.file("big.idx"));
    CHECK(array.dims == std::vector<int64_t>{72, 1 << 20});
    CHECK(array.bytes == data);
  }
}

TEST_CASE("read_idx reports damaged files with the path and the problem", "[idx]") {
  TempDir dir;

  SECTION("missing file") {
    const std::string path = dir.file("no_such_file.idx");
    check_error_contains([&] { nd::data::read_idx(path); },
                         {"cannot open " + path, "No such file or directory"});
  }
  SECTION("a directory instead of a file") {
    check_error_contains([&] { nd::data::read_idx(dir.path()); },
                         {"cannot read " + dir.path(), "Is a directory"});
  }
  SECTION("empty file") {
    const std::string path = dir.file("empty.idx");
    write_raw(path, {});
    check_error_contains([&] { nd::data::read_idx(path); },
                         {path, "truncated header", "holds 0 bytes"});
  }
  SECTION("truncated header, raw and gzip") {
    const Bytes file = {0, 0, 0x08, 3, 0, 0, 0, 10, 0};  // 3 dims need 16 bytes
    write_raw(dir.file("th.idx"), file);
    write_gzip(dir.file("th.gz"), file);
    for (const std::string& path : {dir.file("th.idx"), dir.file("th.gz")})
      check_error_contains([&] { nd::data::read_idx(path); },
                           {path, "truncated header", "need 16 header bytes", "holds 9"});
  }
  SECTION("bad magic") {
    const std::string path = dir.file("bad_magic.idx");
    write_raw(path, concat({0x01, 0x02, 0x08, 0x01}, Bytes(8, 0)));
    check_error_contains([&] { nd::data::read_idx(path); },
                         {path, "not an IDX file", "bad magic 01 02 08 01"});
  }
  SECTION("unknown element type") {
    const std::string path = dir.file("bad_type.idx");
    write_raw(path, concat(idx_header(0x0A, {4}), Bytes(4, 0)));
    check_error_contains([&] { nd::data::read_idx(path); },
                         {path, "unknown IDX element type 0x0A"});
  }
  SECTION("zero or more than four dimensions") {
    const std::string path0 = dir.file("ndim0.idx");
    write_raw(path0, {0, 0, 0x08, 0});
    check_error_contains([&] { nd::data::read_idx(path0); }, {path0, "declares 0 dimensions"});
    const std::string path5 = dir.file("ndim5.idx");
    write_raw(path5, concat(idx_header(0x08, {1, 1, 1, 1, 1}), Bytes(1, 0)));
    check_error_contains([&] { nd::data::read_idx(path5); }, {path5, "declares 5 dimensions"});
  }
  SECTION("absurd dimensions are refused before any allocation") {
    const std::string path = dir.file("huge.idx");
    write_raw(path, idx_header(0x0C, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}));
    check_error_contains(
        [&] { nd::data::read_idx(path); },
        {path, "4294967295x4294967295x4294967295x4294967295 of int32", "more than 2^34 bytes"});
  }
  SECTION("a header claiming 8 GiB over a tiny file is a truncation, not an allocation") {
    const std::string path = dir.file("claims_8gib.idx");
    write_raw(path, concat(idx_header(0x08, {1u << 31, 4}), Bytes(10, 1)));
    check_error_contains(
        [&] { nd::data::read_idx(path); },
        {path, "truncated: expected 8589934592 bytes of data after the header, found 10"});
  }
  SECTION("truncated data, raw and gzip") {
    const Bytes file = small_u8_file();
    const Bytes cut(file.begin(), file.end() - 10);
    write_raw(dir.file("td.idx"), cut);
    write_gzip(dir.file("td.gz"), cut);
    for (const std::string& path : {dir.file("td.idx"), dir.file("td.gz")})
      check_error_contains(
          [&] { nd::data::read_idx(path); },
          {path, "truncated: expected 40 bytes of data after the header, found 30", "10x4 uint8"});
  }
  SECTION("trailing garbage, raw and gzip") {
    const Bytes file = concat(small_u8_file(), {1, 2, 3});
    write_raw(dir.file("tg.idx"), file);
    write_gzip(dir.file("tg.gz"), file);
    for (const std::string& path : {dir.file("tg.idx"), dir.file("tg.gz")})
      check_error_contains(
          [&] { nd::data::read_idx(path); },
          {path, "trailing garbage: expected 40 bytes of data after the header, found 43"});
  }
  SECTION("corrupt gzip stream") {
    const std::string good = dir.file("good.gz");
    const Bytes data = pseudo_random_bytes(256 * 1024, 3);
    write_gzip(good, concat(idx_header(0x08, {256, 1024}), data));
    REQUIRE(nd::data::read_idx(good).bytes == data);
    Bytes gz = read_file(good);
    REQUIRE(gz.size() > 1000);
    for (size_t i = gz.size() / 2; i < gz.size() / 2 + 16; ++i) gz[i] ^= 0xA5;
    const std::string path = dir.file("corrupt.gz");
    write_raw(path, gz);
    check_error_contains([&] { nd::data::read_idx(path); }, {path, "corrupt gzip data (zlib: "});
  }
  SECTION("gzip with a wrong CRC") {
    Bytes gz;
    write_gzip(dir.file("crc.gz"), small_u8_file());
    gz = read_file(dir.file("crc.gz"));
    gz[gz.size() - 8] ^= 0x01;  // the trailer: CRC-32, then the length
    const std::string path = dir.file("bad_crc.gz");
    write_raw(path, gz);
    check_error_contains([&] { nd::data::read_idx(path); },
                         {path, "corrupt gzip data", "incorrect data check"});
  }
  SECTION("truncated gzip file") {
    write_gzip(dir.file("whole.gz"),
               concat(idx_header(0x08, {64, 1024}), pseudo_random_bytes(64 * 1024, 5)));
    const Bytes gz = read_file(dir.file("whole.gz"));
    const std::string path = dir.file("half.gz");
    write_raw(path, Bytes(gz.begin(), gz.begin() + gz.size() / 2));
    check_error_contains([&] { nd::data::read_idx(path); }, {path, "truncated gzip stream"});
  }
  SECTION("junk after the gzip stream") {
    write_gzip(dir.file("clean.gz"), small_u8_file());
    const std::string path = dir.file("junk_after.gz");
    write_raw(path, concat(read_file(dir.file("clean.gz")), {'j', 'u', 'n', 'k'}));
    check_error_contains([&] { nd::data::read_idx(path); },
                         {path, "unexpected bytes after the end of the gzip stream"});
  }
}

TEST_CASE("read_idx_u8 and idx_values check type and rank", "[idx]") {
  TempDir dir;
  const std::string u8_path = dir.file("u8.idx");
  write_raw(u8_path, small_u8_file());
  CHECK(nd::data::read_idx_u8(u8_path, 2).dims == std::vector<int64_t>{10, 4});
  check_error_contains(
      [&] { nd::data::read_idx_u8(u8_path, 3); },
      {u8_path, "expected a 3-dimensional IDX array", "holds 2 dimensions (10x4)"});

  const std::string i32_path = dir.file("i32.idx");
  write_raw(i32_path, concat(idx_header(0x0C, {2}), big_endian_values<int32_t>({1, 2})));
  check_error_contains([&] { nd::data::read_idx_u8(i32_path, 1); },
                       {i32_path, "expected uint8 elements, the file holds int32"});
  check_error_contains([&] { nd::data::idx_values<float>(nd::data::read_idx(i32_path)); },
                       {"holds int32 elements, asked for float32"});
}

TEST_CASE("load_mnist_split reads a generated directory", "[idx][mnist]") {
  TempDir dir;
  const uint32_t count = 5;
  const Bytes pixels = pseudo_random_bytes(count * 28 * 28, 11);
  const Bytes labels = {3, 0, 9, 9, 1};

  SECTION("train from .gz preferred over the raw name; t10k from raw files") {
    write_gzip(dir.file("train-images-idx3-ubyte.gz"),
               concat(idx_header(0x08, {count, 28, 28}), pixels));
    // A raw twin with different content: the loader must take the .gz.
    write_raw(dir.file("train-images-idx3-ubyte"),
              concat(idx_header(0x08, {count, 28, 28}), Bytes(pixels.size(), 0)));
    write_raw(dir.file("train-labels-idx1-ubyte"), concat(idx_header(0x08, {count}), labels));
    write_raw(
        dir.file("t10k-images-idx3-ubyte"),
        concat(idx_header(0x08, {2, 28, 28}), Bytes(pixels.begin(), pixels.begin() + 2 * 28 * 28)));
    write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), concat(idx_header(0x08, {2}), {7, 8}));

    const nd::data::ImageClassSet train = nd::data::load_mnist_split(dir.path(), true);
    CHECK(train.count == count);
    CHECK(train.channels == 1);
    CHECK(train.height == 28);
    CHECK(train.width == 28);
    CHECK(train.num_classes == 10);
    CHECK(train.pixels == pixels);
    CHECK(train.labels == std::vector<int64_t>{3, 0, 9, 9, 1});

    const nd::data::ImageClassSet test = nd::data::load_mnist_split(dir.path() + "/", false);
    CHECK(test.count == 2);
    CHECK(test.pixels == Bytes(pixels.begin(), pixels.begin() + 2 * 28 * 28));
    CHECK(test.labels == std::vector<int64_t>{7, 8});
  }
}

TEST_CASE("load_mnist_split reports what is wrong and what to do", "[idx][mnist]") {
  TempDir dir;
  const Bytes pixels = pseudo_random_bytes(4 * 28 * 28, 13);
  const std::string images_path = dir.file("train-images-idx3-ubyte");
  const std::string labels_path = dir.file("train-labels-idx1-ubyte");

  SECTION("missing directory") {
    const std::string missing = dir.file("not_here");
    check_error_contains([&] { nd::data::load_mnist_split(missing, true); },
                         {"data directory " + missing + " not found",
                          "apt-get install dataset-fashion-mnist", "--data-dir"});
  }
  SECTION("a file instead of a directory") {
    write_raw(images_path, {});
    check_error_contains([&] { nd::data::load_mnist_split(images_path, true); },
                         {images_path + " is not a directory", "--data-dir"});
  }
  SECTION("missing labels file names both names looked for") {
    write_raw(images_path, concat(idx_header(0x08, {4, 28, 28}), pixels));
    check_error_contains(
        [&] { nd::data::load_mnist_split(dir.path(), true); },
        {dir.path(), "neither train-labels-idx1-ubyte.gz nor train-labels-idx1-ubyte"});
    check_error_contains([&] { nd::data::load_mnist_split(dir.path(), false); },
                         {"neither t10k-images-idx3-ubyte.gz nor t10k-images-idx3-ubyte"});
  }
  SECTION("label out of range") {
    write_raw(images_path, concat(idx_header(0x08, {4, 28, 28}), pixels));
    write_raw(labels_path, concat(idx_header(0x08, {4}), {0, 9, 3, 10}));
    check_error_contains([&] { nd::data::load_mnist_split(dir.path(), true); },
                         {labels_path, "label 10 at index 3 is outside 0..9"});
  }
  SECTION("counts differ") {
    write_raw(images_path, concat(idx_header(0x08, {4, 28, 28}), pixels));
    write_raw(labels_path, concat(idx_header(0x08, {3}), {0, 1, 2}));
    check_error_contains([&] { nd::data::load_mnist_split(dir.path(), true); },
                         {labels_path + " holds 3 labels but " + images_path + " holds 4 images"});
  }
  SECTION("images not 28x28") {
    write_raw(images_path,
              concat(idx_header(0x08, {4, 27, 28}), Bytes(pixels.begin(), pixels.end() - 112)));
    write_raw(labels_path, concat(idx_header(0x08, {4}), {0, 1, 2, 3}));
    check_error_contains([&] { nd::data::load_mnist_split(dir.path(), true); },
                         {images_path, "expected 28x28 images, the file holds 27x28"});
  }
  SECTION("labels stored as int32") {
    write_raw(images_path, concat(idx_header(0x08, {4, 28, 28}), pixels));
    write_raw(labels_path, concat(idx_header(0x0C, {4}), big_endian_values<int32_t>({0, 1, 2, 3})));
    check_error_contains([&] { nd::data::load_mnist_split(dir.path(), true); },
                         {labels_path, "expected uint8 elements, the file holds int32"});
  }
}

TEST_CASE("Fashion-MNIST splits have the published sizes and class counts", "[idx][mnist]") {
  const std::string dir = nd::test::fashion_mnist_dir();
  INFO("Fashion-MNIST folder " << dir << " (apt-get install dataset-fashion-mnist)");
  REQUIRE(fs::is_directory(dir));
  struct Split {
    bool train;
    int64_t count;
  };
  for (const Split split : {Split{false, 10000}, Split{true, 60000}}) {
    INFO((split.train ? "train" : "t10k") << " split of " << dir);
    const nd::data::ImageClassSet set = nd::data::load_mnist_split(dir, split.train);
    CHECK(set.count == split.count);
    CHECK(set.channels == 1);
    CHECK(set.height == 28);
    CHECK(set.width == 28);
    CHECK(set.num_classes == 10);
    REQUIRE(set.pixels.size() == size_t(split.count * 28 * 28));
    REQUIRE(set.labels.size() == size_t(split.count));
    std::vector<int64_t> histogram(10, 0);
    for (int64_t label : set.labels) histogram[label]++;
    CHECK(histogram == std::vector<int64_t>(10, split.count / 10));
    // Both splits begin with an ankle boot (class 9); pixel values span the full range.
    CHECK(set.labels[0] == 9);
    uint8_t lowest = 255, highest = 0;
    for (uint8_t p : set.pixels) {
      lowest = std::min(lowest, p);
      highest = std::max(highest, p);
    }
    CHECK(lowest == 0);
    CHECK(highest == 255);
  }
}
