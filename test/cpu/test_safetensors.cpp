// Tests of the safetensors reader and writer: every dtype, scalars, empty and non-contiguous
// tensors and metadata round-trip bit for bit; F16 and BF16 read as float32 and float32 writes as
// them, rounded to nearest even, against bit patterns written here; a small file matches bytes
// built here by hand (length prefix, JSON header, space padding to 8 bytes, little-endian data);
// a file laid out the way PyTorch's safetensors writes it (no padding, keys in any order) loads;
// every kind of damaged file gives an error naming the file and the problem; failed saves leave
// neither a temporary file nor a changed target; and Linear + BatchNorm1d state dicts survive a
// round trip.
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/random.h"
#include "engine/tensor.h"
#include "io/safetensors.h"
#include "layers/batchnorm.h"
#include "layers/linear.h"
#include "layers/module.h"
#include "test/catch.h"
#include "test/temp_dir.h"

namespace {

namespace fs = std::filesystem;
using nd::DType;
using nd::Tensor;
using nd::io::load_safetensors;
using nd::io::save_safetensors;
using Bytes = std::vector<uint8_t>;
using TensorMap = std::map<std::string, Tensor>;

// test/temp_dir.h's directory, named for this file's tests.
struct TempDir : nd::test::TempDir {
  TempDir() : nd::test::TempDir("safetensors") {}
};

// Names of the entries in `dir` that look like a save's temporary file.
std::vector<std::string> temp_files(const TempDir& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    const std::string name = entry.path().filename().string();
    if (name.find(".tmp.") != std::string::npos) found.push_back(name);
  }
  return found;
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

// Little-endian encoders written here, independent of the code under test.
void put_le(Bytes& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(uint8_t(v >> (8 * i)));
}
void put_f32(Bytes& out, float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  put_le(out, bits, 4);
}

// A safetensors file from a header (used as given, no padding added) and a data section.
Bytes st_file(const std::string& header, const Bytes& data = {}) {
  Bytes out;
  put_le(out, header.size(), 8);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// The raw bytes of a tensor's elements in row-major order, whatever its strides.
Bytes tensor_bytes(const Tensor& t) {
  Tensor c = t.detach().contiguous();
  const size_t n = size_t(c.numel()) * nd::dtype_size(c.dtype());
  const uint8_t* p = static_cast<const uint8_t*>(c.raw_data());
  return n ? Bytes(p, p + n) : Bytes();
}

// Same names, dtypes, shapes and bytes; loaded tensors are contiguous CPU tensors.
void require_same(const TensorMap& got, const TensorMap& want) {
  REQUIRE(got.size() == want.size());
  for (const auto& [name, w] : want) {
    INFO("tensor " << name);
    auto it = got.find(name);
    REQUIRE(it != got.end());
    const Tensor& g = it->second;
    CHECK(g.device().is_cpu());
    CHECK(g.is_contiguous());
    CHECK(g.dtype() == w.dtype());
    CHECK(g.shape() == w.shape());
    CHECK(tensor_bytes(g) == tensor_bytes(w));
  }
}

// Loading `path` must throw nd::Error whose message names the file and contains every needle.
void require_load_error(const std::string& path, std::initializer_list<std::string> needles) {
  try {
    load_safetensors(path);
    FAIL("loading " << path << " did not throw; expected an error containing " << *needles.begin());
  } catch (const nd::Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(msg.find(path) != std::string::npos);
    for (const std::string& needle : needles) {
      INFO("expected to find: " << needle);
      CHECK(msg.find(needle) != std::string::npos);
    }
  }
}

// A damaged file written to dir/name must give an error naming it and containing the needles.
void require_bad_file(const TempDir& dir, const std::string& name, const Bytes& bytes,
                      std::initializer_list<std::string> needles) {
  INFO("case " << name);
  const std::string path = dir.file(name);
  write_file(path, bytes);
  require_load_error(path, needles);
}

// A save that must throw nd::Error naming `path` and containing `needle`.
void require_save_error(const std::string& path, const TensorMap& tensors,
                        const std::string& needle,
                        const std::map<std::string, std::string>& metadata = {}) {
  try {
    save_safetensors(path, tensors, metadata);
    FAIL("saving " << path << " did not throw; expected an error containing " << needle);
  } catch (const nd::Error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(msg.find(path) != std::string::npos);
    CHECK(msg.find(needle) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("safetensors round-trips every dtype bit for bit", "[safetensors]") {
  TempDir dir;
  const float fnan = std::numeric_limits<float>::quiet_NaN();
  const float finf = std::numeric_limits<float>::infinity();
  const double dden = std::numeric_limits<double>::denorm_min();
  TensorMap tensors;
  tensors["f32"] = Tensor::from_vector<float>(
      {0.0f, -0.0f, 1.5f, -2.25f, fnan, finf, -finf, 1e-45f, 3.4e38f, 0.1f, -7.0f, 42.0f}, {3, 4});
  tensors["f64"] = Tensor::from_vector<double>(
      {0.1, -0.0, std::numeric_limits<double>::quiet_NaN(), dden, -1.7976931348623157e308, 1.0},
      {2, 1, 3});
  tensors["i32"] = Tensor::from_vector<int32_t>(
      {std::numeric_limits<int32_t>::min(), -1, 0, 1, std::numeric_limits<int32_t>::max()}, {5});
  tensors["i64"] =
      Tensor::from_vector<int64_t>({std::numeric_limits<int64_t>::min(), -1, 0, int64_t(1) << 40,
                                    std::numeric_limits<int64_t>::max(), 7},
                                   {3, 2});
  tensors["u8"] = Tensor::from_vector<uint8_t>({0, 1, 127, 128, 254, 255, 9}, {7});
  const std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors);
  require_same(load_safetensors(path), tensors);
  CHECK(temp_files(dir).empty());

  SECTION("each dtype alone, through several shapes") {
    Tensor big = Tensor::empty({4, 5, 6}, DType::F64);
    double* p = big.data<double>();
    for (int64_t i = 0; i < big.numel(); ++i) p[i] = std::sin(double(i)) * 1e3;
    for (const auto& [name, t] : TensorMap{{"big", big}, {"i32", tensors["i32"]}}) {
      const std::string one = dir.file(name + ".safetensors");
      save_safetensors(one, {{name, t}});
      require_same(load_safetensors(one), {{name, t}});
    }
  }
}

TEST_CASE("safetensors round-trips scalars and empty tensors", "[safetensors]") {
  TempDir dir;
  TensorMap tensors;
  tensors["bn.num_batches_tracked"] = Tensor::from_vector<int64_t>({123456789012345}, {});
  tensors["scalar_f32"] = Tensor::from_vector<float>({-3.5f}, {});
  tensors["scalar_u8"] = Tensor::from_vector<uint8_t>({200}, {});
  tensors["empty_f32"] = Tensor::empty({0}, DType::F32);
  tensors["empty_f64_middle"] = Tensor::empty({2, 0, 3}, DType::F64);
  tensors["empty_i64"] = Tensor::empty({0, 4}, DType::I64);
  tensors["after_empties"] = Tensor::from_vector<int32_t>({5, 6}, {2});
  const std::string path = dir.file("scalars.safetensors");
  save_safetensors(path, tensors);
  TensorMap got = load_safetensors(path);
  require_same(got, tensors);
  REQUIRE(got["bn.num_batches_tracked"].dim() == 0);
  CHECK(got["bn.num_batches_tracked"].dtype() == DType::I64);
  CHECK(got["bn.num_batches_tracked"].data<int64_t>()[0] == 123456789012345);
  CHECK(got["empty_f64_middle"].numel() == 0);

  SECTION("a file of only empty tensors has an empty data section") {
    const std::string only = dir.file("only_empty.safetensors");
    save_safetensors(only, {{"e", Tensor::empty({0, 3}, DType::U8)}});
    require_same(load_safetensors(only), {{"e", Tensor::empty({0, 3}, DType::U8)}});
    const Bytes bytes = read_file(only);
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[i]) << (8 * i);
    CHECK(bytes.size() == 8 + n);
  }
  SECTION("no tensors at all") {
    const std::string none = dir.file("none.safetensors");
    save_safetensors(none, {});
    CHECK(load_safetensors(none).empty());
  }
}

TEST_CASE("safetensors saves non-contiguous views as their values", "[safetensors]") {
  TempDir dir;
  std::vector<float> values(24);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) * 0.5f - 3.0f;
  Tensor base = Tensor::from_vector<float>(values, {2, 3, 4});
  TensorMap views;
  views["transposed"] = base.reshape({6, 4}).transpose(0, 1);
  views["permuted"] = base.permute({2, 0, 1});
  views["strided"] = base.slice(2, 0, 4, 2);
  views["offset"] = base.slice(0, 1, 2);               // contiguous, but starts mid-storage
  views["row"] = base.reshape({6, 4}).slice(1, 1, 2);  // (6, 1) with stride 4
  REQUIRE_FALSE(views["transposed"].is_contiguous());
  REQUIRE_FALSE(views["permuted"].is_contiguous());
  REQUIRE_FALSE(views["strided"].is_contiguous());
  REQUIRE(views["offset"].offset() == 12);
  const std::string path = dir.file("views.safetensors");
  save_safetensors(path, views);
  TensorMap got = load_safetensors(path);
  require_same(got, views);
  for (const auto& [name, v] : views) {
    INFO("tensor " << name);
    CHECK(got[name].to_vector<float>() == v.to_vector<float>());
  }
  // The transposed (4, 6) view: element [1][0] is base element 1.
  CHECK(got["transposed"].to_vector<float>()[6] == values[1]);
}

TEST_CASE("safetensors round-trips metadata", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("meta.safetensors");
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"epoch", "17"},
                                             {"note", "quotes \" backslash \\ newline \n tab \t"},
                                             {"unicode", "r\xC3\xA9seau \xE2\x88\x82"},
                                             {"", "empty key"},
                                             {"empty value", ""}};
  TensorMap tensors = {{"w", Tensor::from_vector<float>({1, 2}, {2})}};
  save_safetensors(path, tensors, meta);
  std::map<std::string, std::string> got = {{"stale", "entry"}};
  require_same(load_safetensors(path, &got), tensors);
  CHECK(got == meta);

  SECTION("a file without metadata clears the caller's map") {
    const std::string plain = dir.file("plain.safetensors");
    save_safetensors(plain, tensors);
    load_safetensors(plain, &got);
    CHECK(got.empty());
    // No "__metadata__" key is written when there is none.
    const Bytes bytes = read_file(plain);
    CHECK(std::string(bytes.begin(), bytes.end()).find("__metadata__") == std::string::npos);
  }
}

TEST_CASE("safetensors writes the exact bytes of the format", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("exact.safetensors");
  TensorMap tensors;
  // Inserted out of order: the file lists tensors sorted by name.
  tensors["c"] = Tensor::from_vector<uint8_t>({1, 2, 3}, {3});
  tensors["a"] = Tensor::from_vector<float>({1.0f, -2.0f}, {2});
  tensors["b"] = Tensor::from_vector<int64_t>({7}, {});
  save_safetensors(path, tensors, {{"step", "12"}, {"format", "pt"}});

  const std::string header =
      "{\"__metadata__\":{\"format\":\"pt\",\"step\":\"12\"},"
      "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]},"
      "\"c\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]}}";
  REQUIRE(header.size() == 204);
  const std::string padded = header + "    ";   // to 208, a multiple of 8
  Bytes expected = {208, 0, 0, 0, 0, 0, 0, 0};  // header length, little-endian uint64
  for (char c : padded) expected.push_back(uint8_t(c));
  const Bytes data = {
      0x00, 0x00, 0x80, 0x3F,                          // 1.0f
      0x00, 0x00, 0x00, 0xC0,                          // -2.0f
      0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // int64 7
      0x01, 0x02, 0x03,                                // uint8 1 2 3
  };
  expected.insert(expected.end(), data.begin(), data.end());
  REQUIRE(expected.size() == 8 + 208 + 19);

  const Bytes got = read_file(path);
  INFO("file: " << std::string(got.begin(), got.end()));
  REQUIRE(got.size() == expected.size());
  CHECK(got == expected);
  // The data section starts 8-byte aligned.
  CHECK((8 + 208) % 8 == 0);
}

namespace {

// float32 bit patterns, compared bitwise (NaN and -0 included).
uint32_t f32_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

std::vector<uint32_t> bits_of(const Tensor& t) {
  std::vector<uint32_t> out;
  for (float f : t.to_vector<float>()) out.push_back(f32_bits(f));
  return out;
}

// The data section of a file our writer made, after its header.
Bytes data_section(const Bytes& file) {
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= uint64_t(file[size_t(i)]) << (8 * i);
  return Bytes(file.begin() + 8 + long(length), file.end());
}

Bytes halves_le(const std::vector<uint16_t>& halves) {
  Bytes b;
  for (uint16_t h : halves) put_le(b, h, 2);
  return b;
}

}  // namespace

TEST_CASE("safetensors reads F16 and BF16 as float32, exactly", "[safetensors]") {
  TempDir dir;
  // binary16: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), -2^-14 (smallest normal),
  // 0.333251953125, +inf, -inf, NaN, -0.
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8400,
                                     0x3555, 0x7C00, 0xFC00, 0x7E00, 0x8000};
  const std::vector<uint32_t> f16_as_f32 = {0x3F800000, 0xC0000000, 0x477FE000, 0x33800000,
                                            0xB8800000, 0x3EAAA000, 0x7F800000, 0xFF800000,
                                            0x7FC00000, 0x80000000};
  // bfloat16 is float32's top half: 1, 3.140625, -123.5, +inf, 2^-133 (subnormal), NaN.
  const std::vector<uint16_t> bf16 = {0x3F80, 0x4049, 0xC2F7, 0x7F80, 0x0001, 0x7FC1};
  Bytes data = halves_le(f16);
  const Bytes b = halves_le(bf16);
  data.insert(data.end(), b.begin(), b.end());
  write_file(dir.file("half.safetensors"),
             st_file("{\"h\":{\"dtype\":\"F16\",\"shape\":[2,5],\"data_offsets\":[0,20]},"
                     "\"b\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[20,32]}}",
                     data));
  const TensorMap got = load_safetensors(dir.file("half.safetensors"));
  REQUIRE(got.at("h").dtype() == DType::F32);
  CHECK(got.at("h").shape() == nd::Shape{2, 5});
  CHECK(bits_of(got.at("h")) == f16_as_f32);
  std::vector<uint32_t> bf16_as_f32;
  for (uint16_t h : bf16) bf16_as_f32.push_back(uint32_t(h) << 16);
  CHECK(bits_of(got.at("b")) == bf16_as_f32);
}

TEST_CASE("safetensors writes float32 as F16 or BF16, rounded to nearest even", "[safetensors]") {
  TempDir dir;
  const float tiny = std::ldexp(1.0f, -24);
  const std::vector<float> values = {
      1.0f,
      1.0f + std::ldexp(1.0f, -11),      // halfway between 1 and the next half: to even, 1
      1.0f + 3 * std::ldexp(1.0f, -11),  // halfway above an odd one: up to 1 + 2^-9
      65504.0f,
      65519.0f,      // below the midpoint to infinity: 65504
      65520.0f,      // the midpoint: to even, infinity
      0.75f * tiny,  // subnormal: rounds to 2^-24
      0.5f * tiny,   // halfway to 0: to even, 0
      -0.0f,
      std::numeric_limits<float>::quiet_NaN(),
      -std::numeric_limits<float>::infinity(),
      std::ldexp(1.0f, -14) * (1.0f - std::ldexp(1.0f, -11))};  // rounds up to the smallest normal
  const std::vector<uint16_t> want_f16 = {0x3C00, 0x3C00, 0x3C02, 0x7BFF, 0x7BFF, 0x7C00,
                                          0x0001, 0x0000, 0x8000, 0x7E00, 0xFC00, 0x0400};
  const std::vector<float> bvalues = {1.0f,
                                      1.0f + std::ldexp(1.0f, -8),
                                      1.0f + 3 * std::ldexp(1.0f, -8),
                                      std::numeric_limits<float>::max(),
                                      -3.140625f,
                                      std::numeric_limits<float>::quiet_NaN()};
  const std::vector<uint16_t> want_bf16 = {0x3F80, 0x3F80, 0x3F82, 0x7F80, 0xC049, 0x7FC0};
  const TensorMap tensors = {
      {"f", Tensor::from_vector(values, {int64_t(values.size())})},
      {"i", Tensor::from_vector<int64_t>({5, -6}, {2})},  // integers stay as they are
      {"d", Tensor::from_vector<double>({0.1}, {1})}};    // as does float64
  auto check = [&](nd::io::FloatStorage storage, const TensorMap& t, const char* dtype,
                   const std::vector<uint16_t>& want) {
    INFO(dtype);
    const std::string path = dir.file(std::string(dtype) + ".safetensors");
    save_safetensors(path, t, {}, storage);
    const Bytes file = read_file(path);
    const std::string text(file.begin(), file.end());
    CHECK(text.find(std::string("\"f\":{\"dtype\":\"") + dtype + "\"") != std::string::npos);
    const Bytes data = data_section(file);
    // Sorted by name: d (F64, 8 bytes), f (halves), i (I64).
    REQUIRE(data.size() == 8 + 2 * want.size() + 16);
    CHECK(Bytes(data.begin() + 8, data.begin() + 8 + long(2 * want.size())) == halves_le(want));
    CHECK(text.find("\"i\":{\"dtype\":\"I64\"") != std::string::npos);
    CHECK(text.find("\"d\":{\"dtype\":\"F64\"") != std::string::npos);
    // Read back: the rounded values, as float32.
    const TensorMap back = load_safetensors(path);
    CHECK(back.at("i").to_vector<int64_t>() == std::vector<int64_t>{5, -6});
    CHECK(back.at("f").dtype() == DType::F32);
  };
  check(nd::io::FloatStorage::F16, tensors, "F16", want_f16);
  const TensorMap btensors = {{"f", Tensor::from_vector(bvalues, {int64_t(bvalues.size())})},
                              {"i", Tensor::from_vector<int64_t>({5, -6}, {2})},
                              {"d", Tensor::from_vector<double>({0.1}, {1})}};
  check(nd::io::FloatStorage::BF16, btensors, "BF16", want_bf16);
  CHECK_THROWS_AS(nd::io::parse_float_storage("FP16", "--save-dtype"), nd::Error);
}

TEST_CASE("safetensors loads a file written the way PyTorch's safetensors writes it",
          "[safetensors]") {
  TempDir dir;
  // Keys in arbitrary order, fields in arbitrary order, data not in key order, no padding.
  const std::string header =
      "{\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]},"
      "\"__metadata__\":{\"format\":\"pt\"},"
      "\"bias\":{\"shape\":[2],\"dtype\":\"F32\",\"data_offsets\":[0,8]},"
      "\"num_batches_tracked\":{\"data_offsets\":[24,32],\"dtype\":\"I64\",\"shape\":[]}}";
  REQUIRE(header.size() % 8 != 0);
  Bytes data;
  put_f32(data, 0.5f);
  put_f32(data, -1.5f);
  for (float w : {1.0f, 2.0f, 3.0f, 4.0f}) put_f32(data, w);
  put_le(data, 3, 8);
  const std::string path = dir.file("torch.safetensors");
  write_file(path, st_file(header, data));

  std::map<std::string, std::string> meta;
  TensorMap got = load_safetensors(path, &meta);
  CHECK(meta == std::map<std::string, std::string>{{"format", "pt"}});
  REQUIRE(got.size() == 3);
  CHECK(got["bias"].shape() == nd::Shape{2});
  CHECK(got["bias"].to_vector<float>() == std::vector<float>{0.5f, -1.5f});
  CHECK(got["weight"].shape() == nd::Shape{2, 2});
  CHECK(got["weight"].to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  CHECK(got["num_batches_tracked"].dim() == 0);
  CHECK(got["num_batches_tracked"].dtype() == DType::I64);
  CHECK(got["num_batches_tracked"].to_vector<int64_t>() == std::vector<int64_t>{3});

  SECTION("whitespace around the JSON and a padded header also load") {
    const std::string spaced = " " + header + "   \n  ";
    const std::string p2 = dir.file("spaced.safetensors");
    write_file(p2, st_file(spaced, data));
    require_same(load_safetensors(p2), got);
  }
}

TEST_CASE("safetensors rejects damaged files with messages naming the file and the problem",
          "[safetensors]") {
  TempDir dir;
  const std::string ok_entry = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
  const Bytes eight(8, 0);

  SECTION("the file itself") {
    require_load_error(dir.file("missing.safetensors"), {"cannot open", "No such file"});
    require_load_error(dir.path(), {"is a directory"});
    require_bad_file(dir, "empty", {}, {"0 bytes", "shorter than the 8-byte header length"});
    require_bad_file(dir, "five", {1, 0, 0, 0, 0}, {"5 bytes", "shorter than"});
  }
  SECTION("the header length") {
    Bytes huge;
    put_le(huge, uint64_t(1) << 40, 8);
    require_bad_file(dir, "huge", huge, {"header length 1099511627776", "100 MB"});
    Bytes just_over;
    put_le(just_over, 100'000'001, 8);
    require_bad_file(dir, "just_over", just_over, {"100 MB"});
    Bytes past = st_file("{}");
    past[0] = 100;
    require_bad_file(dir, "past", past, {"header length 100", "runs past the end of the file"});
  }
  SECTION("the header JSON") {
    require_bad_file(dir, "bad_json", st_file("{\"a\":"), {"not valid JSON"});
    require_bad_file(dir, "garbage", st_file("\x01\x02\x03"), {"not valid JSON"});
    require_bad_file(dir, "bad_utf8", st_file("{\"\xFF\":1}"), {"not valid JSON"});
    require_bad_file(dir, "array", st_file("[1,2]"), {"header is a JSON array", "not an object"});
    require_bad_file(dir, "number", st_file("42"), {"header is a JSON number"});
    require_bad_file(dir, "duplicate",
                     st_file("{\"w\":" + ok_entry + ",\"w\":" + ok_entry + "}", eight),
                     {"'w'", "more than once"});
    require_bad_file(dir, "duplicate_field",
                     st_file("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],"
                             "\"data_offsets\":[0,8]}}",
                             eight),
                     {"repeats the key 'dtype'"});
  }
  SECTION("metadata") {
    require_bad_file(dir, "meta_not_object", st_file("{\"__metadata__\":[1]}"),
                     {"__metadata__", "not an object of strings"});
    require_bad_file(dir, "meta_value", st_file("{\"__metadata__\":{\"epoch\":3}}"),
                     {"__metadata__", "'epoch'", "not a string"});
  }
  SECTION("entry fields") {
    require_bad_file(dir, "entry_number", st_file("{\"w\":5}"), {"tensor 'w'", "not an object"});
    require_bad_file(dir, "no_dtype",
                     st_file("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", eight),
                     {"tensor 'w'", "no \"dtype\""});
    require_bad_file(dir, "no_shape",
                     st_file("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", eight),
                     {"tensor 'w'", "no \"shape\""});
    require_bad_file(dir, "no_offsets", st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", eight),
                     {"tensor 'w'", "no \"data_offsets\""});
    require_bad_file(
        dir, "extra_field",
        st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", eight),
        {"tensor 'w'", "unexpected field 'x'"});
  }
  SECTION("dtypes") {
    auto with_dtype = [&](const std::string& dtype) {
      return st_file("{\"w\":{\"dtype\":" + dtype + ",\"shape\":[2],\"data_offsets\":[0,8]}}",
                     eight);
    };
    // Half precision needs 2 bytes per element: [2] spans 4 bytes, not 8.
    require_bad_file(dir, "bf16", with_dtype("\"BF16\""), {"tensor 'w'", "of BF16 needs 4"});
    require_bad_file(dir, "f16", with_dtype("\"F16\""), {"tensor 'w'", "of F16 needs 4"});
    const std::string supported = "F32, F64, F16 and BF16 (read as F32), I32, I64, U8";
    require_bad_file(dir, "bool", with_dtype("\"BOOL\""),
                     {"tensor 'w'", "BOOL is not supported", supported});
    require_bad_file(dir, "unknown", with_dtype("\"Q7\""),
                     {"tensor 'w'", "unknown dtype 'Q7'", supported});
    require_bad_file(dir, "lowercase", with_dtype("\"f32\""), {"unknown dtype 'f32'"});
    require_bad_file(dir, "dtype_number", with_dtype("4"), {"tensor 'w'", "not a string"});
  }
  SECTION("shapes") {
    auto with_shape = [&](const std::string& shape, const Bytes& data) {
      return st_file("{\"w\":{\"dtype\":\"U8\",\"shape\":" + shape + ",\"data_offsets\":[0," +
                         std::to_string(data.size()) + "]}}",
                     data);
    };
    require_bad_file(dir, "negative_dim", with_shape("[-2,4]", eight),
                     {"tensor 'w'", "negative dimension", "[-2,4]"});
    require_bad_file(dir, "float_dim", with_shape("[2.5]", eight),
                     {"tensor 'w'", "not an integer"});
    require_bad_file(dir, "shape_string", with_shape("\"8\"", eight),
                     {"tensor 'w'", "shape is a JSON string"});
    require_bad_file(dir, "nine_dims", with_shape("[1,1,1,1,1,1,1,1,8]", eight),
                     {"tensor 'w'", "9 dimensions", "at most 8"});
    require_bad_file(dir, "overflow", with_shape("[4294967296,4294967296,16]", eight),
                     {"tensor 'w'", "too many elements"});
    require_bad_file(dir, "wrapping", with_shape("[4294967296,4294967296]", {}),
                     {"tensor 'w'", "too many elements"});
  }
  SECTION("offsets") {
    require_bad_file(
        dir, "offsets_short",
        st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", eight),
        {"tensor 'w'", "not a pair"});
    require_bad_file(
        dir, "offsets_negative",
        st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", eight),
        {"tensor 'w'", "not non-negative integers"});
    require_bad_file(
        dir, "offsets_reversed",
        st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", Bytes(16)),
        {"tensor 'w'", "[8, 0]", "end before they begin"});
    require_bad_file(
        dir, "out_of_range",
        st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", eight),
        {"tensor 'w'", "[8, 16]", "run past the end of the data section (8 bytes)"});
    require_bad_file(
        dir, "wrong_size",
        st_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", Bytes(12)),
        {"tensor 'w'", "span 12 bytes", "[2] of F32 needs 8"});
    require_bad_file(dir, "overlap",
                     st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                             Bytes(12)),
                     {"'a' [0, 8]", "'b' [4, 12]", "overlap"});
    require_bad_file(dir, "same_range",
                     st_file("{\"a\":" + ok_entry + ",\"b\":" + ok_entry + "}", eight),
                     {"'a' [0, 8]", "'b' [0, 8]", "overlap"});
    require_bad_file(dir, "hole",
                     st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                             Bytes(20)),
                     {"bytes [8, 12)", "belong to no tensor", "'b'"});
    require_bad_file(
        dir, "hole_at_start",
        st_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", Bytes(12)),
        {"bytes [0, 4)", "belong to no tensor"});
    require_bad_file(dir, "trailing", st_file("{\"a\":" + ok_entry + "}", Bytes(12)),
                     {"12 bytes", "cover only 8", "4 trailing bytes"});
    require_bad_file(dir, "data_without_tensors", st_file("{}", eight),
                     {"8 bytes", "cover only 0"});
  }
}

TEST_CASE("safetensors saves atomically and leaves nothing behind on failure", "[safetensors]") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const TensorMap good = {{"w", Tensor::from_vector<float>({1, 2, 3}, {3})}};
  save_safetensors(path, good);
  const Bytes before = read_file(path);

  SECTION("an undefined tensor is rejected before anything is written") {
    require_save_error(path, {{"a", Tensor::from_vector<float>({1}, {1})}, {"b", Tensor()}},
                       "tensor 'b' is undefined");
    CHECK(read_file(path) == before);
    CHECK(temp_files(dir).empty());
  }
  SECTION("the reserved name __metadata__ is rejected") {
    require_save_error(path, {{"__metadata__", Tensor::from_vector<float>({1}, {1})}}, "reserved");
    CHECK(read_file(path) == before);
    CHECK(temp_files(dir).empty());
  }
  SECTION("names and metadata must be valid UTF-8") {
    require_save_error(path, {{"bad\xFFname", Tensor::from_vector<float>({1}, {1})}},
                       "not valid UTF-8");
    require_save_error(path, good, "not valid UTF-8", {{"k", "\xC3"}});
    CHECK(read_file(path) == before);
    CHECK(temp_files(dir).empty());
  }
  SECTION("a directory that does not exist: error, nothing created") {
    const std::string missing = dir.file("no_such_dir") + "/model.safetensors";
    require_save_error(missing, good, "No such file or directory");
    CHECK_FALSE(fs::exists(dir.file("no_such_dir")));
  }
  SECTION("a failure after the data is written (rename onto a directory) removes the temp file") {
    const std::string target = dir.file("occupied");
    fs::create_directories(target + "/inside");
    require_save_error(target, good, "Is a directory");
    CHECK(fs::is_directory(target + "/inside"));
    CHECK(temp_files(dir).empty());
    CHECK(read_file(path) == before);
  }
  SECTION("a successful save replaces the file") {
    const TensorMap next = {{"w", Tensor::from_vector<float>({4, 5, 6}, {3})},
                            {"extra", Tensor::from_vector<int64_t>({9}, {})}};
    save_safetensors(path, next);
    require_same(load_safetensors(path), next);
    CHECK(temp_files(dir).empty());
  }
}

TEST_CASE("safetensors carries Linear and BatchNorm1d state dicts between modules",
          "[safetensors]") {
  TempDir dir;
  auto build = [](uint64_t seed) {
    nd::Generator gen(seed);
    auto net = std::make_shared<nd::Sequential>();
    net->push_back(std::make_shared<nd::Linear>(5, 3, true, gen));
    net->push_back(std::make_shared<nd::BatchNorm1d>(3));
    return net;
  };
  auto trained = build(1);
  nd::Generator data_gen(7);
  for (int step = 0; step < 3; ++step)  // moves running stats and num_batches_tracked
    trained->forward(nd::normal_tensor({8, 5}, 0.0, 2.0, data_gen));
  const TensorMap state = trained->state_dict();
  REQUIRE(state.count("0.weight"));
  REQUIRE(state.count("1.running_mean"));
  REQUIRE(state.count("1.num_batches_tracked"));
  CHECK(state.at("1.num_batches_tracked").to_vector<int64_t>() == std::vector<int64_t>{3});

  const std::string path = dir.file("net.safetensors");
  save_safetensors(path, state, {{"format", "pt"}});
  const TensorMap loaded = load_safetensors(path);
  require_same(loaded, state);

  auto fresh = build(99);
  CHECK(tensor_bytes(fresh->state_dict().at("0.weight")) != tensor_bytes(state.at("0.weight")));
  fresh->load_state_dict(loaded);
  require_same(fresh->state_dict(), state);
  CHECK(fresh->state_dict().at("1.num_batches_tracked").to_vector<int64_t>() ==
        std::vector<int64_t>{3});

  trained->eval();
  fresh->eval();
  const Tensor x = nd::normal_tensor({4, 5}, 0.0, 1.0, data_gen);
  CHECK(tensor_bytes(fresh->forward(x)) == tensor_bytes(trained->forward(x)));
}
