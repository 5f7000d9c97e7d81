// Dropout (PyTorch semantics: in training, each element is zeroed with probability p and the
// survivors are scaled by 1/(1-p); identity in eval). The mask comes from the layer's own
// generator, seeded when the network is built, so runs repeat.
#pragma once
#include "layers/module.h"

namespace nd {

class Dropout : public Module {
 public:
  Dropout(double p, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Dropout"; }
  std::string describe() const override;
  // Mask generator state (training state for exact resume).
  Generator& generator() { return gen_; }
  std::vector<int64_t> extra_state() const override;
  void set_extra_state(const std::vector<int64_t>& s) override;

 private:
  double p_;
  Generator gen_;
};

}  // namespace nd
