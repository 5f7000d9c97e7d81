// Where tests find the real Fashion-MNIST files: $ND_FASHION_MNIST_DIR when set (the GPU check
// carries a copy), else Debian's dataset-fashion-mnist location. Missing data fails the test.
#pragma once
#include <cstdlib>
#include <string>

namespace nd::test {
inline std::string fashion_mnist_dir() {
  const char* env = std::getenv("ND_FASHION_MNIST_DIR");
  return env && *env ? env : ND_FASHION_MNIST_DIR;
}
}  // namespace nd::test
