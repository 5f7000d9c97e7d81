// Image-folder sets (see image_folder.h): the file listing, decoding through stb_image (when the
// build found libstb-dev; see CMakeLists.txt) and the skip_bad policy.
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <utility>

#include "core/error.h"
#include "data/image_format.h"
#include "data/jpeg_decoder.h"

#if ND_WITH_STB
#include "stb_image.h"
#endif

namespace nd::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kNoStb =
    "this build has no image decoder: install libstb-dev (apt-get install libstb-dev), then "
    "re-run cmake and rebuild";

// At most this many other files of the class are tried in place of one that fails to decode.
constexpr int64_t kMaxSubstituteTries = 16;

bool has_image_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp" || ext == ".ppm";
}

// The image files under a class folder, recursively, sorted by folder and then by name (the
// order of torchvision's sorted(os.walk(...)) with sorted file names).
std::vector<std::string> list_class_files(const fs::path& dir) {
  std::vector<std::pair<std::string, std::string>> found;  // (folder, file name)
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec);
  ND_CHECK(!ec, "cannot list image folder ", dir.string(), ": ", ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    ND_CHECK(!ec, "cannot list image folder ", dir.string(), ": ", ec.message());
    if (it->is_regular_file(ec) && has_image_extension(it->path()))
      found.emplace_back(it->path().parent_path().string(), it->path().filename().string());
  }
  ND_CHECK(!ec, "cannot list image folder ", dir.string(), ": ", ec.message());
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (const auto& [folder, file] : found) paths.push_back((fs::path(folder) / file).string());
  return paths;
}

#if ND_WITH_STB
std::vector<uint8_t> read_file(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  ND_CHECK(in, "cannot read image ", path, ": ", std::strerror(errno ? errno : ENOENT));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  ND_CHECK(!in.bad(), "cannot read image ", path, ": read error");
  return bytes;
}

// Bytes of a file's start read to check its header: enough for the segments before a JPEG's
// frame header in nearly every file (EXIF and ICC profiles); the whole file is read otherwise.
constexpr size_t kHeaderBytes = 256 * 1024;

// Empty when the file starts like an accepted format, its start passes image_data_problem,
// stb_image reads its header and the size claimed fits the file; else the reason. Damage beyond
// the header shows when the file is decoded.
std::string header_problem(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string("cannot read (") + std::strerror(errno ? errno : ENOENT) + ")";
  std::error_code ec;
  const uint64_t file_bytes = uint64_t(fs::file_size(path, ec));
  if (ec) return "cannot read (" + ec.message() + ")";
  std::vector<uint8_t> head(size_t(std::min<uint64_t>(file_bytes, kHeaderBytes)));
  in.read(reinterpret_cast<char*>(head.data()), std::streamsize(head.size()));
  head.resize(size_t(in.gcount()));
  const ImageFormat* format = find_image_format(head.data(), head.size());
  if (!format) return std::string("not an image in a known format (") + kKnownImageFormats + ")";
  int width = 0, height = 0, channels = 0;
  for (bool whole = head.size() == file_bytes;; whole = true) {
    if (whole && head.size() < file_bytes) head = read_file(path);
    std::string problem = image_data_problem(*format, head.data(), head.size(), false);
    if (!problem.empty()) return "not a readable image (" + problem + ")";
    if (stbi_info_from_memory(head.data(), int(head.size()), &width, &height, &channels) == 1 &&
        width > 0 && height > 0)
      break;
    if (whole) {
      const char* reason = stbi_failure_reason();
      return std::string("not a readable image (") + (reason ? reason : "unknown format") + ")";
    }
  }
  const std::string problem =
      image_size_problem(*format, head.data(), head.size(), file_bytes, width, height);
  return problem.empty() ? problem : "not a readable image (" + problem + ")";
}
#endif

}  // namespace

std::vector<std::string> list_image_files(const std::string& dir) {
  return list_class_files(dir);
}

bool image_decoding_available() {
#if ND_WITH_STB
  return true;
#else
  return false;
#endif
}

RgbImage decode_image_file(const std::string& path) {
#if ND_WITH_STB
  const std::vector<uint8_t> bytes = read_file(path);
  ND_CHECK(!bytes.empty(), "cannot decode image ", path, ": the file is empty");
  ND_CHECK(bytes.size() <= size_t(INT32_MAX), "cannot decode image ", path, ": ", bytes.size(),
           " bytes is over stb_image's 2 GiB limit");
  const ImageFormat* format = find_image_format(bytes.data(), bytes.size());
  ND_CHECK(format, "cannot decode image ", path, ": not an image in a known format (",
           kKnownImageFormats, ")");
  std::string problem = image_data_problem(*format, bytes.data(), bytes.size(), true);
  ND_CHECK(problem.empty(), "cannot decode image ", path, ": ", problem);
  int width = 0, height = 0, channels = 0;
  if (stbi_info_from_memory(bytes.data(), int(bytes.size()), &width, &height, &channels) != 1) {
    const char* reason = stbi_failure_reason();
    ND_FAIL("cannot decode image ", path, ": ", reason ? reason : "unknown error",
            " (corrupt, truncated or not an image)");
  }
  ND_CHECK(width > 0 && height > 0, "cannot decode image ", path, ": its ", format->name,
           " header claims ", width, "x", height, " pixels (the file is damaged)");
  problem = image_size_problem(*format, bytes.data(), bytes.size(), bytes.size(), width, height);
  ND_CHECK(problem.empty(), "cannot decode image ", path, ": ", problem);
#if ND_WITH_LIBJPEG
  if (std::string(format->name) == "JPEG") {  // never stb_image's JPEG decoder (jpeg_decoder.h)
    RgbImage image;
    const JpegSizeCheck size_ok = [](int w, int h, const void* ctx) {
      // libjpeg's header must agree with the one stbi_info read and checked above.
      const int* checked = static_cast<const int*>(ctx);
      return w == checked[0] && h == checked[1]
                 ? std::string()
                 : "libjpeg reads a " + std::to_string(w) + "x" + std::to_string(h) +
                       " header where stb_image read " + std::to_string(checked[0]) + "x" +
                       std::to_string(checked[1]);
    };
    const int checked[2] = {width, height};
    std::string reason;
    if (!decode_jpeg_rgb(bytes.data(), bytes.size(), size_ok, checked, image, reason))
      ND_FAIL("cannot decode image ", path, ": ", reason);
    return image;
  }
#endif
  // 3 requested channels: stb_image replicates gray and drops alpha.
  stbi_uc* pixels =
      stbi_load_from_memory(bytes.data(), int(bytes.size()), &width, &height, &channels, 3);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    ND_FAIL("cannot decode image ", path, ": ", reason ? reason : "unknown error",
            " (corrupt, truncated or not an image)");
  }
  RgbImage image;
  image.height = height;
  image.width = width;
  image.pixels.assign(pixels, pixels + size_t(height) * size_t(width) * 3);
  stbi_image_free(pixels);
  return image;
#else
  ND_FAIL("cannot decode image ", path, ": ", kNoStb);
#endif
}

ImageTransform image_folder_transform(const ImageFolderOptions& options) {
  ImageTransform t = options.train ? imagenet_train_transform(options.size)
                                   : imagenet_eval_transform(options.size, options.resize);
  t.normalize = options.normalize;
  return t;
}

ImageFolderDataset::ImageFolderDataset(const std::string& root, ImageFolderOptions options)
    : root_(root), options_(std::move(options)), transform_(image_folder_transform(options_)) {
  name_ = options_.name.empty() ? root_ : options_.name;
  ND_CHECK(image_decoding_available(), "image folder ", root_, ": ", kNoStb);
  check_image_transform(transform_);
  std::error_code ec;
  ND_CHECK(fs::exists(root_, ec), "image folder ", root_, " does not exist");
  ND_CHECK(fs::is_directory(root_, ec), "image folder ", root_, " is not a directory");

  std::set<std::string> class_names;  // sorted
  for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec)) class_names.insert(it->path().filename().string());
  ND_CHECK(!ec, "cannot list image folder ", root_, ": ", ec.message());
  ND_CHECK(!class_names.empty(), "image folder ", root_,
           " has no class folders (expected root/<class>/<image files>)");
  classes_.assign(class_names.begin(), class_names.end());

  for (size_t c = 0; c < classes_.size(); ++c) {
    class_begin_.push_back(int64_t(paths_.size()));
    const fs::path dir = fs::path(root_) / classes_[c];
    int64_t kept = 0;
    for (std::string& path : list_class_files(dir)) {
#if ND_WITH_STB
      if (options_.skip_bad) {
        std::string problem = header_problem(path);
        if (!problem.empty()) {
          skipped_.push_back({path, std::move(problem)});
          continue;
        }
      }
#endif
      paths_.push_back(std::move(path));
      labels_.push_back(int64_t(c));
      ++kept;
    }
    ND_CHECK(kept > 0, "image folder ", root_, ": class folder ", dir.string(),
             " has no image files (.jpg .jpeg .png .bmp .ppm)",
             options_.skip_bad ? " that stb_image can read" : "");
  }
  class_begin_.push_back(int64_t(paths_.size()));
}

Shape ImageFolderDataset::sample_shape() const {
  return {3, transform_.size, transform_.size};
}

int64_t ImageFolderDataset::label(int64_t index) const {
  ND_CHECK(index >= 0 && index < size(), name_, ": sample ", index, " is outside 0..", size() - 1);
  return labels_[size_t(index)];
}

const std::string& ImageFolderDataset::path(int64_t index) const {
  ND_CHECK(index >= 0 && index < size(), name_, ": sample ", index, " is outside 0..", size() - 1);
  return paths_[size_t(index)];
}

std::vector<BadImage> ImageFolderDataset::failed_files() const {
  std::lock_guard<std::mutex> lock(failed_mutex_);
  return failed_;
}

RgbImage ImageFolderDataset::decode_or_substitute(int64_t index) const {
  if (!options_.skip_bad) return decode_image_file(paths_[size_t(index)]);
  std::string error;
  try {
    return decode_image_file(paths_[size_t(index)]);
  } catch (const Error& e) {
    error = e.what();
    load_failures_.fetch_add(1);
    std::lock_guard<std::mutex> lock(failed_mutex_);
    if (failed_.size() < kMaxRecordedFailures) failed_.push_back({paths_[size_t(index)], error});
  }
  // The next files of the same class, cyclically, so the label stays right.
  const int64_t c = labels_[size_t(index)];
  const int64_t begin = class_begin_[size_t(c)], count = class_begin_[size_t(c) + 1] - begin;
  const int64_t tries = std::min(count - 1, kMaxSubstituteTries);
  for (int64_t k = 1; k <= tries; ++k) {
    const int64_t other = begin + (index - begin + k) % count;
    try {
      return decode_image_file(paths_[size_t(other)]);
    } catch (const Error&) {
    }
  }
  ND_FAIL(name_, ": ", error, "; nor could any of the ", tries, " next files of class '",
          classes_[size_t(c)], "' replace it");
}

void ImageFolderDataset::load(int64_t index, Generator& gen, float* out) const {
  ND_CHECK(index >= 0 && index < size(), name_, ": sample ", index, " is outside 0..", size() - 1);
  const RgbImage image = decode_or_substitute(index);
  apply_image_transform(transform_, image, gen, out);
}

}  // namespace nd::data
