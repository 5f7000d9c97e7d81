// ops:: raw copies between layouts, dtypes and devices (see ops.h), through the one dispatch
// point like every other op.
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/elementwise.h"
#ifdef ND_WITH_CUDA
#include "kernels/cuda_runtime_api.h"
#endif

namespace nd::ops {

using detail::dispatch_device;

namespace {

kernels::StridedLayout strided_layout(const Tensor& t) {
  kernels::StridedLayout l;
  l.ndim = int(t.dim());
  for (int i = 0; i < l.ndim; ++i) {
    l.shape[i] = t.shape()[i];
    l.stride[i] = t.strides()[i];
  }
  return l;
}

void check_pair(const char* op, const Tensor& src, const Tensor& dst) {
  ND_CHECK(src.shape() == dst.shape(), op, ": source ", shape_str(src.shape()), " and destination ",
           shape_str(dst.shape()), " differ in shape");
  ND_CHECK(src.dtype() == dst.dtype(), op, ": source ", dtype_name(src.dtype()),
           " and destination ", dtype_name(dst.dtype()), " differ in dtype");
}

// A copy within one device: same shape, dtype and device.
void check_same_device_pair(const Tensor& src, const Tensor& dst) {
  check_pair("copy", src, dst);
  ND_CHECK(src.device() == dst.device(), "copy: tensors on ", src.device().str(), " and ",
           dst.device().str());
}

#ifdef ND_WITH_CUDA
// Two events per device, re-recorded by every transfer: a stream that waits on an event waits
// for the work before its record at the time of the wait call, so reuse is safe as long as one
// transfer at a time records and waits (the mutex).
std::mutex g_transfer_mutex;

struct TransferEvents {
  cudaEvent_t compute_done = nullptr, copy_done = nullptr;
};

TransferEvents& transfer_events(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<TransferEvents>> events;
  std::lock_guard<std::mutex> lock(mu);
  if (int(events.size()) <= device) events.resize(size_t(device) + 1);
  if (!events[size_t(device)]) {
    auto e = std::make_unique<TransferEvents>();
    e->compute_done = kernels::cuda_event_create();
    e->copy_done = kernels::cuda_event_create();
    events[size_t(device)] = std::move(e);
  }
  return *events[size_t(device)];
}

void host_to_device(const Tensor& src, const Tensor& dst, size_t bytes) {
  const int device = dst.device().index;
  // Pageable memory cannot be read asynchronously: stage it in a pinned block, which the pinned
  // allocator keeps until the copy has read it.
  std::shared_ptr<Storage> staging;
  const void* from = src.raw_data();
  void* pinned_block = src.storage()->data();
  if (!src.is_pinned()) {
    staging = std::make_shared<Storage>(Device::cpu(), bytes, true);
    std::memcpy(staging->data(), from, bytes);
    from = pinned_block = staging->data();
  }
  cudaStream_t compute = kernels::cuda_stream(device), copy = kernels::cuda_copy_stream(device);
  std::lock_guard<std::mutex> lock(g_transfer_mutex);
  TransferEvents& e = transfer_events(device);
  // dst came from the caching allocator, which reuses blocks in compute-stream order: the copy
  // starts after the compute work queued so far, and the compute stream waits for the copy.
  kernels::cuda_event_record(e.compute_done, compute);
  kernels::cuda_stream_wait_event(copy, e.compute_done);
  kernels::cuda_memcpy_h2d(dst.raw_data(), from, bytes, copy);
  kernels::cuda_event_record(e.copy_done, copy);
  kernels::cuda_stream_wait_event(compute, e.copy_done);
  note_pinned_use(pinned_block, copy);
}

void device_to_device(const Tensor& src, const Tensor& dst, size_t bytes) {
  const int from = src.device().index, to = dst.device().index;
  cudaStream_t src_stream = kernels::cuda_stream(from), dst_stream = kernels::cuda_stream(to);
  std::lock_guard<std::mutex> lock(g_transfer_mutex);
  TransferEvents &se = transfer_events(from), &de = transfer_events(to);
  // The copy waits for the source's pending writes, and the source stream waits for the copy
  // before anything later on it (such as reusing the source block) runs.
  kernels::cuda_set_device(from);
  kernels::cuda_event_record(se.compute_done, src_stream);
  kernels::cuda_set_device(to);
  kernels::cuda_stream_wait_event(dst_stream, se.compute_done);
  kernels::cuda_memcpy_peer(dst.raw_data(), to, src.raw_data(), from, bytes, dst_stream);
  kernels::cuda_event_record(de.copy_done, dst_stream);
  kernels::cuda_set_device(from);
  kernels::cuda_stream_wait_event(src_stream, de.copy_done);
}
#endif

}  // namespace

void copy_to_contiguous(const Tensor& src, const Tensor& dst) {
  check_same_device_pair(src, dst);
  ND_CHECK(dst.is_contiguous(), "copy: the destination must be contiguous");
  if (src.numel() == 0) return;
  const kernels::StridedLayout l = strided_layout(src);
  const DType t = src.dtype();
  dispatch_device(
      "copy", src.device(),
      [&] { kernels::copy_strided_cpu(src.raw_data(), dst.raw_data(), t, l); },
      [&](auto stream) {
        kernels::copy_strided_cuda(src.raw_data(), dst.raw_data(), t, l, stream);
      });
}

void copy_from_contiguous(const Tensor& src, const Tensor& dst) {
  check_same_device_pair(src, dst);
  ND_CHECK(src.is_contiguous(), "copy: the source of a scatter must be contiguous");
  if (src.numel() == 0) return;
  const kernels::StridedLayout l = strided_layout(dst);
  const DType t = src.dtype();
  dispatch_device(
      "copy scatter", dst.device(),
      [&] { kernels::scatter_strided_cpu(src.raw_data(), dst.raw_data(), t, l); },
      [&](auto stream) {
        kernels::scatter_strided_cuda(src.raw_data(), dst.raw_data(), t, l, stream);
      });
}

void fill(const Tensor& dst, double value) {
  ND_CHECK(dst.is_contiguous(), "fill: the tensor must be contiguous");
  if (dst.numel() == 0) return;
  const DType t = dst.dtype();
  dispatch_device(
      "fill", dst.device(), [&] { kernels::fill_cpu(dst.raw_data(), t, dst.numel(), value); },
      [&](auto stream) { kernels::fill_cuda(dst.raw_data(), t, dst.numel(), value, stream); });
}

void cast(const Tensor& src, const Tensor& dst) {
  ND_CHECK(src.shape() == dst.shape() && src.device() == dst.device(),
           "cast: source and destination differ in shape or device");
  ND_CHECK(src.is_contiguous() && dst.is_contiguous(), "cast: tensors must be contiguous");
  if (src.numel() == 0) return;
  const DType from = src.dtype(), to = dst.dtype();
  dispatch_device(
      "cast", src.device(),
      [&] { kernels::cast_cpu(src.raw_data(), from, dst.raw_data(), to, src.numel()); },
      [&](auto stream) {
        kernels::cast_cuda(src.raw_data(), from, dst.raw_data(), to, src.numel(), stream);
      });
}

void transfer(const Tensor& src, const Tensor& dst) {
  check_pair("transfer", src, dst);
  ND_CHECK(src.is_contiguous() && dst.is_contiguous(), "transfer: tensors must be contiguous");
  ND_CHECK(src.device() != dst.device(), "transfer: both tensors are on ", src.device().str());
  const size_t bytes = size_t(src.numel()) * dtype_size(src.dtype());
  if (bytes == 0) return;
#ifdef ND_WITH_CUDA
  // The profiler and the device branch see the GPU side of the transfer.
  const Device gpu = dst.device().is_cuda() ? dst.device() : src.device();
  dispatch_device(
      "transfer", gpu, [] {},
      [&](auto stream) {
        if (src.device().is_cpu())
          host_to_device(src, dst, bytes);
        else if (dst.device().is_cpu())
          kernels::cuda_memcpy_d2h(dst.raw_data(), src.raw_data(), bytes, stream);
        else
          device_to_device(src, dst, bytes);
      });
#else
  ND_FAIL("cannot move a tensor to ", dst.device().str(), ": this build has no CUDA support");
#endif
}

}  // namespace nd::ops
