// The builder of each network (internal to nets/; callers use build_net in registry.h).
#pragma once
#include "nets/registry.h"

namespace nd {

using NetBuilder = std::shared_ptr<Module> (*)(const NetConfig&, Generator&);

// Fashion-MNIST (fashion.cpp)
std::shared_ptr<Module> build_linear(const NetConfig& cfg, Generator& gen);
std::shared_ptr<Module> build_mlp(const NetConfig& cfg, Generator& gen);
// CIFAR (32x32)
std::shared_ptr<Module> build_vgg16(const NetConfig& cfg, Generator& gen);        // vgg.cpp
std::shared_ptr<Module> build_resnet18(const NetConfig& cfg, Generator& gen);     // resnet.cpp
std::shared_ptr<Module> build_preact18(const NetConfig& cfg, Generator& gen);     // resnet.cpp
std::shared_ptr<Module> build_senet18(const NetConfig& cfg, Generator& gen);      // senet.cpp
std::shared_ptr<Module> build_densenet121(const NetConfig& cfg, Generator& gen);  // densenet.cpp
std::shared_ptr<Module> build_dpn92(const NetConfig& cfg, Generator& gen);        // dpn.cpp
std::shared_ptr<Module> build_resnext29_32x4d(const NetConfig& cfg, Generator& gen);  // resnext.cpp
std::shared_ptr<Module> build_mobilenetv2(const NetConfig& cfg, Generator& gen);  // mobilenetv2.cpp
std::shared_ptr<Module> build_pnasnetA(const NetConfig& cfg, Generator& gen);     // pnasnet.cpp
std::shared_ptr<Module> build_efficientnetb0(const NetConfig& cfg,
                                             Generator& gen);  // efficientnet.cpp
// ImageNet (224x224)
std::shared_ptr<Module> build_imagenet_vgg11(const NetConfig& cfg, Generator& gen);  // vgg.cpp
std::shared_ptr<Module> build_imagenet_resnet18(const NetConfig& cfg,
                                                Generator& gen);  // resnet.cpp
std::shared_ptr<Module> build_imagenet_densenet121(const NetConfig& cfg,
                                                   Generator& gen);  // densenet.cpp

}  // namespace nd
