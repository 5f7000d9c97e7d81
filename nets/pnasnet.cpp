// PNASNet-A for CIFAR (kuangliu's, as the network-deconvolution reference builds it): a 3x3 stem
// of 44 channels, then 6 cells, a downsampling cell, 6 cells, a downsampling cell and 6 cells
// (44, 88, 176 channels), 8x8 average pooling and the classifier. A cell adds a separable 7x7
// conv (grouped by input channel, with batch norm) and a 3x3 max pool of its input, the pool
// branch followed by a 1x1 conv and batch norm when the cell downsamples, then applies ReLU.
// Deconvolved, the grouped 7x7 convs whiten 49x49 matrices per input channel with the run's
// settings; the stem takes 10 Newton-Schulz steps and freezes as in the reference.
#include "nets/builders.h"
#include "nets/common.h"

namespace nd {

namespace {

constexpr int64_t kPlanes = 44, kCellsPerStage = 6, kSepKernel = 7;
constexpr int64_t kPool = 8;  // 32x32 inputs end as 8x8 maps

// The reference's "separable" conv: one grouped kxk conv (groups = input channels), then BN.
class SepConv : public Module {
 public:
  SepConv(LayerFactory& f, int64_t in, int64_t out, int64_t kernel, int64_t stride) {
    conv_ = register_module("conv1",
                            f.conv({in, out, kernel, stride, (kernel - 1) / 2, /*groups=*/in}));
    bn_ = register_optional("bn1", f.bn2d(out));
  }
  Tensor forward(const Tensor& x) override { return apply_optional(bn_, (*conv_)(x)); }
  std::string type_name() const override { return "SepConv"; }

 private:
  std::shared_ptr<Module> conv_, bn_;
};

class CellA : public Module {
 public:
  CellA(LayerFactory& f, int64_t in, int64_t out, int64_t stride) : stride_(stride) {
    sep_conv_ =
        register_module("sep_conv1", std::make_shared<SepConv>(f, in, out, kSepKernel, stride));
    if (stride == 2) {
      pool_conv_ = register_module("conv1", f.conv({in, out, 1}));
      pool_bn_ = register_optional("bn1", f.bn2d(out));
    }
  }

  Tensor forward(const Tensor& x) override {
    Tensor pooled = ops::max_pool2d(x, 3, stride_, 1);
    if (pool_conv_) pooled = apply_optional(pool_bn_, (*pool_conv_)(pooled));
    return ops::relu(ops::add((*sep_conv_)(x), pooled));
  }
  std::string type_name() const override { return "CellA"; }

 private:
  int64_t stride_;
  std::shared_ptr<Module> sep_conv_, pool_conv_, pool_bn_;
};

class PNASNet : public Module {
 public:
  PNASNet(LayerFactory& f, int64_t in_channels, int64_t classes) {
    stem_ = register_module("conv1",
                            f.conv({in_channels, kPlanes, 3, 1, 1, 1, false, frozen_stem(10)}));
    stem_bn_ = register_optional("bn1", f.bn2d(kPlanes));
    int64_t width = kPlanes;
    stages_.push_back(register_module("layer1", cells(f, width, kPlanes)));
    stages_.push_back(register_module("layer2", downsample(f, width, 2 * kPlanes)));
    stages_.push_back(register_module("layer3", cells(f, width, 2 * kPlanes)));
    stages_.push_back(register_module("layer4", downsample(f, width, 4 * kPlanes)));
    stages_.push_back(register_module("layer5", cells(f, width, 4 * kPlanes)));
    linear_ = register_module("linear", f.classifier(width, classes));
  }

  Tensor forward(const Tensor& x) override {
    Tensor out = ops::relu(apply_optional(stem_bn_, (*stem_)(x)));
    for (auto& stage : stages_) out = (*stage)(out);
    return (*linear_)(ops::avg_pool2d(out, kPool).flatten(1));
  }
  std::string type_name() const override { return "PNASNet"; }

 private:
  // `width` is the running channel count, updated to `planes`.
  static std::shared_ptr<Module> cells(LayerFactory& f, int64_t& width, int64_t planes) {
    auto seq = std::make_shared<Sequential>();
    for (int64_t i = 0; i < kCellsPerStage; ++i) {
      seq->push_back(std::make_shared<CellA>(f, width, planes, 1));
      width = planes;
    }
    return seq;
  }
  static std::shared_ptr<Module> downsample(LayerFactory& f, int64_t& width, int64_t planes) {
    auto cell = std::make_shared<CellA>(f, width, planes, 2);
    width = planes;
    return cell;
  }

  std::shared_ptr<Module> stem_, stem_bn_, linear_;
  std::vector<std::shared_ptr<Module>> stages_;
};

}  // namespace

std::shared_ptr<Module> build_pnasnetA(const NetConfig& cfg, Generator& gen) {
  require_norm(cfg, {"bn", "nd"});
  LayerFactory f(cfg, gen);
  return std::make_shared<PNASNet>(f, cfg.in_channels, cfg.num_classes);
}

}  // namespace nd
