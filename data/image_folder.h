// Image classification sets stored as folders, the ImageNet layout: root/<class>/<image files>.
// Classes are the sorted names of root's subfolders (label = index); a class's files are found
// recursively and sorted as torchvision's ImageFolder sorts them (by folder, then file name);
// files count when their extension is .jpg, .jpeg, .png, .bmp or .ppm in any case. Images are
// decoded with stb_image (whatever the extension says), converted to 8-bit RGB (gray replicated,
// alpha dropped), then go through an ImageTransform (image_transforms.h).
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/image_transforms.h"

namespace nd::data {

// Whether this build decodes images (false when libstb-dev was missing at configure time).
bool image_decoding_available();

// Decodes one image file to RGB. Throws nd::Error naming the path and the problem: an unreadable
// file (the OS error), or data stb_image cannot decode (its reason), or a build without stb.
RgbImage decode_image_file(const std::string& path);

// The image files (.jpg .jpeg .png .bmp .ppm in any case) under dir, recursively, sorted by
// folder and then by name, as the class folders are listed.
std::vector<std::string> list_image_files(const std::string& dir);

struct ImageFolderOptions {
  // The recipe (image_transforms.h), torchvision's ImageNet ones: train is
  // RandomResizedCrop(size) + RandomHorizontalFlip; otherwise Resize(resize) + CenterCrop(size).
  // Both end in ToTensor and Normalize with the ImageNet mean and std when normalize.
  bool train = false;
  int64_t size = 224;
  int64_t resize = 256;
  bool normalize = true;
  // Off: any bad file stops with nd::Error. On: files whose header stb_image cannot read are left
  // out at construction (listed in skipped()), and a file that fails to decode in load() is
  // replaced by the next file of its class that decodes, trying up to 16 (counted in
  // load_failures()); the label stays right and the choice is deterministic.
  bool skip_bad = false;
  std::string name;  // for messages; the root path when empty
};

// The ImageTransform that `options` describe.
ImageTransform image_folder_transform(const ImageFolderOptions& options);

// A file that was left out or replaced, and why.
struct BadImage {
  std::string path;
  std::string reason;
};

class ImageFolderDataset : public Dataset {
 public:
  // Lists the files (decoding nothing unless skip_bad, which reads every header). Throws
  // nd::Error for a missing root or one that is not a folder, a root without class folders, a
  // class folder without image files (after skipping bad ones), and in a build without stb.
  ImageFolderDataset(const std::string& root, ImageFolderOptions options);

  int64_t size() const override { return int64_t(paths_.size()); }
  int64_t num_classes() const override { return int64_t(classes_.size()); }
  Shape sample_shape() const override;
  int64_t label(int64_t index) const override;
  // Decodes file `index` and applies the transform. Throws nd::Error naming the file when it
  // cannot be read or decoded (unless skip_bad).
  void load(int64_t index, Generator& gen, float* out) const override;
  std::string name() const override { return name_; }

  const ImageTransform& transform() const { return transform_; }
  const std::vector<std::string>& classes() const { return classes_; }
  const std::string& path(int64_t index) const;
  const std::vector<BadImage>& skipped() const { return skipped_; }
  // Loads that decoded a replacement file (skip_bad); safe to read while loaders run.
  int64_t load_failures() const { return load_failures_.load(); }
  // The first failed files with their errors (at most kMaxRecordedFailures of them).
  std::vector<BadImage> failed_files() const;
  static constexpr size_t kMaxRecordedFailures = 100;

 private:
  RgbImage decode_or_substitute(int64_t index) const;

  std::string root_;
  ImageFolderOptions options_;
  ImageTransform transform_;
  std::string name_;
  std::vector<std::string> classes_;
  std::vector<std::string> paths_;
  std::vector<int64_t> labels_;
  std::vector<int64_t> class_begin_;  // sample range of class c: [class_begin_[c], [c + 1])
  std::vector<BadImage> skipped_;
  mutable std::atomic<int64_t> load_failures_{0};
  mutable std::mutex failed_mutex_;
  mutable std::vector<BadImage> failed_;
};

}  // namespace nd::data
