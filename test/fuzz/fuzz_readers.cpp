// Harnesses of the data readers (see harnesses.h): IDX raw and through gzip, CIFAR records,
// safetensors, images. Beyond "no crash, only nd::Error", each checks what a successful read
// returns: sizes that agree with the header, raw and gzip reading the same array, a safetensors
// file that writes back and reads again unchanged, a decoded image the transforms accept.
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "data/cifar.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "data/image_transforms.h"
#include "engine/random.h"
#include "io/safetensors.h"
#include "test/fuzz/harnesses.h"

namespace nd::fuzz {

namespace fs = std::filesystem;

namespace {

// The array, or nothing when the reader rejected the file with nd::Error.
std::optional<data::IdxArray> try_read_idx(const std::string& path) {
  try {
    data::IdxArray a = data::read_idx(path);
    if (a.dims.empty() || a.dims.size() > 4)
      defect("IDX array with " + std::to_string(a.dims.size()) + " dimensions");
    const uint64_t expected =
        uint64_t(a.element_count()) * uint64_t(data::idx_element_size(a.type));
    if (a.bytes.size() != expected)
      defect("IDX array of " + std::to_string(a.bytes.size()) + " bytes, header says " +
             std::to_string(expected));
    return a;
  } catch (const Error&) {
    return std::nullopt;
  }
}

}  // namespace

bool fuzz_idx(const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/input.idx";
  write_file(path, data, size);
  return try_read_idx(path).has_value();
}

bool fuzz_idx_gzip(const uint8_t* data, size_t size) {
  // The same bytes raw and gzip-compressed must read the same (or both fail).
  const std::string raw_path = scratch_dir() + "/input.idx", gz_path = raw_path + ".gz";
  write_file(raw_path, data, size);
  const Bytes packed = gzip(Bytes(data, data + size));
  write_file(gz_path, packed.data(), packed.size());
  const auto raw = try_read_idx(raw_path), gz = try_read_idx(gz_path);
  const bool raw_is_gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (raw_is_gzip) return gz.has_value();  // the raw file is then read as gzip itself
  if (raw.has_value() != gz.has_value())
    defect(std::string("raw IDX ") + (raw ? "reads" : "fails") + " but gzip IDX " +
           (gz ? "reads" : "fails"));
  if (raw && (raw->type != gz->type || raw->dims != gz->dims || raw->bytes != gz->bytes))
    defect("raw and gzip IDX read different arrays");
  return gz.has_value();
}

bool fuzz_cifar(const uint8_t* data, size_t size) {
  // First byte: bit 0 CIFAR-100, bit 1 the archive's folder below the data directory.
  if (size == 0) return false;
  const bool c100 = data[0] & 1, archive = data[0] & 2;
  const fs::path dir = fs::path(scratch_dir()) / "cifar";
  std::error_code ec;
  fs::remove_all(dir, ec);
  const fs::path folder =
      archive ? dir / (c100 ? "cifar-100-binary" : "cifar-10-batches-bin") : dir;
  fs::create_directories(folder);
  write_file((folder / (c100 ? "test.bin" : "test_batch.bin")).string(), data + 1, size - 1);
  data::ImageClassSet set;
  try {
    set = c100 ? data::load_cifar100(dir.string(), false) : data::load_cifar10(dir.string(), false);
  } catch (const Error&) {
    return false;
  }
  const int64_t record = c100 ? data::kCifar100RecordBytes : data::kCifar10RecordBytes;
  if (set.count * record != int64_t(size - 1) ||
      set.pixels.size() != size_t(set.count * data::kCifarImageBytes) ||
      set.labels.size() != size_t(set.count))
    defect("CIFAR set sizes disagree with the file");
  for (int64_t label : set.labels)
    if (label < 0 || label >= set.num_classes) defect("CIFAR label out of range");
  return true;
}

bool fuzz_safetensors(const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/input.safetensors";
  write_file(path, data, size);
  std::map<std::string, std::string> meta;
  std::map<std::string, Tensor> tensors;
  try {
    tensors = io::load_safetensors(path, &meta);
  } catch (const Error&) {
    return false;
  }
  for (const auto& [name, t] : tensors)
    if (!t.device().is_cpu() || !t.is_contiguous())
      defect("tensor '" + name + "' is not host-contiguous");
  // What was read writes back and reads again unchanged.
  const std::string copy = scratch_dir() + "/copy.safetensors";
  std::map<std::string, std::string> meta2;
  std::map<std::string, Tensor> again;
  try {
    io::save_safetensors(copy, tensors, meta);
    again = io::load_safetensors(copy, &meta2);
  } catch (const Error& e) {
    defect(std::string("a file that loads does not write back: ") + e.what());
  }
  if (meta2 != meta || again.size() != tensors.size()) defect("safetensors round trip differs");
  for (const auto& [name, t] : tensors) {
    auto it = again.find(name);
    if (it == again.end() || it->second.dtype() != t.dtype() || it->second.shape() != t.shape())
      defect("safetensors round trip changes tensor '" + name + "'");
    const size_t bytes = size_t(t.numel()) * dtype_size(t.dtype());
    if (bytes && std::memcmp(t.raw_data(), it->second.raw_data(), bytes) != 0)
      defect("safetensors round trip changes the data of '" + name + "'");
  }
  return true;
}

bool fuzz_image(const uint8_t* data, size_t size) {
  // Through an image folder with skip_bad (the header check on the file, then the decode), as
  // nd-train --skip-bad-images reads it, and through decode_image_file directly.
  const fs::path root = fs::path(scratch_dir()) / "images";
  std::error_code ec;
  fs::remove_all(root, ec);
  fs::create_directories(root / "c");
  const std::string path = (root / "c" / "input.png").string();
  write_file(path, data, size);
  data::RgbImage image;
  try {
    image = data::decode_image_file(path);
  } catch (const Error&) {
    image = {};
  }
  if (image.height > 0) {
    if (image.width <= 0 || image.pixels.size() != size_t(image.height * image.width * 3))
      defect("decoded image sizes disagree");
    Generator gen(1);
    std::vector<float> out(3 * 16 * 16);
    try {
      data::apply_image_transform(data::imagenet_eval_transform(16, 18), image, gen, out.data());
      data::apply_image_transform(data::imagenet_train_transform(16), image, gen, out.data());
    } catch (const Error& e) {
      defect(std::string("the transforms reject a decoded image: ") + e.what());
    }
  }
  data::ImageFolderOptions options;
  options.size = 16;
  options.resize = 18;
  options.skip_bad = true;
  try {
    data::ImageFolderDataset set(root.string(), options);
    Generator gen(2);
    std::vector<float> out(3 * 16 * 16);
    set.load(0, gen, out.data());
  } catch (const Error&) {
  }
  return image.height > 0;
}

}  // namespace nd::fuzz
