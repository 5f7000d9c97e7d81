// The training loop behind nd-train: builds the network and data, trains with the chosen
// optimizer and schedule, evaluates every epoch, prints one line per epoch (and a progress line
// on terminals) and keeps the run directory: config.json, summary.csv, steps.csv (every step's
// loss), last/best.safetensors and training_state.safetensors. Kept out of main() so tests can
// run it.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "apps/checkpoint.h"
#include "apps/train_config.h"
#include "engine/tensor.h"

namespace nd {

struct TrainResult {
  std::vector<EpochStats> epochs;             // every epoch of the run, resumed ones included
  std::vector<double> step_losses;            // the losses of the steps this call ran
  std::map<std::string, Tensor> final_state;  // parameters and buffers, on the CPU
  std::string output_dir;
};

// Trains cfg from scratch, or, with resume_dir, continues the run in that directory up to
// cfg.epochs (cfg must then be the run's configuration: see resume_config).
TrainResult train(const TrainConfig& cfg, std::ostream& log, const std::string& resume_dir = "");

// The line printed after each epoch; a non-finite test loss (an undertrained network with large
// logits in eval mode) is marked "(not finite)".
std::string epoch_line(const EpochStats& s);

// The configuration saved in DIR/config.json.
TrainConfig resume_config(const std::string& dir);

struct EvalResult {
  double loss = 0, top1 = 0, top5 = 0;  // accuracies in percent
  int64_t images = 0;
};
// Evaluates a weights file (ours or exported from PyTorch) on cfg's test split.
EvalResult evaluate_weights(const TrainConfig& cfg, const std::string& weights, std::ostream& log);

// Prints the network cfg trains, layer by layer, without reading any data.
void print_model_summary(const TrainConfig& cfg, std::ostream& out);

}  // namespace nd
