// Networks by name. Each builder returns a Module taking (N, C, H, W) images and giving
// (N, classes) logits. Today: the Fashion-MNIST models of the paper (linear, mlp), plain, with
// batch norm or with ChannelDeconv (--norm nd); the CIFAR
// and ImageNet networks join the same registry.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/deconv.h"
#include "layers/module.h"

namespace nd {

struct NetConfig {
  std::string arch = "mlp";
  std::string norm = "none";  // none | bn | nd
  int64_t num_classes = 10;
  int64_t in_channels = 1, height = 28, width = 28;
  // Reproduce the reference's behaviour where it has bugs (network-deconvolution.md section 6).
  bool ref_compat = false;
  DeconvPath deconv_path = DeconvPath::Fused;
};

// Throws nd::Error naming the arch/norm and listing what exists when the pair is unknown.
std::shared_ptr<Module> build_net(const NetConfig& cfg, Generator& gen);
std::vector<std::string> available_archs();

}  // namespace nd
