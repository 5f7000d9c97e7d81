// nd-train's configuration: every flag with the reference's CIFAR recipe as default
// (network-deconvolution.md section 5), its validation, and its JSON form (DIR/config.json of a
// run, read back by --resume).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nets/registry.h"

namespace nd {

struct TrainConfig {
  std::string dataset = "cifar10";  // cifar10 | cifar100 | fashion-mnist | mnist | imagenet
  std::string data_dir;             // empty: the dataset's default location
  std::string arch = "resnet18";
  std::string norm = "bn";              // none | bn | nd
  std::string loss = "CE";              // CE | L2
  std::string optimizer = "sgd";        // sgd | adam
  std::string lr_scheduler = "cosine";  // cosine (per iteration) | multistep (per epoch)
  std::string device = "auto";
  std::string output;  // run directory; empty: runs/<date>-<arch>-<norm>
  int64_t epochs = 20;
  // Stop after this epoch although the schedule spans `epochs` (as an interruption would);
  // --resume continues exactly. 0: run to the end. Not part of the saved configuration.
  int64_t stop_after = 0;
  int64_t batch_size = 128;
  double lr = 0.1, momentum = 0.9, weight_decay = 1e-3;
  double milestone = 0.4;  // multistep: the rate drops every milestone * epochs epochs
  double multistep_gamma = 0.1;
  uint64_t seed = 0;
  // Deconvolution (--norm nd): FastDeconv block, Newton-Schulz steps, eps, sampling stride,
  // freeze of every layer; the classifier's Delinear block (0: a plain Linear).
  int64_t block = 64, block_fc = 512, deconv_iter = 5, sampling_stride = 3;
  double eps = 1e-5;
  bool freeze = false;
  bool ref_compat = false;            // reproduce the reference's bugs (section 6)
  std::string deconv_path = "fused";  // fused | composite (the primitive-op oracle)
  int workers = 2;                    // loader threads
  int threads = 0;                    // CPU kernel threads (0: every core; cpu_backend.h)
  int64_t train_limit = 0;            // use only the first N training images (0 = all)
  int64_t test_limit = 0;             // use only the first N test images (0 = all)
  bool skip_bad_images = false;       // image folders: skip and count unreadable images
  int64_t image_size = 224;           // image folders: crop size (validation resizes to 256/224 x)
  std::string save_dtype = "F32";     // last/best.safetensors: F32 | F16 | BF16 (state: float32)
  // Start from these weights (safetensors under the reference's names) instead of random ones,
  // with a fresh optimizer and schedule; names matching init_skip (ECMAScript regex, whole name)
  // keep their initial values. init_weights_sha256 is filled in when the file is read and
  // checked when a run without a checkpoint yet starts again.
  std::string init_weights, init_weights_sha256, init_skip;
  bool no_augment = false;  // no random crop or flip (image folders: the validation transform)
  bool no_shuffle = false;  // batches in the stored order
  // Progress line every log_interval steps (0: about every 10 s); not part of the saved run.
  int64_t log_interval = 0;
  bool progress = true;     // progress lines on rank 0 during epochs (a terminal rewrites one line)
  bool write_files = true;  // run directory with config, CSVs and checkpoints
  bool tf32 = false;        // GPU: TF32 tensor cores for convolutions and GEMMs
  bool deterministic = false;  // GPU: deterministic cuDNN algorithms only
  // Data parallel (docs/distributed.md): layers combine batch statistics across ranks (on) or
  // keep per-rank ones like the reference under DistributedDataParallel (off); the number of
  // ranks the run trains on (set by nd-train from the launcher, not a flag; --resume needs it).
  std::string sync_stats = "on";
  int64_t world_size = 1;
};

// The recipe of the dataset (network-deconvolution.md section 5) for every setting not in
// `given` (flag names without dashes, e.g. "batch_size"): Fashion-MNIST/MNIST batch 512 and weight
// decay 5e-4; ImageNet batch 256, weight decay 1e-4, 90 epochs. CIFAR keeps the defaults above.
void apply_recipe_defaults(TrainConfig& cfg, const std::vector<std::string>& given);

// Checks every setting and throws nd::Error naming the bad flag and its allowed values.
void validate(const TrainConfig& cfg);
// The network settings this configuration trains (arch resolved for the dataset).
NetConfig net_config(const TrainConfig& cfg, int64_t channels, int64_t height, int64_t width,
                     int64_t classes);
// Image shape and class count of a dataset, known without reading it (--summary).
struct DatasetShape {
  int64_t channels, height, width, classes;
};
DatasetShape dataset_shape(const std::string& dataset);
// Whether a CIFAR network trains on Fashion-MNIST/MNIST: the 28x28 grey images then come in the
// CIFAR layout (zero-padded to 32x32, the grey channel repeated into three), so the network and
// its reference-name checkpoints are the CIFAR ones unchanged.
bool grey_in_cifar_layout(const TrainConfig& cfg);
// The input (C, H, W) and class count the network of cfg sees (the above and --image-size).
DatasetShape network_input_shape(const TrainConfig& cfg);

// The names --init-skip leaves at their initial values (the whole name matches); empty: none.
std::function<bool(const std::string&)> init_skip_filter(const std::string& pattern);

std::string to_json(const TrainConfig& cfg);
// Fields missing from the JSON keep their defaults; unknown fields are rejected.
TrainConfig config_from_json(const std::string& json_text, const std::string& source);

}  // namespace nd
