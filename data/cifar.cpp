// CIFAR-10 / CIFAR-100 binary readers (see cifar.h): find the split's files in the data directory
// or the archive's folder below it, check every file's size before reading anything, allocate the
// set once, then read each file in large chunks of whole records, splitting labels from pixels.
#include "data/cifar.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <vector>

#include "core/error.h"

namespace nd::data {

namespace {

namespace fs = std::filesystem;

// What differs between the two data sets.
struct CifarFormat {
  const char* name;            // "CIFAR-10"
  const char* archive_folder;  // the folder the official binary archive unpacks to
  const char* archive_url;
  int64_t label_bytes;  // 1 (label) or 2 (coarse label, fine label)
  int64_t record_bytes;
  int64_t num_classes;
};

const CifarFormat kCifar10Format = {
    "CIFAR-10", "cifar-10-batches-bin", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    1,          kCifar10RecordBytes,    kCifar10Classes};
const CifarFormat kCifar100Format = {
    "CIFAR-100", "cifar-100-binary",   "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    2,           kCifar100RecordBytes, kCifar100Classes};

// Records per fread: about 6 MB, so reading runs at disk speed with a small buffer.
constexpr int64_t kRecordsPerRead = 2048;

struct FileCloser {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

bool regular_file_exists(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

std::string unpack_hint(const CifarFormat& format, const std::string& dir) {
  return std::string("download ") + format.archive_url + " and unpack it into " + dir;
}

// The folder holding every one of `names`: dir itself, else dir/<archive folder>.
fs::path find_split_folder(const std::string& dir, const CifarFormat& format, const char* split,
                           const std::vector<std::string>& names) {
  std::error_code ec;
  if (!fs::exists(dir, ec))
    ND_FAIL(format.name, " data directory ", dir, " not found: ", unpack_hint(format, dir));
  if (!fs::is_directory(dir, ec))
    ND_FAIL(format.name, " data directory ", dir,
            " is not a directory: pass the folder that holds the ", format.name, " files");

  const fs::path candidates[2] = {fs::path(dir), fs::path(dir) / format.archive_folder};
  for (const fs::path& folder : candidates) {
    std::vector<std::string> missing;
    for (const std::string& name : names)
      if (!regular_file_exists(folder / name)) missing.push_back(name);
    if (missing.empty()) return folder;
    if (missing.size() < names.size())
      ND_FAIL(folder.string(), " holds only part of the ", format.name, " ", split,
              " split: missing ", join_names(missing), " (looked for ", join_names(names), "); ",
              unpack_hint(format, dir), " again");
  }
  ND_FAIL("no ", format.name, " ", split, " files in ", dir, " or ", candidates[1].string(),
          ": looked for ", join_names(names), "; ", unpack_hint(format, dir));
}

// The size of a split file in records, after checking it is non-empty and whole.
int64_t count_records(const std::string& path, const CifarFormat& format) {
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(path, ec);
  if (ec) ND_FAIL("cannot read the size of ", path, ": ", ec.message());
  if (bytes == 0)
    ND_FAIL(path, ": empty file (0 bytes), a ", format.name, " file holds ", format.record_bytes,
            "-byte records; the download or unpacking was interrupted, download ",
            format.archive_url, " again");
  const uintmax_t record = uintmax_t(format.record_bytes);
  if (bytes % record != 0)
    ND_FAIL(path, ": truncated: ", bytes, " bytes is not a whole number of ", record,
            "-byte records (", bytes / record, " whole records and ", bytes % record,
            " bytes more); the file is incomplete or not a ", format.name, " file, download ",
            format.archive_url, " again");
  return int64_t(bytes / record);
}

// Reads `records` records of `path` into set.pixels / set.labels starting at image `first`.
void read_records(const std::string& path, const CifarFormat& format, int64_t records,
                  int64_t first, ImageClassSet& set) {
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) ND_FAIL("cannot open ", path, ": ", std::strerror(errno));

  const int64_t record_bytes = format.record_bytes;
  std::vector<uint8_t> chunk(size_t(std::min(records, kRecordsPerRead) * record_bytes));
  for (int64_t done = 0; done < records;) {
    const int64_t count = std::min(records - done, kRecordsPerRead);
    const size_t want = size_t(count * record_bytes);
    const size_t got = std::fread(chunk.data(), 1, want, file.get());
    if (got != want) {
      if (std::ferror(file.get())) ND_FAIL("cannot read ", path, ": ", std::strerror(errno));
      ND_FAIL(path, ": the file ended after ", (done * record_bytes + int64_t(got)),
              " bytes while reading it; was it changed meanwhile?");
    }
    for (int64_t r = 0; r < count; ++r) {
      const uint8_t* record = chunk.data() + r * record_bytes;
      const int64_t index_in_file = done + r;
      if (format.label_bytes == 2 && record[0] >= kCifar100CoarseClasses)
        ND_FAIL(path, ": record ", index_in_file, " has coarse label ", int(record[0]),
                ", outside 0..", kCifar100CoarseClasses - 1, "; the file is damaged or not a ",
                format.name, " file");
      const uint8_t label = record[format.label_bytes - 1];
      if (label >= format.num_classes)
        ND_FAIL(path, ": record ", index_in_file, " has label ", int(label), ", outside 0..",
                format.num_classes - 1, "; the file is damaged or not a ", format.name, " file");
      const int64_t image = first + index_in_file;
      set.labels[size_t(image)] = label;
      std::memcpy(set.pixels.data() + image * kCifarImageBytes, record + format.label_bytes,
                  size_t(kCifarImageBytes));
    }
    done += count;
  }
}

ImageClassSet load_cifar_split(const std::string& dir, const CifarFormat& format, bool train,
                               const std::vector<std::string>& names) {
  const fs::path folder = find_split_folder(dir, format, train ? "train" : "test", names);
  std::vector<std::string> paths;
  std::vector<int64_t> records;
  int64_t total = 0;
  for (const std::string& name : names) {
    paths.push_back((folder / name).string());
    records.push_back(count_records(paths.back(), format));
    total += records.back();
  }

  ImageClassSet set;
  set.count = total;
  set.channels = kCifarChannels;
  set.height = kCifarSide;
  set.width = kCifarSide;
  set.num_classes = format.num_classes;
  set.pixels.resize(size_t(total * kCifarImageBytes));
  set.labels.resize(size_t(total));
  int64_t first = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    read_records(paths[i], format, records[i], first, set);
    first += records[i];
  }
  return set;
}

}  // namespace

ImageClassSet load_cifar10(const std::string& dir, bool train) {
  std::vector<std::string> names;
  if (train) {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  return load_cifar_split(dir, kCifar10Format, train, names);
}

ImageClassSet load_cifar100(const std::string& dir, bool train) {
  return load_cifar_split(dir, kCifar100Format, train, {train ? "train.bin" : "test.bin"});
}

}  // namespace nd::data
