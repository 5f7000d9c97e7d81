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

#include "kernels/error.h"

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
// The image formats accepted, recognised by their first bytes. stb_image knows more (TGA, PSD,
// HDR, PIC, ...); those are refused, so a damaged file is never guessed into a rarely used decoder.
struct ImageFormat {
  const char* name;
  const char* magic;
  size_t magic_bytes;
  // The most pixels one byte of such a file can encode, so a header claiming a huge image in a
  // small file fails before stb_image allocates for it: BMP 1 bit per pixel; binary PGM/PPM 1 byte;
  // PNG 1 bit per pixel behind deflate's 1032:1; JPEG at least 1 bit per 8x8 block (the DC
  // coefficient); GIF LZW codes of 12 bits for up to 4096 pixels (rounded up from 2731).
  uint64_t pixels_per_byte;
};

const ImageFormat kImageFormats[] = {
    {"PNG", "\x89PNG\r\n\x1a\n", 8, 8 * 1032},
    {"JPEG", "\xff\xd8\xff", 3, 512},
    {"BMP", "BM", 2, 8},
    {"GIF", "GIF87a", 6, 4096},
    {"GIF", "GIF89a", 6, 4096},
    {"PGM", "P5", 2, 1},
    {"PPM", "P6", 2, 1},
};

constexpr const char* kKnownFormats = "PNG, JPEG, BMP, GIF, binary PGM/PPM";

// Larger images are refused whatever the file size (8192 x 8192; stb_image then allocates at most
// about 540 MB for one buffer, a 16-bit RGBA PNG's).
constexpr uint64_t kMaxImagePixels = uint64_t{1} << 26;

const ImageFormat* find_image_format(const uint8_t* head, size_t bytes) {
  for (const ImageFormat& f : kImageFormats)
    if (bytes >= f.magic_bytes && std::memcmp(head, f.magic, f.magic_bytes) == 0) return &f;
  return nullptr;
}

uint32_t le(const uint8_t* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Where the pixels of a binary PGM/PPM start (after "P5"/"P6", width, height and maxval, with
// comments, then one whitespace byte) and their bytes per sample, parsed as stb_image does; 0 when
// the header does not end within `head`.
size_t pnm_data_start(const uint8_t* head, size_t n, int* sample_bytes) {
  size_t i = 2;
  long value = 0;
  for (int field = 0; field < 3; ++field) {
    while (i < n && (std::isspace(head[i]) || head[i] == '#')) {
      if (head[i] == '#')
        while (i < n && head[i] != '\n' && head[i] != '\r') ++i;
      else
        ++i;
    }
    if (i >= n || !std::isdigit(head[i])) return 0;
    value = 0;
    while (i < n && std::isdigit(head[i]) && value < 1'000'000'000)
      value = value * 10 + (head[i++] - '0');
  }
  *sample_bytes = value > 255 ? 2 : 1;
  return i < n ? i + 1 : 0;
}

// The bytes an uncompressed BMP or binary PGM/PPM of width x height needs (stb_image fills
// missing BMP rows with zeros and leaves missing PNM pixels uninitialised instead of failing), or
// 0 for the compressed formats and headers this cannot tell.
uint64_t uncompressed_bytes_needed(const ImageFormat& format, const uint8_t* head, size_t n,
                                   int width, int height) {
  const std::string name = format.name;
  if (name == "BMP" && n >= 30) {
    const uint32_t offset = le(head + 10, 4), header = le(head + 14, 4);
    const uint32_t bits = header == 12 ? le(head + 24, 2) : le(head + 28, 2);
    const uint32_t compression = header == 12 || n < 34 ? 0 : le(head + 30, 4);
    if (compression != 0 && compression != 3) return 0;  // RLE: stb_image refuses it anyway
    const uint64_t row_bytes = (uint64_t(width) * bits + 7) / 8, padded = (row_bytes + 3) / 4 * 4;
    // The last row's padding is often left out.
    return std::max<uint64_t>(offset, 14 + header) + padded * uint64_t(height - 1) + row_bytes;
  }
  if (name == "PGM" || name == "PPM") {
    int sample_bytes = 1;
    const size_t start = pnm_data_start(head, n, &sample_bytes);
    if (start == 0) return 0;
    return start +
           uint64_t(width) * uint64_t(height) * (name == "PPM" ? 3 : 1) * uint64_t(sample_bytes);
  }
  return 0;
}

// Empty when every PNG chunk lies inside the file, else the reason: stb_image allocates an IDAT
// chunk's claimed length before reading it.
std::string png_chunk_problem(const uint8_t* bytes, size_t n) {
  size_t at = 8;
  while (at + 8 <= n) {
    const uint64_t length = (uint64_t(bytes[at]) << 24) | (uint64_t(bytes[at + 1]) << 16) |
                            (uint64_t(bytes[at + 2]) << 8) | bytes[at + 3];
    const std::string type(reinterpret_cast<const char*>(bytes + at + 4), 4);
    if (length + 12 > n - at)
      return "truncated PNG: chunk '" + type + "' at byte " + std::to_string(at) + " claims " +
             std::to_string(length) + " bytes, the file has " + std::to_string(n - at - 12) +
             " after its header";
    if (type == "IEND") break;
    at += size_t(length) + 12;
  }
  return {};
}

// Empty when an image of the format and size claimed fits the file (`head`: its first bytes),
// else the reason.
std::string size_problem(const ImageFormat& format, const uint8_t* head, size_t n, int width,
                         int height, uint64_t file_bytes) {
  const uint64_t pixels = uint64_t(width) * uint64_t(height);
  if (pixels > kMaxImagePixels)
    return std::string("its ") + format.name + " header claims " + std::to_string(width) + "x" +
           std::to_string(height) + " pixels, over this reader's limit of " +
           std::to_string(kMaxImagePixels) + " (8192 x 8192)";
  if (pixels > format.pixels_per_byte * file_bytes)
    return std::string("its ") + format.name + " header claims " + std::to_string(width) + "x" +
           std::to_string(height) + " pixels, more than a file of " + std::to_string(file_bytes) +
           " bytes can encode (the header is damaged)";
  const uint64_t needed = uncompressed_bytes_needed(format, head, n, width, height);
  if (needed > file_bytes)
    return std::string("truncated ") + format.name + ": " + std::to_string(width) + "x" +
           std::to_string(height) + " pixels need " + std::to_string(needed) +
           " bytes, the file has " + std::to_string(file_bytes);
  return {};
}

std::vector<uint8_t> read_file(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  ND_CHECK(in, "cannot read image ", path, ": ", std::strerror(errno ? errno : ENOENT));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  ND_CHECK(!in.bad(), "cannot read image ", path, ": read error");
  return bytes;
}

// Empty when the file starts like an accepted format, stb_image can read its header and the size
// claimed fits the file; else the reason. Reads only the start of the file.
std::string header_problem(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::string("cannot read (") + std::strerror(errno ? errno : ENOENT) + ")";
  uint8_t head[512] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const size_t head_bytes = size_t(in.gcount());
  const ImageFormat* format = find_image_format(head, head_bytes);
  if (!format) return std::string("not an image in a known format (") + kKnownFormats + ")";
  std::error_code ec;
  const uint64_t bytes = uint64_t(fs::file_size(path, ec));
  int width = 0, height = 0, channels = 0;
  if (ec || stbi_info(path.c_str(), &width, &height, &channels) != 1 || width <= 0 || height <= 0) {
    const char* reason = stbi_failure_reason();
    return std::string("not a readable image (") + (reason ? reason : "unknown format") + ")";
  }
  const std::string problem = size_problem(*format, head, head_bytes, width, height, bytes);
  return problem.empty() ? problem : "not a readable image (" + problem + ")";
}
#endif

}  // namespace

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
           kKnownFormats, ")");
  int width = 0, height = 0, channels = 0;
  if (stbi_info_from_memory(bytes.data(), int(bytes.size()), &width, &height, &channels) != 1) {
    const char* reason = stbi_failure_reason();
    ND_FAIL("cannot decode image ", path, ": ", reason ? reason : "unknown error",
            " (corrupt, truncated or not an image)");
  }
  std::string problem =
      size_problem(*format, bytes.data(), bytes.size(), width, height, bytes.size());
  if (problem.empty() && std::string(format->name) == "PNG")
    problem = png_chunk_problem(bytes.data(), bytes.size());
  ND_CHECK(problem.empty(), "cannot decode image ", path, ": ", problem);
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
