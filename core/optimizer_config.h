// Settings of one optimizer update, PyTorch's semantics (kernels/optimizer.h has the formulas).
// Plain values on the ground floor: the engine's ops:: takes them and the kernels read them, so
// neither needs the other's type.
#pragma once
#include <cstdint>

namespace nd {

struct SgdConfig {
  double lr = 0.1, momentum = 0.9, weight_decay = 0;
  bool first_step = false;  // buf = g instead of momentum * buf + g
};
struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  int64_t step = 1;  // 1-based step count for bias correction
};

}  // namespace nd
