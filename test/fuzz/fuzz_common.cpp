// The harness table and the helpers every harness shares (see harnesses.h).
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include "test/fuzz/harnesses.h"

namespace nd::fuzz {

namespace fs = std::filesystem;

const std::vector<Harness>& harnesses() {
  static const std::vector<Harness> table = {
      {"idx", fuzz_idx, idx_seeds, 1 << 16},
      {"idx_gzip", fuzz_idx_gzip, idx_gzip_seeds, 1 << 16},
      {"cifar", fuzz_cifar, cifar_seeds, 1 << 16},
      {"safetensors", fuzz_safetensors, safetensors_seeds, 1 << 14},
      {"image", fuzz_image, image_seeds, 1 << 16},
      {"config", fuzz_config, config_seeds, 1 << 12},
      {"infer", fuzz_infer, infer_seeds, 1 << 16},
  };
  return table;
}

const Harness* find_harness(const std::string& name) {
  for (const Harness& h : harnesses())
    if (name == h.name) return &h;
  return nullptr;
}

namespace {

// Never destroyed, so the exit handler can still read it.
const std::string* scratch_path = nullptr;

void remove_scratch() {
  std::error_code ec;
  fs::remove_all(*scratch_path, ec);
}

}  // namespace

const std::string& scratch_dir() {
  if (!scratch_path) {
    const fs::path path = fs::temp_directory_path() / ("nd_fuzz_" + std::to_string(::getpid()));
    fs::create_directories(path);
    scratch_path = new std::string(path.string());
    std::atexit(remove_scratch);
  }
  return *scratch_path;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) defect("cannot create the scratch file " + path);
  if (size > 0 && std::fwrite(data, 1, size, f) != size) defect("cannot write " + path);
  if (std::fclose(f) != 0) defect("cannot write " + path);
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) defect("cannot read " + path);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

Bytes gzip(const Bytes& raw) {
  z_stream zs{};
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK)
    defect("deflateInit2 failed");
  Bytes out(deflateBound(&zs, uLong(raw.size())) + 32);
  zs.next_in = const_cast<Bytef*>(raw.data());
  zs.avail_in = uInt(raw.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  const int rc = deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  if (rc != Z_STREAM_END) defect("deflate did not finish");
  return out;
}

void defect(const std::string& what) {
  std::cerr << "nd-fuzz: defect: " << what << std::endl;
  std::abort();
}

}  // namespace nd::fuzz
