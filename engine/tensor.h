// Tensor: a strided view (shape, strides, offset) onto reference-counted storage on one device,
// with the autograd fields (requires_grad, grad, grad_fn). Views (reshape of contiguous data,
// permute/transpose, slice) share storage; contiguous() copies only when needed.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "engine/allocator.h"
#include "engine/device.h"

namespace nd {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

class Node;  // autograd graph node (engine/autograd.h)

// Owns one allocation; freed when the last view goes away. Host storage may be pinned
// (page-locked, CUDA builds), the source of asynchronous copies to a GPU.
class Storage {
 public:
  Storage(Device d, size_t bytes, bool pinned = false);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }

 private:
  Device device_;
  size_t bytes_;
  bool pinned_;
  void* data_;
};

class Tensor;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape, strides;
  DType dtype = DType::F32;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;     // set on results of differentiable ops
  int output_nr = 0;                 // which output of grad_fn this tensor is
  std::shared_ptr<TensorImpl> grad;  // accumulated gradient of a leaf
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Shape& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                            Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());

  // ---- properties
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t dim() const { return int64_t(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  int64_t offset() const { return impl().offset; }
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  void* raw_data() const;  // address of element 0 of this view
  template <typename T>
  T* data() const;

  // ---- views and copies (differentiable)
  Tensor contiguous() const;
  Tensor reshape(const Shape& shape) const;  // one dim may be -1
  Tensor flatten(int64_t start_dim = 1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor to(Device d) const;
  Tensor to(DType t) const;  // not differentiable between float and integer types
  // A copy in pinned host memory (CUDA builds), whose copies to a GPU do not stall the host.
  Tensor pin_memory() const;
  bool is_pinned() const { return storage()->pinned(); }
  Tensor clone() const;
  Tensor detach() const;  // shares storage, no autograd history

  // ---- in place, outside autograd (parameters, buffers, optimizer state)
  void copy_(const Tensor& src);  // same shape; any devices/dtypes
  void fill_(double value);
  void zero_() { fill_(0.0); }

  // ---- autograd
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool on);
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;
  void set_grad(const Tensor& g);
  void backward() const;  // from a scalar
  void backward(const Tensor& grad) const;

  // ---- host access
  double item() const;  // one-element tensor
  template <typename T>
  std::vector<T> to_vector() const;  // contiguous host copy
  std::string to_string(int64_t max_per_dim = 6) const;

  TensorImpl& impl() const {
    ND_CHECK(impl_, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::F64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::I64;
}
template <>
constexpr DType dtype_of<uint8_t>() {
  return DType::U8;
}

template <typename T>
T* Tensor::data() const {
  ND_CHECK(dtype() == dtype_of<T>(), "tensor has dtype ", dtype_name(dtype()), ", accessed as ",
           dtype_name(dtype_of<T>()));
  return static_cast<T*>(raw_data());
}

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace nd
