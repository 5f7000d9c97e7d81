// The table of networks behind build_net (see registry.h).
#include <algorithm>

#include "nets/builders.h"

namespace nd {

namespace {

struct Entry {
  ArchInfo info;
  NetBuilder build;
};

const std::vector<Entry>& entries() {
  static const std::vector<Entry> table = {
      {{"linear", {"none", "nd"}, "fashion"}, build_linear},
      {{"mlp", {"none", "bn", "nd"}, "fashion"}, build_mlp},
      {{"vgg16", {"bn", "nd"}, "cifar"}, build_vgg16},
      {{"resnet18", {"bn", "nd"}, "cifar"}, build_resnet18},
      {{"preact18", {"bn", "nd"}, "cifar"}, build_preact18},
      {{"densenet121", {"bn", "nd"}, "cifar"}, build_densenet121},
      {{"resnext29_32x4d", {"bn", "nd"}, "cifar"}, build_resnext29_32x4d},
      {{"mobilenetv2", {"bn", "nd"}, "cifar"}, build_mobilenetv2},
      {{"dpn92", {"bn", "nd"}, "cifar"}, build_dpn92},
      {{"pnasnetA", {"bn", "nd"}, "cifar"}, build_pnasnetA},
      {{"senet18", {"bn", "nd"}, "cifar"}, build_senet18},
      {{"efficientnetb0", {"bn", "nd"}, "cifar"}, build_efficientnetb0},
      {{"imagenet_vgg11", {"none", "bn", "nd"}, "imagenet"}, build_imagenet_vgg11},
      {{"imagenet_resnet18", {"bn", "nd"}, "imagenet"}, build_imagenet_resnet18},
      {{"imagenet_densenet121", {"bn", "nd"}, "imagenet"}, build_imagenet_densenet121},
  };
  return table;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

const std::vector<ArchInfo>& arch_table() {
  static const std::vector<ArchInfo> infos = [] {
    std::vector<ArchInfo> out;
    for (const auto& e : entries()) out.push_back(e.info);
    return out;
  }();
  return infos;
}

std::vector<std::string> available_archs() {
  std::vector<std::string> out;
  for (const auto& e : entries()) out.push_back(e.info.name);
  return out;
}

std::string resolve_arch(const std::string& arch, const std::string& dataset) {
  if (dataset != "imagenet" || arch.rfind("imagenet_", 0) == 0) return arch;
  return "imagenet_" + arch;
}

std::shared_ptr<Module> build_net(const NetConfig& cfg, Generator& gen) {
  ND_CHECK(cfg.num_classes > 0, "number of classes must be positive, got ", cfg.num_classes);
  for (const auto& e : entries()) {
    if (e.info.name != cfg.arch) continue;
    const auto& norms = e.info.norms;
    ND_CHECK(std::find(norms.begin(), norms.end(), cfg.norm) != norms.end(), "--arch ", cfg.arch,
             " does not support --norm ", cfg.norm, "; choose one of: ", join(norms));
    // The CIFAR networks end in fixed-size pooling (as the reference's do): 3x32x32 only.
    if (e.info.input == "cifar")
      ND_CHECK(cfg.in_channels == 3 && cfg.height == 32 && cfg.width == 32, "--arch ", cfg.arch,
               " takes 3x32x32 images, got ", cfg.in_channels, "x", cfg.height, "x", cfg.width);
    return e.build(cfg, gen);
  }
  ND_FAIL("unknown --arch '", cfg.arch, "'; available: ", join(available_archs()));
}

}  // namespace nd
