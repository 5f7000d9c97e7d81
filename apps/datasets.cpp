// Dataset selection for nd-train (see datasets.h).
#include "apps/datasets.h"

#include "data/cifar.h"
#include "data/fashion_mnist.h"
#include "data/image_folder.h"
#include "data/transforms.h"

namespace nd {

std::string default_data_dir(const std::string& dataset) {
  if (dataset == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (dataset == "mnist") return "/usr/share/datasets/mnist";
  return "data/" + dataset;
}

namespace {

std::shared_ptr<const data::Dataset> in_memory(const TrainConfig& cfg, bool train,
                                               const std::string& dir) {
  data::InMemoryTransform t;
  std::string name = cfg.dataset + (train ? " train" : " test");
  if (cfg.dataset == "cifar10" || cfg.dataset == "cifar100") {
    const bool c10 = cfg.dataset == "cifar10";
    const bool augment = train && !cfg.no_augment;
    t.crop_padding = augment ? data::kCifarCropPadding : 0;
    t.flip = augment;
    t.normalize = true;
    t.mean = c10 ? data::kCifar10Mean : data::kCifar100Mean;
    t.stddev = c10 ? data::kCifar10Std : data::kCifar100Std;
    auto set = c10 ? data::load_cifar10(dir, train) : data::load_cifar100(dir, train);
    return std::make_shared<data::InMemoryDataset>(std::move(set), t, name);
  }
  data::ImageClassSet grey = data::load_mnist_split(dir, train);
  if (grey_in_cifar_layout(cfg)) grey = data::grey_to_cifar_layout(grey);
  return std::make_shared<data::InMemoryDataset>(std::move(grey), t, name);
}

std::shared_ptr<const data::Dataset> image_folder(const TrainConfig& cfg, bool train,
                                                  const std::string& dir) {
  data::ImageFolderOptions o;
  o.train = train && !cfg.no_augment;  // off: the validation resize and centre crop
  o.skip_bad = cfg.skip_bad_images;
  o.size = cfg.image_size;
  o.resize = (cfg.image_size * 256 + 112) / 224;  // 256 for 224, as the reference's recipe
  return std::make_shared<data::ImageFolderDataset>(dir + (train ? "/train" : "/val"), o);
}

}  // namespace

DataSplits load_splits(const TrainConfig& cfg, bool want_train, bool want_test) {
  const std::string dir = cfg.data_dir.empty() ? default_data_dir(cfg.dataset) : cfg.data_dir;
  auto load = [&](bool train) {
    try {
      return cfg.dataset == "imagenet" ? image_folder(cfg, train, dir) : in_memory(cfg, train, dir);
    } catch (const Error& e) {
      ND_FAIL(e.what(), cfg.data_dir.empty() ? " (pass --data-dir to read another folder)" : "");
    }
  };
  DataSplits out;
  if (want_train) out.train = load(true);
  if (want_test) out.test = load(false);
  return out;
}

std::string bad_image_report(const data::Dataset& d) {
  const auto* folder = dynamic_cast<const data::ImageFolderDataset*>(&d);
  if (!folder) return "";
  const auto& skipped = folder->skipped();
  const int64_t failures = folder->load_failures();
  if (skipped.empty() && failures == 0) return "";
  std::string out = d.name() + ": " + std::to_string(skipped.size()) +
                    " unreadable images skipped, " + std::to_string(failures) +
                    " loads replaced by another image of the class";
  std::vector<data::BadImage> examples = skipped;
  for (const auto& f : folder->failed_files()) examples.push_back(f);
  for (size_t i = 0; i < examples.size() && i < 3; ++i)
    out += "\n  " + examples[i].path + ": " + examples[i].reason;
  return out;
}

}  // namespace nd
