// The reference tables of test/reference (copied from the facts read off the reference networks):
// state_dict names and shapes, deconvolution layer settings and parameter counts, and the list of
// (network, norm) pairs the tests build. Header-only.
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "nets/registry.h"

namespace nd::test {

inline std::string reference_dir() {
  return ND_REFERENCE_DIR;
}

inline std::vector<std::vector<std::string>> read_tsv(
    const std::string& path, std::vector<std::string>* comments = nullptr) {
  std::ifstream in(path);
  ND_CHECK(in, "cannot open reference table ", path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] == '#') {
      if (comments) comments->push_back(line);
      continue;
    }
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, '\t')) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

// "64x3x3x3" -> {64, 3, 3, 3}; "scalar" -> {}.
inline Shape parse_shape(const std::string& s) {
  Shape out;
  if (s == "scalar") return out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, 'x')) out.push_back(std::stoll(part));
  return out;
}

struct NetCase {
  std::string table;  // name in the reference tables (state_dicts/<table>_<norm>.tsv)
  std::string arch, norm;
  bool ref_compat = false;
  std::string input;  // cifar | imagenet
};

// The twenty CIFAR pairs and the ImageNet ones. EfficientNet-B0's tables describe the reference's
// mixed form, which --ref-compat builds.
inline std::vector<NetCase> cifar_cases() {
  std::vector<NetCase> out;
  for (const char* arch : {"vgg16", "resnet18", "preact18", "densenet121", "resnext29_32x4d",
                           "mobilenetv2", "dpn92", "pnasnetA", "senet18", "efficientnetb0"})
    for (const char* norm : {"bn", "nd"})
      out.push_back({arch, arch, norm, std::string(arch) == "efficientnetb0", "cifar"});
  return out;
}

inline std::vector<NetCase> imagenet_cases() {
  std::vector<NetCase> out;
  for (const char* arch : {"imagenet_vgg11", "imagenet_resnet18", "imagenet_densenet121"})
    for (const char* norm : {"bn", "nd"}) out.push_back({arch, arch, norm, false, "imagenet"});
  return out;
}

inline NetConfig net_config(const NetCase& c, int64_t classes) {
  NetConfig cfg;
  cfg.arch = c.arch;
  cfg.norm = c.norm;
  cfg.num_classes = classes;
  cfg.ref_compat = c.ref_compat;
  cfg.in_channels = 3;
  cfg.height = cfg.width = c.input == "imagenet" ? 224 : 32;
  return cfg;
}

// Reference parameter counts: (table, norm, classes) -> count. The ImageNet BN counts are those of
// the torchvision networks, given in the header comment of param_counts_imagenet.tsv.
// Parameters the reference creates but never uses, so they get no gradient: PreAct-18's bn stem
// `bn1`.
inline bool unused_by_reference(const NetCase& c, const std::string& param) {
  return c.arch == "preact18" && c.norm == "bn" && param.rfind("bn1.", 0) == 0;
}

inline std::map<std::string, int64_t> reference_param_counts() {
  std::map<std::string, int64_t> out;
  for (const auto& r : read_tsv(reference_dir() + "/param_counts.tsv"))
    out[r[0] + "/" + r[1] + "/" + r[2]] = std::stoll(r[3]);
  for (const auto& r : read_tsv(reference_dir() + "/param_counts_imagenet.tsv"))
    out[r[0] + "/" + r[1] + "/" + r[2]] = std::stoll(r[3]);
  out["imagenet_resnet18/bn/1000"] = 11689512;
  out["imagenet_vgg11/bn/1000"] = 132868840;
  out["imagenet_densenet121/bn/1000"] = 7978856;
  return out;
}

}  // namespace nd::test
