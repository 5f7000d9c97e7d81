// nd-infer: logits of a network for a batch of images, all in safetensors files. Reads the
// float32 tensor `input` (N, C, H, W) and the weights (reference state_dict names), writes the
// float32 tensor `logits` (N, K). --train-mode uses batch statistics (batch norm and
// deconvolution) as a training step's forward does; dropout stays off. Kept out of main() so
// tests can run it.
#pragma once
#include <string>

#include "nets/registry.h"

namespace nd {

struct InferConfig {
  NetConfig net;  // arch, norm, classes, ref_compat, deconvolution settings; input shape is read
  std::string weights, input, output;
  bool train_mode = false;  // batch statistics (as a training step's forward) instead of running
  std::string device = "auto";
};

// Puts every Dropout of net in eval mode: --train-mode means batch statistics, and the logits
// stay deterministic.
void set_dropout_off(Module& net);

// Returns the logits it wrote (on the CPU).
Tensor run_inference(const InferConfig& cfg);

}  // namespace nd
