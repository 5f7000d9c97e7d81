// Atomic file writes (see atomic_file.h).
#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace nd::io {

namespace {

// Best effort: makes the rename itself durable. Failure here loses nothing already written.
void sync_parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string target)
    : target_(std::move(target)), path_(target_ + ".tmp." + std::to_string(::getpid())) {}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (created_ && !committed_) ::unlink(path_.c_str());
}

int AtomicFile::open() {
  errno = 0;
  file_ = std::fopen(path_.c_str(), "wb");
  if (!file_) return errno ? errno : EIO;
  created_ = true;
  return 0;
}

int AtomicFile::write(const void* data, size_t bytes) {
  if (bytes == 0) return 0;
  errno = 0;
  if (std::fwrite(data, 1, bytes, file_) != bytes) return errno ? errno : EIO;
  return 0;
}

int AtomicFile::flush_sync_close() {
  errno = 0;
  if (std::fflush(file_) != 0) return errno ? errno : EIO;
  if (::fsync(::fileno(file_)) != 0) return errno;
  FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) return errno ? errno : EIO;
  return 0;
}

int AtomicFile::commit() {
  if (std::rename(path_.c_str(), target_.c_str()) != 0) return errno;
  committed_ = true;
  sync_parent_directory(target_);
  return 0;
}

std::string disk_full_advice(int err, const std::string& target) {
  const char* why = err == ENOSPC   ? "the disk is full"
                    : err == EDQUOT ? "the disk quota is used up"
                    : err == EFBIG
                        ? "the file is over the size limit of this process or file system"
                        : nullptr;
  if (!why) return "";
  return std::string("; ") + why + ": free space (or raise the limit) and run again (" + target +
         " is unchanged)";
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  AtomicFile file(path);
  auto check = [&](const char* step, int err) {
    ND_CHECK(err == 0, "cannot write '", path, "': ", step, " the temporary file '", file.path(),
             "' failed: ", std::strerror(err), disk_full_advice(err, path));
  };
  check("creating", file.open());
  check("writing", file.write(bytes.data(), bytes.size()));
  check("flushing", file.flush_sync_close());
  check("renaming", file.commit());
}

}  // namespace nd::io
