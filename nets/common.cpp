// The shared layer factory of the network builders (see common.h).
#include "nets/common.h"

#include <cmath>

#include "engine/autograd.h"

namespace nd {

LayerFactory::LayerFactory(const NetConfig& cfg, Generator& gen)
    : cfg_(cfg), gen_(gen), deconv_(cfg.norm == "nd") {}

DeconvSettings LayerFactory::deconv_settings(const DeconvOverride& o) const {
  DeconvSettings s = cfg_.deconv;
  s.path = cfg_.deconv_path;
  if (o.n_iter) s.n_iter = *o.n_iter;
  if (o.freeze) s.freeze = *o.freeze || cfg_.deconv.freeze;
  if (o.block) s.block = *o.block;
  return s;
}

std::shared_ptr<Module> LayerFactory::conv(const ConvSpec& spec) {
  if (!deconv_) return plain_conv(spec);
  ops::Conv2dParams p;
  p.stride = spec.stride;
  p.padding = spec.padding;
  p.groups = spec.groups;
  return std::make_shared<FastDeconv>(spec.in, spec.out, spec.kernel, p, /*bias=*/true,
                                      deconv_settings(spec.deconv), gen_);
}

std::shared_ptr<Module> LayerFactory::plain_conv(const ConvSpec& spec) {
  ops::Conv2dParams p;
  p.stride = spec.stride;
  p.padding = spec.padding;
  p.groups = spec.groups;
  return std::make_shared<Conv2d>(spec.in, spec.out, spec.kernel, p, spec.bias, gen_);
}

std::shared_ptr<Module> LayerFactory::bn2d(int64_t channels) {
  if (cfg_.norm != "bn") return nullptr;
  return std::make_shared<BatchNorm2d>(channels);
}

std::shared_ptr<Module> LayerFactory::classifier(int64_t in, int64_t out) {
  return classifier_block(in, out, cfg_.block_fc);
}

std::shared_ptr<Module> LayerFactory::classifier_block(int64_t in, int64_t out, int64_t block) {
  if (!deconv_ || block <= 0) return std::make_shared<Linear>(in, out, true, gen_);
  DeconvSettings s = cfg_.deconv;
  s.block = block;
  s.path = cfg_.deconv_path;
  return std::make_shared<Delinear>(in, out, true, s, gen_);
}

void torchvision_init(Module& net, Generator& gen, const TorchvisionInit& how) {
  NoGradGuard no_grad;
  for (auto& [name, m] : net.named_modules()) {
    auto params = m->named_parameters();
    auto find = [&](const char* key) {
      for (auto& [n, t] : params)
        if (n == key) return t;
      return Tensor();
    };
    Tensor w = find("weight"), b = find("bias");
    if (auto* conv = dynamic_cast<Conv2d*>(m)) {
      const int64_t k2 = conv->kernel() * conv->kernel();
      const int64_t fan = how.fan_out ? conv->out_channels() * k2
                                      : conv->in_channels() / conv->params().groups * k2;
      w.copy_(normal_tensor(w.shape(), 0.0, std::sqrt(2.0 / double(fan)), gen, w.dtype()));
      if (b.defined()) b.copy_(Tensor::zeros(b.shape(), b.dtype()));
    } else if (dynamic_cast<Linear*>(m)) {
      if (how.linear == TorchvisionInit::LinearInit::Normal)
        w.copy_(normal_tensor(w.shape(), 0.0, 0.01, gen, w.dtype()));
      if (how.linear != TorchvisionInit::LinearInit::Default)
        b.copy_(Tensor::zeros(b.shape(), b.dtype()));
    }
  }
}

void require_norm(const NetConfig& cfg, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (cfg.norm == a) return;
    list += list.empty() ? a : std::string(", ") + a;
  }
  ND_FAIL("--arch ", cfg.arch, " does not support --norm ", cfg.norm, "; choose one of: ", list);
}

}  // namespace nd
