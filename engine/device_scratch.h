// Scratch memory for one kernel call (the kernels' Scratch interface), backed by the caching
// allocator of engine/allocator.h: buffers are released when the object is destroyed. Its own
// header so that the allocator's includers do not see kernel types.
#pragma once
#include <cstddef>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "kernels/common.h"

namespace nd {

class DeviceScratch : public kernels::Scratch {
 public:
  explicit DeviceScratch(Device d) : device_(d) {}
  ~DeviceScratch() override;
  void* get(size_t bytes) override;

 private:
  Device device_;
  std::vector<std::pair<void*, size_t>> blocks_;
};

}  // namespace nd
