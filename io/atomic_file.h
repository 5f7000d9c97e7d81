// Files that appear whole or not at all: written to a temporary file beside the target
// (`path.tmp.<pid>`), flushed and fsync'ed, then renamed over the target, and the rename made
// durable. The temporary file is removed when the writer goes out of scope uncommitted.
// Checkpoints, configurations and CSV rewrites all go through here.
#pragma once
#include <cstdio>
#include <string>

namespace nd::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::string target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Each returns 0 or the errno of the failure.
  int open();
  int write(const void* data, size_t bytes);
  int flush_sync_close();
  int commit();                                      // renames the temporary file over the target
  const std::string& path() const { return path_; }  // of the temporary file

 private:
  std::string target_, path_;
  FILE* file_ = nullptr;
  bool created_ = false, committed_ = false;
};

// For a write that failed with errno `err`: when the disk or quota is full (ENOSPC, EDQUOT) or the
// file is over the size limit (EFBIG), "; <why>: free space and run again (<target> is
// unchanged)", else "".
std::string disk_full_advice(int err, const std::string& target);

// Writes `bytes` to `path` atomically; throws nd::Error naming the path and the OS error.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace nd::io
