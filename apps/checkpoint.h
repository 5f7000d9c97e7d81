// Checkpoints of a training run. DIR/training_state.safetensors is the one file an exact resume
// reads: the model's parameters and buffers in their own dtype ("model.<name>", exact float32),
// the optimizer's per-parameter state, each layer's extra state (freeze counters, dropout
// generators), the data generator, the step and epoch counters and the per-epoch history.
// DIR/last.safetensors and DIR/best.safetensors are the exported weights under the reference's
// state_dict names (loadable into PyTorch), in F32, F16 or BF16 (--save-dtype). Every file is
// written atomically (temporary file + rename) and the state goes first, so a run killed at any
// moment resumes from the last complete state; resume re-exports last.safetensors when the kill
// came between the two writes.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/optim.h"
#include "io/safetensors.h"
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

// Weights only: every parameter and buffer, with `epoch` in the metadata; float32 tensors stored
// as `floats` (F16 and BF16 round to nearest even).
void save_weights(const std::string& path, const Module& net, int64_t epoch,
                  io::FloatStorage floats = io::FloatStorage::F32);
// Loads weights saved by us or exported from PyTorch under the same names (F16 and BF16 widened to
// float32); errors name the file and the tensor (missing, unexpected, wrong shape).
void load_weights(const std::string& path, Module& net);
// nd-train --init-weights: loads parameters and buffers from `path` (safetensors under the
// reference's names, F32/F16/BF16) except the names `skip_pattern` matches (--init-skip, a regex
// on the whole name); every missing, unexpected or mis-shaped name is listed in one error and
// nothing is loaded then. Returns the file's sha256.
std::string load_init_weights(const std::string& path, const std::string& skip_pattern,
                              Module& net);
// The epoch in a weights file's metadata, or -1 when it has none or the file cannot be read.
int64_t weights_epoch(const std::string& path);

// Writes DIR/training_state.safetensors, then DIR/last.safetensors (as `floats`).
void save_training_checkpoint(const std::string& dir, const Module& net, const Optimizer& opt,
                              const TrainingProgress& progress,
                              io::FloatStorage floats = io::FloatStorage::F32);
// Restores net, opt and progress from DIR (built with the same configuration).
void load_training_checkpoint(const std::string& dir, Module& net, Optimizer& opt,
                              TrainingProgress& progress);

}  // namespace nd
