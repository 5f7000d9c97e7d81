// Model summaries: one forward of a single image (eval mode, no gradient) records every leaf
// layer's output shape, parameter count and flops (multiply-adds count 2).
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

#include "layers/module.h"

namespace nd {

struct SummaryRow {
  std::string name, type, settings;
  Shape output;  // of one call with a batch of one image
  int64_t parameters = 0;
  double flops = 0;  // forward, per image
};

struct ModelSummary {
  std::vector<SummaryRow> rows;  // leaf layers in call order (a layer called twice appears twice)
  double flops = 0;              // forward flops per image, all layers
  double per_step_flops = 0;     // batch-independent work per training step (Newton-Schulz, fold)
  int64_t parameters = 0;        // exact count of the model's parameters
};

// `input` is one image's (C, H, W). Restores the model's train/eval mode afterwards.
ModelSummary summarize(Module& net, const Shape& input);
void print_summary(std::ostream& out, const ModelSummary& s);

}  // namespace nd
