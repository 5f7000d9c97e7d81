// SHA-256 (FIPS 180-4) of bytes and of files: config.json records which weights a run started
// from, so that a run started again, or a reader of the run, can tell the file has not changed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace nd::io {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t bytes);
  std::string hex_digest();  // lowercase, 64 characters; ends the hash

 private:
  void block(const unsigned char* p);
  uint32_t state_[8];
  unsigned char buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& bytes);
// Throws nd::Error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace nd::io
