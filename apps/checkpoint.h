// Checkpoints of a training run. DIR/last.safetensors and DIR/best.safetensors hold the model's
// parameters and buffers under the reference's state_dict names (loadable into PyTorch);
// DIR/training_state.safetensors holds what an exact resume needs besides them: the optimizer's
// per-parameter state, each layer's extra state (freeze counters, dropout generators), the data
// generator, the step and epoch counters and the per-epoch history. Every file is written
// atomically (temporary file + rename); the weights go first and both carry the epoch, so a run
// interrupted between the two writes is detected on resume.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/optim.h"
#include "layers/module.h"

namespace nd {

struct EpochStats {
  int64_t epoch = 0;
  double lr = 0, train_loss = 0, train_top1 = 0, test_loss = 0, test_top1 = 0, test_top5 = 0;
  double seconds = 0;       // training and test pass of the epoch
  double images_per_s = 0;  // training images per second of training
};

struct TrainingProgress {
  int64_t epochs_done = 0;
  int64_t step = 0;
  double best_top1 = -1;
  std::array<uint64_t, 4> data_rng{};
  std::vector<EpochStats> history;
};

// Weights only: every parameter and buffer, with `epoch` in the metadata.
void save_weights(const std::string& path, const Module& net, int64_t epoch);
// Loads weights saved by us or exported from PyTorch under the same names; errors name the file
// and the tensor (missing, unexpected, wrong shape).
void load_weights(const std::string& path, Module& net);

void save_training_checkpoint(const std::string& dir, const Module& net, const Optimizer& opt,
                              const TrainingProgress& progress);
// Restores net, opt and progress from DIR (built with the same configuration).
void load_training_checkpoint(const std::string& dir, Module& net, Optimizer& opt,
                              TrainingProgress& progress);

}  // namespace nd
