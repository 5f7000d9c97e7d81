// nd-infer's work (see infer.h).
#include "apps/infer.h"

#include "apps/checkpoint.h"
#include "engine/autograd.h"
#include "io/safetensors.h"
#include "layers/dropout.h"

namespace nd {

void set_dropout_off(Module& net) {
  for (auto& [name, m] : net.named_modules())
    if (dynamic_cast<Dropout*>(m)) m->eval();
}

Tensor run_inference(const InferConfig& cfg) {
  const Device device = parse_device(cfg.device);
  auto inputs = io::load_safetensors(cfg.input);
  auto it = inputs.find("input");
  if (it == inputs.end()) {
    std::string names;
    for (auto& [name, t] : inputs) names += (names.empty() ? "" : ", ") + name;
    ND_FAIL(cfg.input, " has no tensor 'input' (float32, shape (N, C, H, W)); it holds: ",
            names.empty() ? "nothing" : names);
  }
  const Tensor& x = it->second;
  ND_CHECK(x.dtype() == DType::F32, cfg.input, ": tensor 'input' is ", dtype_name(x.dtype()),
           "; expected float32 (F32) of shape (N, C, H, W)");
  ND_CHECK(x.dim() == 4 && x.shape()[0] >= 1, cfg.input, ": tensor 'input' has shape ",
           shape_str(x.shape()), "; expected (N, C, H, W) with N >= 1");
  for (const auto& info : arch_table())
    if (info.name == cfg.net.arch && info.input != "fashion")
      ND_CHECK(x.shape()[1] == 3, cfg.input, ": tensor 'input' has shape ", shape_str(x.shape()),
               "; ", cfg.net.arch, " expects (N, 3, H, W) RGB images");

  NetConfig n = cfg.net;
  n.in_channels = x.shape()[1];
  n.height = x.shape()[2];
  n.width = x.shape()[3];
  Generator gen(0);
  std::shared_ptr<Module> net = build_net(n, gen);
  load_weights(cfg.weights, *net);
  net->to(device);
  net->train(cfg.train_mode);
  set_dropout_off(*net);
  NoGradGuard no_grad;
  Tensor logits = (*net)(x.to(device)).to(Device::cpu());
  io::save_safetensors(cfg.output, {{"logits", logits}});
  return logits;
}

}  // namespace nd
