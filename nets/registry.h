// Networks by name. Each builder returns a Module taking (N, C, H, W) images and giving
// (N, classes) logits: the Fashion-MNIST models (linear, mlp), the ten CIFAR networks of the
// paper and the ImageNet variants (imagenet_vgg11, imagenet_resnet18, imagenet_densenet121),
// each with batch norm (--norm bn) or deconvolution (--norm nd).
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
  // Settings of every FastDeconv (--block, --deconv-iter, --eps, --stride, --freeze, path);
  // networks override n_iter and freeze of some layers (their stems) as the reference does.
  DeconvSettings deconv;
  // Block of the Delinear classifier of --norm nd networks; 0 keeps a plain Linear.
  int64_t block_fc = 512;
  DeconvPath deconv_path = DeconvPath::Fused;
};

struct ArchInfo {
  std::string name;
  std::vector<std::string> norms;  // the --norm values it is built with
  std::string input;               // "fashion" (1x28x28), "cifar" (3x32x32), "imagenet" (3x224x224)
};

// Throws nd::Error naming the arch/norm and listing what exists when the pair is unknown.
std::shared_ptr<Module> build_net(const NetConfig& cfg, Generator& gen);
const std::vector<ArchInfo>& arch_table();
std::vector<std::string> available_archs();
// The registry name for an --arch given with a dataset: with imagenet, vgg11/resnet18/densenet121
// name the ImageNet variants (imagenet_<arch>).
std::string resolve_arch(const std::string& arch, const std::string& dataset);

}  // namespace nd
