// Harnesses of what the binaries read (see harnesses.h): a run's config.json as nd-train --resume
// reads and checks it, and nd-infer's input file run through a small network. The configuration
// must also survive its own JSON round trip; nd-infer's logits must have the shape (N, classes).
#include <filesystem>

#include "apps/infer.h"
#include "apps/trainer.h"
#include "engine/random.h"
#include "io/safetensors.h"
#include "test/fuzz/harnesses.h"

namespace nd::fuzz {

namespace fs = std::filesystem;

bool fuzz_config(const uint8_t* data, size_t size) {
  const fs::path run = fs::path(scratch_dir()) / "run";
  fs::create_directories(run);
  write_file((run / "config.json").string(), data, size);
  TrainConfig cfg;
  try {
    cfg = resume_config(run.string());
  } catch (const Error&) {
    return false;
  }
  const std::string json = to_json(cfg);
  try {
    if (to_json(config_from_json(json, "written config")) != json)
      defect("config.json does not survive its round trip");
  } catch (const Error& e) {
    defect(std::string("a configuration that reads does not read back: ") + e.what());
  }
  try {
    validate(cfg);
    net_config(cfg, 3, 32, 32, 10);
    dataset_shape(cfg.dataset);
  } catch (const Error&) {
  }
  return true;
}

namespace {

// nd-infer's settings for a small deconvolution MLP whose weights are written once.
const InferConfig& infer_setup() {
  static const InferConfig cfg = [] {
    InferConfig c;
    c.net.arch = "mlp";
    c.net.norm = "nd";
    c.net.num_classes = 10;
    c.weights = scratch_dir() + "/mlp.safetensors";
    c.input = scratch_dir() + "/input.safetensors";
    c.output = scratch_dir() + "/logits.safetensors";
    c.device = "cpu";
    Generator gen(4);
    io::save_safetensors(c.weights, build_net(c.net, gen)->state_dict());
    return c;
  }();
  return cfg;
}

}  // namespace

bool fuzz_infer(const uint8_t* data, size_t size) {
  const InferConfig& cfg = infer_setup();
  write_file(cfg.input, data, size);
  Tensor logits;
  try {
    logits = run_inference(cfg);
  } catch (const Error&) {
    return false;
  }
  if (logits.dim() != 2 || logits.shape()[1] != cfg.net.num_classes)
    defect("logits of a wrong shape");
  return true;
}

}  // namespace nd::fuzz
