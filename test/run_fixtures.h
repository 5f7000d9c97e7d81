// Shared pieces of the trainer tests: a small Fashion-MNIST slice as a run configuration, reading
// a run's text files, and a bitwise comparison of state dicts that reports the first difference.
#pragma once
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "apps/train_config.h"
#include "engine/tensor.h"
#include "test/catch.h"
#include "test/compare.h"
#include "test/data_dir.h"

namespace nd::test {

// `arch` --norm `norm` on 320 training and 128 test images of the real Fashion-MNIST, 2 epochs
// of 5 steps, on the CPU, writing the run directory `out`.
inline TrainConfig fashion_slice(const std::string& arch, const std::string& norm,
                                 const std::string& out) {
  TrainConfig cfg;
  cfg.dataset = "fashion-mnist";
  cfg.data_dir = fashion_mnist_dir();
  cfg.arch = arch;
  cfg.norm = norm;
  cfg.device = "cpu";
  cfg.epochs = 2;
  cfg.batch_size = 64;
  cfg.weight_decay = 5e-4;
  cfg.train_limit = 320;
  cfg.test_limit = 128;
  cfg.progress = false;
  cfg.workers = 2;
  cfg.output = out;
  return cfg;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Bitwise equal state dicts; on failure the first differing tensor and its largest difference.
inline void require_same_tensors(const std::map<std::string, Tensor>& got,
                                 const std::map<std::string, Tensor>& want) {
  const std::string difference = first_difference(got, want);
  INFO(difference);
  REQUIRE(difference.empty());
}

}  // namespace nd::test
