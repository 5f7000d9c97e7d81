// Fuzz harnesses: one per reader of outside files (IDX raw and gzip, CIFAR records, safetensors,
// images through stb_image, a run's config.json as --resume reads it, nd-infer's input). Each takes
// arbitrary bytes, feeds them to the reader as a file would, and checks what comes back. A reader
// may reject its input only with nd::Error (the clear message users see); any other exception,
// crash, sanitizer report, leak, hang or oversized allocation is a defect. The same functions run
// under libFuzzer (fuzz_main.cpp, one binary per harness) and in the replay tool CI runs over the
// regression inputs of test/fuzz/<harness>/ (nd_fuzz.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nd::fuzz {

using Bytes = std::vector<uint8_t>;

struct Harness {
  const char* name;  // also the folder of its regression inputs under test/fuzz/
  // Whether the reader accepted the input (false: rejected with nd::Error).
  bool (*run)(const uint8_t* data, size_t size);
  // Valid inputs to start fuzzing from, generated here (no third-party files).
  std::vector<std::pair<std::string, Bytes>> (*seeds)();
  size_t max_len;  // libFuzzer's -max_len for this harness
};

const std::vector<Harness>& harnesses();
const Harness* find_harness(const std::string& name);

// A folder for the harnesses' files, created once per process under $TMPDIR and removed at exit.
const std::string& scratch_dir();
void write_file(const std::string& path, const uint8_t* data, size_t size);
Bytes read_file(const std::string& path);
// gzip (one member) of the bytes, at zlib's default level.
Bytes gzip(const Bytes& raw);

// Stops the process (a defect): the harness found an invariant broken.
[[noreturn]] void defect(const std::string& what);

// The harnesses (fuzz_readers.cpp, fuzz_apps.cpp) and their seeds (fuzz_seeds.cpp).
bool fuzz_idx(const uint8_t* data, size_t size);
bool fuzz_idx_gzip(const uint8_t* data, size_t size);
bool fuzz_cifar(const uint8_t* data, size_t size);
bool fuzz_safetensors(const uint8_t* data, size_t size);
bool fuzz_image(const uint8_t* data, size_t size);
bool fuzz_config(const uint8_t* data, size_t size);
bool fuzz_infer(const uint8_t* data, size_t size);

std::vector<std::pair<std::string, Bytes>> idx_seeds();
std::vector<std::pair<std::string, Bytes>> idx_gzip_seeds();
std::vector<std::pair<std::string, Bytes>> cifar_seeds();
std::vector<std::pair<std::string, Bytes>> safetensors_seeds();
std::vector<std::pair<std::string, Bytes>> image_seeds();
std::vector<std::pair<std::string, Bytes>> config_seeds();
std::vector<std::pair<std::string, Bytes>> infer_seeds();

}  // namespace nd::fuzz
