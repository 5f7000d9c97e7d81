// Thin wrappers over the CUDA runtime that engine/ needs (device count, raw allocation, copies,
// the per-device stream and library handles), so engine/ compiles without CUDA headers.
// Only defined when the build has CUDA (ND_WITH_CUDA).
#pragma once
#include <string>

#include "kernels/common.h"

namespace nd::kernels {

int cuda_device_count();  // 0 when no driver or device
void cuda_set_device(int index);
int cuda_current_device();
std::string cuda_device_name(int index);
// Raw allocation; throws nd::OutOfMemoryError naming the request when the device is full.
void* cuda_malloc(size_t bytes);
void cuda_free(void* p);
// Page-locked host memory (the source of asynchronous host-to-device copies).
void* cuda_host_alloc(size_t bytes);
// Asynchronous on `s`; `src` must be pinned and stay untouched until the copy has run.
void cuda_memcpy_h2d(void* dst, const void* src, size_t bytes, cudaStream_t s);
void cuda_memcpy_d2h(void* dst, const void* src, size_t bytes, cudaStream_t s);  // synchronous
void cuda_memcpy_d2d(void* dst, const void* src, size_t bytes, cudaStream_t s);
// Between devices, asynchronous on `s` (a stream of the destination device).
void cuda_memcpy_peer(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                      cudaStream_t s);
void cuda_synchronize(cudaStream_t s);
// How many times the host has waited for a device so far (synchronize calls and
// device-to-host copies): a training step should add none between its loss reads.
int64_t cuda_host_syncs();
// What the devices have been given so far: kernel launches (every ND_LAUNCH), library calls
// (cuBLAS, cuDNN, cuSOLVER and NCCL work; counted by the device emulator only, -1 on a GPU), host
// synchronisations (cuda_host_syncs() on a GPU, every stream, event and device wait of the
// runtime in the emulator) and device allocations. nd-bench-train reports them per step.
struct CudaActivity {
  int64_t kernel_launches = 0;
  int64_t library_calls = -1;
  int64_t host_syncs = 0;
  int64_t device_allocations = 0;
};
CudaActivity cuda_activity();
// True when the CUDA runtime is the device emulator's (emu/): kernels run on the CPU.
bool cuda_runtime_emulated();
// The stream all engine work on `device` is queued on (created on first use).
cudaStream_t cuda_stream(int device);
// The stream host-to-device copies of `device` run on, beside the compute stream.
cudaStream_t cuda_copy_stream(int device);
size_t cuda_free_memory(int device);

// Events (with timing) on the current device: recorded on a stream, waited on by another stream
// or the host, and timed against each other.
cudaEvent_t cuda_event_create();
void cuda_event_destroy(cudaEvent_t e);
void cuda_event_record(cudaEvent_t e, cudaStream_t s);
void cuda_event_synchronize(cudaEvent_t e);
bool cuda_event_done(cudaEvent_t e);  // true once all work before its record has finished
void cuda_stream_wait_event(cudaStream_t s, cudaEvent_t e);
float cuda_event_elapsed_ms(cudaEvent_t start, cudaEvent_t stop);

}  // namespace nd::kernels
