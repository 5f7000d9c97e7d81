// The training loop behind nd-train: builds the network and data, trains with the chosen
// optimizer and schedule, evaluates every epoch, prints one line per epoch (and a progress line
// on terminals) and appends rows to DIR/summary.csv. Kept out of main() so tests can run it.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace nd {

struct TrainConfig {
  std::string dataset = "fashion-mnist";  // fashion-mnist | mnist
  std::string data_dir;                   // empty: the dataset's default location
  std::string arch = "mlp";
  std::string norm = "none";            // none | bn | nd
  std::string loss = "CE";              // CE | L2
  std::string optimizer = "sgd";        // sgd | adam
  std::string lr_scheduler = "cosine";  // cosine | multistep
  std::string device = "auto";
  std::string output;  // run directory; empty: runs/<date>-<arch>-<norm>
  int64_t epochs = 20;
  int64_t batch_size = 512;
  double lr = 0.1, momentum = 0.9, weight_decay = 5e-4;
  uint64_t seed = 0;
  int64_t train_limit = 0;  // use only the first N training images (0 = all)
  int64_t test_limit = 0;   // use only the first N test images (0 = all)
  bool write_files = true;  // summary.csv in the run directory
  int progress = -1;        // progress line: 1 on, 0 off, -1 when stdout is a terminal
  bool ref_compat = false;  // reproduce the reference's bugs (network-deconvolution.md sec. 6)
  std::string deconv_path = "fused";  // fused | composite (the primitive-op oracle)
};

struct EpochStats {
  int64_t epoch = 0;
  double lr = 0, train_loss = 0, train_top1 = 0, test_loss = 0, test_top1 = 0;
  double seconds = 0;       // training and test pass of the epoch
  double images_per_s = 0;  // training images per second of training
};

struct TrainResult {
  std::vector<EpochStats> epochs;
  std::vector<double> step_losses;            // every training step's loss
  std::map<std::string, Tensor> final_state;  // parameters and buffers, on the CPU
  std::string output_dir;
};

// Checks every setting first and throws nd::Error naming the bad flag and its allowed values.
void validate(const TrainConfig& cfg);
TrainResult train(const TrainConfig& cfg, std::ostream& log);

}  // namespace nd
