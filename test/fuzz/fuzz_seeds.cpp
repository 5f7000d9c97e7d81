// Seed inputs of the harnesses (see harnesses.h), all generated here: IDX arrays of every element
// type (raw and gzip), CIFAR-10/100 records, safetensors files of every dtype written by our
// writer, PNG / JPEG / BMP through stb_image_write, GIF and PGM/PPM built byte by byte, run
// configurations, and nd-infer inputs in F32, F16 and BF16.
#include <cmath>
#include <cstring>

#include "apps/train_config.h"
#include "engine/random.h"
#include "io/safetensors.h"
#include "test/fuzz/harnesses.h"

#if ND_WITH_STB
#include "stb_image_write.h"
#endif

namespace nd::fuzz {

namespace {

using Seeds = std::vector<std::pair<std::string, Bytes>>;

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
}

void put_le(Bytes& b, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b.push_back(uint8_t(v >> (8 * i)));
}

// An IDX file: type code, dimensions, then `element_bytes` bytes per element counting up.
Bytes idx_file(uint8_t type, const std::vector<uint32_t>& dims, int element_bytes) {
  Bytes b = {0, 0, type, uint8_t(dims.size())};
  uint64_t count = 1;
  for (uint32_t d : dims) {
    put_be32(b, d);
    count *= d;
  }
  for (uint64_t i = 0; i < count * uint64_t(element_bytes); ++i) b.push_back(uint8_t(i * 7));
  return b;
}

Seeds raw_idx_seeds() {
  return {{"u8_images", idx_file(0x08, {3, 4, 4}, 1)}, {"u8_labels", idx_file(0x08, {5}, 1)},
          {"i8_4d", idx_file(0x09, {1, 2, 2, 2}, 1)},  {"i16", idx_file(0x0B, {2, 3}, 2)},
          {"i32", idx_file(0x0C, {3, 2}, 4)},          {"f32", idx_file(0x0D, {4}, 4)},
          {"f64", idx_file(0x0E, {2, 2}, 8)},          {"empty", idx_file(0x08, {0, 28, 28}, 1)}};
}

// The bytes of a safetensors file written by our writer.
Bytes safetensors_bytes(const std::map<std::string, Tensor>& tensors,
                        const std::map<std::string, std::string>& meta = {},
                        io::FloatStorage floats = io::FloatStorage::F32) {
  const std::string path = scratch_dir() + "/seed.safetensors";
  io::save_safetensors(path, tensors, meta, floats);
  return read_file(path);
}

#if ND_WITH_STB
// A small pattern image with `channels` interleaved channels.
Bytes pattern(int width, int height, int channels) {
  Bytes p;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c) p.push_back(uint8_t(x * 40 + y * 17 + c * 90));
  return p;
}

void append_to(void* context, void* data, int size) {
  Bytes* out = static_cast<Bytes*>(context);
  const uint8_t* d = static_cast<const uint8_t*>(data);
  out->insert(out->end(), d, d + size);
}
#endif

// A GIF89a of 4-colour pixels: LZW with a clear code before every pair of literals, so the code
// width stays 3 bits (an encoder needing no dictionary).
Bytes gif(int width, int height, bool interlaced = false) {
  Bytes b = {'G', 'I', 'F', '8', '9', 'a'};
  put_le(b, uint32_t(width), 2);
  put_le(b, uint32_t(height), 2);
  b.insert(b.end(), {0x81, 0, 0});  // global colour table of 4 entries
  b.insert(b.end(), {0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255});
  b.insert(b.end(), {0x21, 0xF9, 4, 0, 0, 0, 0, 0});  // graphic control extension
  b.push_back(0x2C);
  put_le(b, 0, 2);
  put_le(b, 0, 2);
  put_le(b, uint32_t(width), 2);
  put_le(b, uint32_t(height), 2);
  b.push_back(interlaced ? 0x40 : 0);
  b.push_back(2);  // LZW minimum code size
  std::vector<int> codes;
  for (int i = 0; i < width * height; ++i) {
    if (i % 2 == 0) codes.push_back(4);  // clear
    codes.push_back((i * 3 + i / width) % 4);
  }
  codes.push_back(5);  // end of information
  Bytes packed;
  uint32_t bits = 0;
  int count = 0;
  for (int c : codes) {
    bits |= uint32_t(c) << count;
    count += 3;
    while (count >= 8) {
      packed.push_back(uint8_t(bits));
      bits >>= 8;
      count -= 8;
    }
  }
  if (count > 0) packed.push_back(uint8_t(bits));
  for (size_t i = 0; i < packed.size(); i += 255) {
    const size_t n = std::min<size_t>(255, packed.size() - i);
    b.push_back(uint8_t(n));
    b.insert(b.end(), packed.begin() + long(i), packed.begin() + long(i + n));
  }
  b.push_back(0);     // block terminator
  b.push_back(0x3B);  // trailer
  return b;
}

Bytes pnm(char kind, int width, int height) {
  const int channels = kind == '5' ? 1 : 3;
  const std::string header = std::string("P") + kind + "\n" + std::to_string(width) + " " +
                             std::to_string(height) + "\n255\n";
  Bytes b(header.begin(), header.end());
  for (int i = 0; i < width * height * channels; ++i) b.push_back(uint8_t(i * 13));
  return b;
}

Bytes text(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

}  // namespace

Seeds idx_seeds() {
  Seeds seeds = raw_idx_seeds();
  for (const auto& [name, bytes] : raw_idx_seeds()) seeds.push_back({name + "_gz", gzip(bytes)});
  return seeds;
}

Seeds idx_gzip_seeds() {
  return raw_idx_seeds();
}

Seeds cifar_seeds() {
  Seeds seeds;
  for (int mode = 0; mode < 4; ++mode) {
    const bool c100 = mode & 1;
    Bytes b = {uint8_t(mode)};
    for (int r = 0; r < 2; ++r) {
      if (c100) b.push_back(uint8_t(r + 3));  // coarse label
      b.push_back(uint8_t(r + 1));
      for (int i = 0; i < 3072; ++i) b.push_back(uint8_t(i + r));
    }
    seeds.push_back({"mode" + std::to_string(mode), b});
  }
  return seeds;
}

Seeds safetensors_seeds() {
  Generator gen(3);
  Tensor w = normal_tensor({3, 4}, 0, 1, gen);
  std::map<std::string, Tensor> all = {{"f32", w},
                                       {"f64", w.to(DType::F64)},
                                       {"i32", Tensor::from_vector<int32_t>({1, -2, 3}, {3})},
                                       {"i64", Tensor::from_vector<int64_t>({7}, {})},
                                       {"u8", Tensor::from_vector<uint8_t>({1, 2, 3, 4}, {2, 2})},
                                       {"empty", Tensor::zeros({0, 5})}};
  return {{"all_dtypes", safetensors_bytes(all, {{"format", "pt"}, {"epoch", "3"}})},
          {"f16", safetensors_bytes({{"w", w}, {"n", Tensor::from_vector<int64_t>({1}, {1})}}, {},
                                    io::FloatStorage::F16)},
          {"bf16", safetensors_bytes({{"w", w}}, {}, io::FloatStorage::BF16)},
          {"empty_file", safetensors_bytes({})},
          {"pytorch_layout", [] {
             // Keys out of order and no padding, as other writers produce.
             const std::string h =
                 "{\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[8,12]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
             Bytes b;
             put_le(b, uint32_t(h.size()), 4);
             put_le(b, 0, 4);
             b.insert(b.end(), h.begin(), h.end());
             for (uint8_t v : {0, 0, 128, 63, 0, 0, 0, 64, 0, 60, 0, 192}) b.push_back(v);
             return b;
           }()}};
}

Seeds image_seeds() {
  Seeds seeds = {{"gif", gif(5, 3)},
                 {"gif_interlaced", gif(4, 9, true)},
                 {"pgm", pnm('5', 3, 2)},
                 {"ppm", pnm('6', 2, 3)}};
#if ND_WITH_STB
  for (int channels : {1, 2, 3, 4}) {
    Bytes png;
    const Bytes p = pattern(7, 5, channels);
    stbi_write_png_to_func(append_to, &png, 7, 5, channels, p.data(), 7 * channels);
    seeds.push_back({"png" + std::to_string(channels), png});
  }
  for (int quality : {30, 90}) {
    Bytes jpg;
    const Bytes p = pattern(17, 9, 3);
    stbi_write_jpg_to_func(append_to, &jpg, 17, 9, 3, p.data(), quality);
    seeds.push_back({"jpeg_q" + std::to_string(quality), jpg});
  }
  for (int channels : {3, 4}) {
    Bytes bmp;
    const Bytes p = pattern(5, 3, channels);
    stbi_write_bmp_to_func(append_to, &bmp, 5, 3, channels, p.data());
    seeds.push_back({"bmp" + std::to_string(channels), bmp});
  }
#endif
  return seeds;
}

Seeds config_seeds() {
  TrainConfig cifar;
  TrainConfig fashion;
  fashion.dataset = "fashion-mnist";
  fashion.arch = "mlp";
  fashion.norm = "nd";
  fashion.optimizer = "adam";
  fashion.save_dtype = "BF16";
  TrainConfig imagenet;
  imagenet.dataset = "imagenet";
  imagenet.lr_scheduler = "multistep";
  imagenet.freeze = true;
  return {{"cifar", text(to_json(cifar))},
          {"fashion", text(to_json(fashion))},
          {"imagenet", text(to_json(imagenet))},
          {"partial", text("{\"epochs\": 3, \"lr\": 0.05, \"seed\": 18446744073709551615}")}};
}

Seeds infer_seeds() {
  Generator gen(5);
  Tensor x = normal_tensor({2, 1, 28, 28}, 0, 1, gen);
  return {{"f32", safetensors_bytes({{"input", x.slice(0, 0, 1)}})},
          {"f16", safetensors_bytes({{"input", x}}, {}, io::FloatStorage::F16)},
          {"bf16", safetensors_bytes({{"input", x.slice(0, 1, 2)}}, {}, io::FloatStorage::BF16)}};
}

}  // namespace nd::fuzz
