// Tensor storage, factories, views, device/dtype copies and printing (see tensor.h).
#include "engine/tensor.h"

#include <cstring>
#include <iomanip>
#include <numeric>
#include <sstream>

#include "core/constants.h"
#include "engine/autograd.h"
#include "engine/ops.h"

namespace nd {

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ")";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = int64_t(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

Storage::Storage(Device d, size_t bytes, bool pinned)
    : device_(d),
      bytes_(bytes),
      pinned_(pinned),
      data_(pinned ? allocate_pinned(bytes) : allocate(d, bytes)) {
  ND_CHECK(!pinned || d.is_cpu(), "only host memory can be pinned");
}
Storage::~Storage() {
  if (pinned_)
    deallocate_pinned(data_);
  else
    deallocate(device_, data_, bytes_);
}

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  ND_CHECK(int64_t(shape.size()) <= kMaxDims, "tensors have at most ", kMaxDims,
           " dimensions, got ", shape_str(shape));
  for (int64_t d : shape) ND_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(device, size_t(shape_numel(shape)) * dtype_size(dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(impl);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}

Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  ND_CHECK(int64_t(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values for shape ", shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>(), Device::cpu());
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return device.is_cpu() ? t : t.to(device);
}

template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, Device);

// ---------------------------------------------------------------- properties

int64_t Tensor::size(int64_t d) const {
  const int64_t n = dim();
  if (d < 0) d += n;
  ND_CHECK(d >= 0 && d < n, "dimension ", d, " out of range for shape ", shape_str(shape()));
  return shape()[d];
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] != 1 && strides()[i] != expect) return false;
    expect *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(storage()->data()) + offset() * int64_t(dtype_size(dtype()));
}

// ---------------------------------------------------------------- views

namespace {
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->offset = offset;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->dtype = base.dtype();
  return Tensor(impl);
}

}  // namespace

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  Tensor out = empty(shape(), dtype(), device());
  ops::copy_to_contiguous(*this, out);
  return record(out, {*this}, "contiguous", [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  Shape s = new_shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      ND_CHECK(infer < 0, "reshape: more than one -1 in ", shape_str(new_shape));
      infer = int64_t(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    ND_CHECK(known > 0 && numel() % known == 0, "reshape: cannot view ", shape_str(shape()), " as ",
             shape_str(new_shape));
    s[infer] = numel() / known;
  }
  ND_CHECK(shape_numel(s) == numel(), "reshape: ", shape_str(shape()), " has ", numel(),
           " elements, ", shape_str(new_shape), " has ", shape_numel(s));
  Tensor src = contiguous();
  Tensor out = make_view(src, s, contiguous_strides(s), src.offset());
  const Shape in_shape = shape();
  return record(out, {src}, "reshape",
                [in_shape](const Tensor& g) { return std::vector<Tensor>{g.reshape(in_shape)}; });
}

Tensor Tensor::flatten(int64_t start_dim) const {
  Shape s(shape().begin(), shape().begin() + start_dim);
  s.push_back(-1);
  return reshape(s);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  ND_CHECK(int64_t(dims.size()) == dim(), "permute: ", dims.size(), " dims for a ", dim(),
           "-d tensor");
  Shape s(dims.size()), st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = dims[i] < 0 ? dims[i] + dim() : dims[i];
    ND_CHECK(d >= 0 && d < dim() && inverse[d] < 0, "permute: bad dims");
    inverse[d] = int64_t(i);
    s[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(*this, s, st, offset());
  return record(out, {*this}, "permute",
                [inverse](const Tensor& g) { return std::vector<Tensor>{g.permute(inverse)}; });
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  std::vector<int64_t> dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  if (a < 0) a += dim();
  if (b < 0) b += dim();
  std::swap(dims[a], dims[b]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  if (d < 0) d += dim();
  ND_CHECK(d >= 0 && d < dim(), "slice: dimension ", d, " out of range");
  ND_CHECK(step >= 1, "slice: step must be >= 1, got ", step);
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  ND_CHECK(start >= 0 && start <= end, "slice: bad range [", start, ", ", end, ") of ", n);
  Shape s = shape(), st = strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = make_view(*this, s, st, offset() + start * strides()[d]);
  const Shape in_shape = shape();
  return record(out, {*this}, "slice", [in_shape, d, start, end, step](const Tensor& g) {
    // The gradient is g written into the sliced positions of zeros.
    Tensor full = Tensor::zeros(in_shape, g.dtype(), g.device());
    full.slice(d, start, end, step).copy_(g);
    return std::vector<Tensor>{full};
  });
}

Tensor Tensor::detach() const {
  Tensor out = make_view(*this, shape(), strides(), offset());
  return out;
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  ops::copy_to_contiguous(*this, out);
  return record(out, {*this}, "clone", [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

// ---------------------------------------------------------------- copies

void Tensor::copy_(const Tensor& src) {
  ND_CHECK(src.shape() == shape(), "copy_: source shape ", shape_str(src.shape()),
           " differs from destination ", shape_str(shape()));
  if (numel() == 0) return;
  Tensor s = src;
  if (s.dtype() != dtype()) s = s.detach().to(dtype());
  if (s.device() != device()) s = s.detach().to(device());
  if (is_contiguous())
    ops::copy_to_contiguous(s, *this);
  else  // a strided destination (a view): scatter a contiguous copy of the source into it
    ops::copy_from_contiguous(s.contiguous(), *this);
}

void Tensor::fill_(double value) {
  ND_CHECK(is_contiguous(), "fill_ on a non-contiguous view");
  ops::fill(*this, value);
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), dtype(), d);
  ops::transfer(src, out);
  const Device from = device();
  return record(out, {*this}, "to_device",
                [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

Tensor Tensor::pin_memory() const {
  ND_CHECK(device().is_cpu(), "pin_memory: the tensor is on ", device().str(), ", not the host");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage =
      std::make_shared<Storage>(Device::cpu(), size_t(numel()) * dtype_size(dtype()), true);
  impl->shape = shape();
  impl->strides = contiguous_strides(shape());
  impl->dtype = dtype();
  Tensor out(impl);
  ops::copy_to_contiguous(detach(), out);
  return out;
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor src = contiguous();
  Tensor out = empty(shape(), t, device());
  ops::cast(src, out);
  if (!is_floating(t) || !is_floating(dtype())) return out;
  const DType from = dtype();
  return record(out, {*this}, "to_dtype",
                [from](const Tensor& g) { return std::vector<Tensor>{g.to(from)}; });
}

// ---------------------------------------------------------------- autograd

Tensor& Tensor::set_requires_grad(bool on) {
  ND_CHECK(!on || is_floating(dtype()), "only floating-point tensors can require grad");
  ND_CHECK(is_leaf() || on, "cannot turn off requires_grad of a non-leaf; use detach()");
  impl().requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  return impl().grad ? Tensor(impl().grad) : Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  impl().grad = g.defined() ? g.impl_ptr() : nullptr;
}

void Tensor::backward() const {
  ND_CHECK(numel() == 1, "backward() without a gradient needs a one-element tensor, got shape ",
           shape_str(shape()));
  run_backward(*this, Tensor::ones(shape(), dtype(), device()));
}

void Tensor::backward(const Tensor& grad) const {
  run_backward(*this, grad);
}

// ---------------------------------------------------------------- host access

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(Device::cpu()).contiguous();
  if (c.dtype() != dtype_of<T>()) c = c.to(dtype_of<T>());
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

double Tensor::item() const {
  ND_CHECK(numel() == 1, "item() of a tensor with ", numel(), " elements");
  return to_vector<double>()[0];
}

std::string Tensor::to_string(int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor" << shape_str(shape()) << " " << dtype_name(dtype()) << " " << device().str();
  if (requires_grad()) os << " requires_grad";
  os << "\n";
  const std::vector<double> v = to_vector<double>();
  const Shape st = contiguous_strides(shape());
  os << std::setprecision(6);
  // Recursive bracketed print, eliding the middle of long dimensions.
  std::function<void(int64_t, int64_t)> print = [&](int64_t d, int64_t base) {
    if (d == dim()) {
      os << v[base];
      return;
    }
    os << "[";
    const int64_t n = shape()[d];
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_dim && i == max_per_dim / 2) {
        os << "..., ";
        i = n - max_per_dim / 2;
      }
      print(d + 1, base + i * st[d]);
      if (i + 1 < n) os << (d + 1 == dim() ? ", " : ",\n ");
    }
    os << "]";
  };
  if (numel() > 0) print(0, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << t.to_string();
}

}  // namespace nd
