// The cuDNN stand-in's API: handles, descriptors validated as cuDNN validates them, heuristic
// algorithm lists with real workspace sizes, and the calls, which check their arguments at once
// and queue the arithmetic (emu/src/cudnn_compute.cpp) on the handle's stream. Everything the
// queued work needs is copied at the call, as cuDNN copies descriptors into its launches, so a
// descriptor changed or destroyed afterwards does not alter queued work.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cudnn.h"
#include "cudnn_compute.h"

struct cudnnContext {
  cudaStream_t stream = nullptr;
  int device = 0;
};

// Sizes and strides in elements, in (n, c, h, w) order whatever the memory format.
struct cudnnTensorStruct {
  bool set = false;
  int64_t dim[4] = {0, 0, 0, 0};
  int64_t stride[4] = {0, 0, 0, 0};
};

struct cudnnFilterStruct {
  bool set = false;
  cudnnTensorFormat_t format = CUDNN_TENSOR_NCHW;
  int64_t dim[4] = {0, 0, 0, 0};  // k, c, h, w
};

struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  int groups = 1;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

namespace {

using nd_emu::dnn::Blend;
using nd_emu::dnn::ConvGeometry;

// A 4-D view copied into queued work.
struct Layout {
  int64_t dim[4];
  int64_t stride[4];
  int64_t count() const { return dim[0] * dim[1] * dim[2] * dim[3]; }
  bool packed_nchw() const {
    return stride[3] == 1 && stride[2] == dim[3] && stride[1] == dim[2] * dim[3] &&
           stride[0] == dim[1] * dim[2] * dim[3];
  }
  size_t bytes() const {
    int64_t last = 0;
    for (int i = 0; i < 4; ++i) last += (dim[i] - 1) * stride[i];
    return size_t(last + 1) * sizeof(float);
  }
};

Layout layout_of(const cudnnTensorStruct& t) {
  Layout l;
  std::copy(t.dim, t.dim + 4, l.dim);
  std::copy(t.stride, t.stride + 4, l.stride);
  return l;
}

Layout layout_of(const cudnnFilterStruct& f) {
  const int64_t k = f.dim[0], c = f.dim[1], h = f.dim[2], w = f.dim[3];
  if (f.format == CUDNN_TENSOR_NHWC) return Layout{{k, c, h, w}, {h * w * c, 1, w * c, c}};
  return Layout{{k, c, h, w}, {c * h * w, h * w, w, 1}};
}

void gather(const Layout& l, const float* src, float* dst) {
  for (int64_t n = 0; n < l.dim[0]; ++n)
    for (int64_t c = 0; c < l.dim[1]; ++c)
      for (int64_t h = 0; h < l.dim[2]; ++h)
        for (int64_t w = 0; w < l.dim[3]; ++w)
          *dst++ = src[n * l.stride[0] + c * l.stride[1] + h * l.stride[2] + w * l.stride[3]];
}

void scatter(const Layout& l, const float* src, float* dst) {
  for (int64_t n = 0; n < l.dim[0]; ++n)
    for (int64_t c = 0; c < l.dim[1]; ++c)
      for (int64_t h = 0; h < l.dim[2]; ++h)
        for (int64_t w = 0; w < l.dim[3]; ++w)
          dst[n * l.stride[0] + c * l.stride[1] + h * l.stride[2] + w * l.stride[3]] = *src++;
}

// An input as a packed NCHW buffer: the device memory itself when already packed and used as is,
// otherwise a host copy (gathered, and rounded to TF32 for tensor-op math).
const float* packed_input(const Layout& l, const void* p, bool tf32, std::vector<float>& buf) {
  const float* f = static_cast<const float*>(p);
  if (l.packed_nchw() && !tf32) return f;
  buf.resize(size_t(l.count()));
  gather(l, f, buf.data());
  if (tf32) nd_emu::dnn::round_tf32(buf.data(), l.count());
  return buf.data();
}

// An output as a packed buffer; finish_output writes a copy back.
float* packed_output(const Layout& l, void* p, bool read, std::vector<float>& buf) {
  float* f = static_cast<float*>(p);
  if (l.packed_nchw()) return f;
  buf.resize(size_t(l.count()));
  if (read) gather(l, f, buf.data());
  return buf.data();
}

void finish_output(const Layout& l, void* p, const std::vector<float>& buf) {
  if (!l.packed_nchw()) scatter(l, buf.data(), static_cast<float*>(p));
}

bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return a_bytes && b_bytes && pa < pb + b_bytes && pb < pa + a_bytes;
}

// One device buffer a queued call touches.
struct Span {
  const char* name;
  const void* p;
  size_t bytes;
  bool written;
};

// Checks each buffer's range, that the output shares no memory with an input and that the
// workspace shares none with anything (cuDNN gives garbage there; here it is a fault).
bool check_spans(const char* what, const std::vector<Span>& spans) {
  for (const Span& s : spans) {
    if (s.bytes == 0) continue;
    if (!nd_emu::check_device_range(s.p, s.bytes, (std::string(what) + ": " + s.name).c_str()))
      return false;
  }
  for (size_t i = 0; i < spans.size(); ++i)
    for (size_t j = i + 1; j < spans.size(); ++j) {
      const Span &a = spans[i], &b = spans[j];
      if ((a.written || b.written) && overlaps(a.p, a.bytes, b.p, b.bytes)) {
        nd_emu::fault(cudaErrorLaunchFailure, std::string(what) + ": " + a.name + " and " + b.name +
                                                  " share device memory");
        return false;
      }
    }
  return true;
}

// Queues on the handle's stream; the null stream is the handle's device's default stream.
void queue(cudnnHandle_t h, const char* what, std::function<void()> work) {
  nd_emu::count_library_call();
  int current = h->device;
  if (h->stream == nullptr) (void)cudaGetDevice(&current);
  if (current != h->device) (void)cudaSetDevice(h->device);
  nd_emu::enqueue(h->stream, what, std::move(work));
  if (current != h->device) (void)cudaSetDevice(current);
}

bool tensor_op(cudnnMathType_t m) {
  return m == CUDNN_TENSOR_OP_MATH || m == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

bool valid_math(int m) {
  return m >= CUDNN_DEFAULT_MATH && m <= CUDNN_FMA_MATH;
}

cudnnStatus_t data_type_status(cudnnDataType_t t) {
  if (t == CUDNN_DATA_FLOAT) return CUDNN_STATUS_SUCCESS;
  if (t >= CUDNN_DATA_DOUBLE && t <= CUDNN_DATA_INT64) return CUDNN_STATUS_NOT_SUPPORTED;
  return CUDNN_STATUS_BAD_PARAM;
}

// The convolution of x by w under conv, with the output size cuDNN computes.
cudnnStatus_t geometry(const cudnnConvolutionStruct* conv, const cudnnTensorStruct* x,
                       const cudnnFilterStruct* w, ConvGeometry* g) {
  if (!conv || !x || !w || !conv->set || !x->set || !w->set) return CUDNN_STATUS_BAD_PARAM;
  const int64_t groups = conv->groups;
  if (x->dim[1] != w->dim[1] * groups || w->dim[0] % groups != 0) return CUDNN_STATUS_BAD_PARAM;
  const int64_t ext_h = (w->dim[2] - 1) * conv->dil_h + 1,
                ext_w = (w->dim[3] - 1) * conv->dil_w + 1;
  const int64_t in_h = x->dim[2] + 2 * int64_t(conv->pad_h);
  const int64_t in_w = x->dim[3] + 2 * int64_t(conv->pad_w);
  if (in_h < ext_h || in_w < ext_w) return CUDNN_STATUS_BAD_PARAM;
  *g = ConvGeometry{x->dim[0],
                    x->dim[1],
                    x->dim[2],
                    x->dim[3],
                    w->dim[0],
                    w->dim[2],
                    w->dim[3],
                    groups,
                    1 + (in_h - ext_h) / conv->stride_h,
                    1 + (in_w - ext_w) / conv->stride_w,
                    conv->pad_h,
                    conv->pad_w,
                    conv->stride_h,
                    conv->stride_w,
                    conv->dil_h,
                    conv->dil_w,
                    conv->mode == CUDNN_CONVOLUTION};
  return CUDNN_STATUS_SUCCESS;
}

// As geometry(), and y must be exactly the output cuDNN computes.
cudnnStatus_t geometry(const cudnnConvolutionStruct* conv, const cudnnTensorStruct* x,
                       const cudnnFilterStruct* w, const cudnnTensorStruct* y, ConvGeometry* g) {
  const cudnnStatus_t st = geometry(conv, x, w, g);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (!y || !y->set) return CUDNN_STATUS_BAD_PARAM;
  if (y->dim[0] != g->n || y->dim[1] != g->k || y->dim[2] != g->oh || y->dim[3] != g->ow)
    return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

// ---- algorithms -----------------------------------------------------------------------------

enum class Pass { Forward, BackwardData, BackwardFilter };

struct AlgoInfo {
  bool supported = false;
  size_t workspace = 0;
  bool deterministic = true;
  bool tensor_op = false;  // has a tensor-core kernel (TF32 for float data)
};

size_t im2col_bytes(const ConvGeometry& g) {
  return sizeof(float) * size_t(g.c * g.r * g.s * g.oh * g.ow);
}
bool unit_stride_dilation(const ConvGeometry& g) {
  return g.stride_h == 1 && g.stride_w == 1 && g.dil_h == 1 && g.dil_w == 1;
}
// Frequency-domain tiles of 32x32 (complex, half spectrum) for inputs, filters and outputs.
AlgoInfo fft_tiling(const ConvGeometry& g) {
  AlgoInfo a;
  a.supported = unit_stride_dilation(g) && g.r <= 16 && g.s <= 16;
  const size_t tile = 2 * sizeof(float) * 32 * 17;
  a.workspace = tile * size_t(g.n * g.c + g.k * g.c_per_group() + g.n * g.k);
  return a;
}
// F(4x4, 3x3): 6x6 transformed tiles of inputs, filters and outputs.
AlgoInfo winograd_nonfused(const ConvGeometry& g) {
  AlgoInfo a;
  a.supported = unit_stride_dilation(g) && g.r == 3 && g.s == 3;
  const size_t tiles = size_t((g.oh + 3) / 4) * size_t((g.ow + 3) / 4);
  a.workspace =
      sizeof(float) * 36 *
      (size_t(g.n * g.c) * tiles + size_t(g.k * g.c_per_group()) + size_t(g.n * g.k) * tiles);
  return a;
}

AlgoInfo algo_info(Pass pass, int algo, const ConvGeometry& g) {
  AlgoInfo a;
  switch (pass) {
    case Pass::Forward:
      switch (algo) {
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM:
          return AlgoInfo{true, 0, true, true};
        case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:  // precomputed input offsets
          return AlgoInfo{true, sizeof(int32_t) * size_t(g.c_per_group() * g.r * g.s), true, true};
        case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:
          return AlgoInfo{true, im2col_bytes(g), true, false};
        case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING:
          return fft_tiling(g);
        case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED:
          return winograd_nonfused(g);
        default:  // DIRECT, FFT, WINOGRAD: not offered here
          return a;
      }
    case Pass::BackwardData:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0:  // accumulates with atomics
          return AlgoInfo{true, 0, false, false};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1:  // GEMM into columns, then col2im
          return AlgoInfo{true, im2col_bytes(g), true, true};
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING:
          return fft_tiling(g);
        case CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED:
          return winograd_nonfused(g);
        default:
          return a;
      }
    case Pass::BackwardFilter:
      switch (algo) {
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0:  // atomics
          return AlgoInfo{true, 0, false, false};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1:  // im2col + GEMM
          return AlgoInfo{true, im2col_bytes(g), true, true};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3:  // partial sums, then atomics
          return AlgoInfo{true, sizeof(float) * size_t(g.k * g.c_per_group() * g.r * g.s), false,
                          false};
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED:
          return winograd_nonfused(g);
        case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING:
          return fft_tiling(g);
        default:
          return a;
      }
  }
  return a;
}

int algo_count(Pass pass) {
  switch (pass) {
    case Pass::Forward:
      return CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    case Pass::BackwardData:
      return CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    case Pass::BackwardFilter:
      return CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  }
  return 0;
}

// The heuristic's order, best first; algorithms that do not apply go last, NOT_SUPPORTED.
std::vector<int> preference(Pass pass, const ConvGeometry& g) {
  std::vector<int> order;
  switch (pass) {
    case Pass::Forward:
      order = {1, 7, 0, 2, 5, 3, 4, 6};
      break;
    case Pass::BackwardData:
      order = {1, 5, 0, 3, 2, 4};
      break;
    case Pass::BackwardFilter:
      order = {1, 0, 5, 3, 6, 2, 4};
      break;
  }
  std::stable_partition(order.begin(), order.end(),
                        [&](int a) { return algo_info(pass, a, g).supported; });
  return order;
}

// The geometry of an algorithm query: the handle, then x by w into y as geometry() takes them.
cudnnStatus_t query_geometry(cudnnHandle_t h, const cudnnConvolutionStruct* conv,
                             const cudnnTensorStruct* x, const cudnnFilterStruct* w,
                             const cudnnTensorStruct* y, ConvGeometry* g) {
  if (!h) return CUDNN_STATUS_BAD_PARAM;
  return geometry(conv, x, w, y, g);
}

cudnnStatus_t algorithm_max_count(cudnnHandle_t h, int* count, int algos) {
  if (!h || !count) return CUDNN_STATUS_BAD_PARAM;
  *count = algos;
  return CUDNN_STATUS_SUCCESS;
}

// The *Algorithm_v7 queries: the pass's algorithms in preference order, described.
template <typename Perf>
cudnnStatus_t list_algorithms(Pass pass, cudnnHandle_t h, const cudnnConvolutionStruct* conv,
                              const cudnnTensorStruct* x, const cudnnFilterStruct* w,
                              const cudnnTensorStruct* y, int requested, int* returned,
                              Perf* perf) {
  ConvGeometry g;
  const cudnnStatus_t st = query_geometry(h, conv, x, w, y, &g);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  const cudnnMathType_t math = conv->math;
  if (requested <= 0 || !returned || !perf) return CUDNN_STATUS_BAD_PARAM;
  const std::vector<int> order = preference(pass, g);
  const int n = std::min<int>(requested, int(order.size()));
  for (int i = 0; i < n; ++i) {
    const AlgoInfo info = algo_info(pass, order[i], g);
    Perf p{};
    p.algo = decltype(p.algo)(order[i]);
    p.status = info.supported ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    p.time = -1.0f;  // heuristics: nothing was timed
    p.memory = info.supported ? info.workspace : 0;
    p.determinism = info.deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    // FMA forbids tensor cores; otherwise algorithms with a tensor-core kernel report it.
    p.mathType = math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH
                 : info.tensor_op       ? CUDNN_TENSOR_OP_MATH
                                        : CUDNN_DEFAULT_MATH;
    perf[i] = p;
  }
  *returned = n;
  return CUDNN_STATUS_SUCCESS;
}

// The *WorkspaceSize queries.
cudnnStatus_t workspace_size(Pass pass, cudnnHandle_t h, const cudnnConvolutionStruct* conv,
                             const cudnnTensorStruct* x, const cudnnFilterStruct* w,
                             const cudnnTensorStruct* y, int algo, size_t* bytes) {
  ConvGeometry g;
  const cudnnStatus_t st = query_geometry(h, conv, x, w, y, &g);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (!bytes || algo < 0 || algo >= algo_count(pass)) return CUDNN_STATUS_BAD_PARAM;
  const AlgoInfo info = algo_info(pass, algo, g);
  if (!info.supported) return CUDNN_STATUS_NOT_SUPPORTED;
  *bytes = info.workspace;
  return CUDNN_STATUS_SUCCESS;
}

// What every convolution call shares: validated algorithm and workspace, blend factors, math.
struct CallCommon {
  ConvGeometry g;
  Blend blend;
  bool tf32 = false;
  void* ws = nullptr;
  size_t ws_bytes = 0;
};

cudnnStatus_t prepare_call(Pass pass, cudnnHandle_t h, const cudnnConvolutionStruct* conv, int algo,
                           void* ws, size_t ws_bytes, const void* alpha, const void* beta,
                           CallCommon* call) {
  if (!h || !alpha || !beta) return CUDNN_STATUS_BAD_PARAM;
  if (algo < 0 || algo >= algo_count(pass)) return CUDNN_STATUS_BAD_PARAM;
  const AlgoInfo info = algo_info(pass, algo, call->g);
  if (!info.supported) return CUDNN_STATUS_NOT_SUPPORTED;
  // cuDNN rejects a workspace smaller than the algorithm's, or a missing one.
  if (ws_bytes < info.workspace || (info.workspace > 0 && ws == nullptr))
    return CUDNN_STATUS_BAD_PARAM;
  call->blend = Blend{*static_cast<const float*>(alpha), *static_cast<const float*>(beta)};
  call->tf32 = tensor_op(conv->math);
  call->ws = ws_bytes ? ws : nullptr;
  call->ws_bytes = ws ? ws_bytes : 0;
  return CUDNN_STATUS_SUCCESS;
}

// Fills the whole workspace with NaN bytes before the arithmetic, so a workspace that shares
// memory with live data corrupts it visibly instead of passing by luck.
void scribble(const CallCommon& call) {
  if (call.ws_bytes) std::memset(call.ws, 0xff, call.ws_bytes);
}

// One device operand of a convolution pass: its name in fault messages and its pointer.
struct Operand {
  const char* name;
  const void* p;
};
struct Output {
  const char* name;
  void* p;
};

using PassCompute = void (*)(const ConvGeometry&, const float*, const float*, float*, Blend);

// The three convolution passes: x (n, c, h, w) by w into y (n, k, oh, ow) under conv, where the
// pass reads inputs a and b and writes out (forward x, w -> y; backward data w, dy -> dx;
// backward filter x, dy -> dw). Validates, then queues compute on packed copies where needed.
cudnnStatus_t run_pass(Pass pass, const char* what, cudnnHandle_t handle,
                       const cudnnConvolutionStruct* conv, const cudnnTensorStruct* xDesc,
                       const cudnnFilterStruct* wDesc, const cudnnTensorStruct* yDesc, int algo,
                       void* ws, size_t ws_bytes, const void* alpha, const void* beta, Operand a,
                       Operand b, Output out, PassCompute compute) {
  CallCommon call;
  cudnnStatus_t st = geometry(conv, xDesc, wDesc, yDesc, &call.g);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (!a.p || !b.p || !out.p) return CUDNN_STATUS_BAD_PARAM;
  st = prepare_call(pass, handle, conv, algo, ws, ws_bytes, alpha, beta, &call);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  // Which of x, w, y are a, b and out, by pass.
  static constexpr int kRoles[3][3] = {{0, 1, 2}, {1, 2, 0}, {0, 2, 1}};
  const Layout xwy[3] = {layout_of(*xDesc), layout_of(*wDesc), layout_of(*yDesc)};
  const int* role = kRoles[int(pass)];
  const Layout la = xwy[role[0]], lb = xwy[role[1]], lo = xwy[role[2]];
  queue(handle, what, [=] {
    if (!check_spans(what, {{a.name, a.p, la.bytes(), false},
                            {b.name, b.p, lb.bytes(), false},
                            {out.name, out.p, lo.bytes(), true},
                            {"workspace", call.ws, call.ws_bytes, true}}))
      return;
    scribble(call);
    std::vector<float> ba, bb, bo;
    const float* pa = packed_input(la, a.p, call.tf32, ba);
    const float* pb = packed_input(lb, b.p, call.tf32, bb);
    float* pout = packed_output(lo, out.p, call.blend.beta != 0.0, bo);
    compute(call.g, pa, pb, pout, call.blend);
    finish_output(lo, out.p, bo);
  });
  return CUDNN_STATUS_SUCCESS;
}

const char* const kStatusNames[] = {
    "CUDNN_STATUS_SUCCESS",
    "CUDNN_STATUS_NOT_INITIALIZED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_BAD_PARAM",
    "CUDNN_STATUS_INTERNAL_ERROR",
    "CUDNN_STATUS_INVALID_VALUE",
    "CUDNN_STATUS_ARCH_MISMATCH",
    "CUDNN_STATUS_MAPPING_ERROR",
    "CUDNN_STATUS_EXECUTION_FAILED",
    "CUDNN_STATUS_NOT_SUPPORTED",
    "CUDNN_STATUS_LICENSE_ERROR",
    "CUDNN_STATUS_RUNTIME_PREREQUISITE_MISSING",
    "CUDNN_STATUS_RUNTIME_IN_PROGRESS",
    "CUDNN_STATUS_RUNTIME_FP_OVERFLOW",
    "CUDNN_STATUS_VERSION_MISMATCH",
};

}  // namespace

// ---- library, handle -------------------------------------------------------------------------

size_t cudnnGetVersion(void) {
  return CUDNN_VERSION;
}

const char* cudnnGetErrorString(cudnnStatus_t status) {
  const int i = int(status);
  if (i >= 0 && i < int(sizeof(kStatusNames) / sizeof(kStatusNames[0]))) return kStatusNames[i];
  return "CUDNN_STATUS_UNKNOWN";
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return CUDNN_STATUS_NOT_INITIALIZED;
  *handle = new cudnnContext{nullptr, device};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUDNN_STATUS_BAD_PARAM;
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  if (!handle || !stream) return CUDNN_STATUS_BAD_PARAM;
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

// ---- tensor descriptors ----------------------------------------------------------------------

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t* desc) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  *desc = new cudnnTensorStruct;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t desc, cudnnDataType_t dataType,
                                           int n, int c, int h, int w, int nStride, int cStride,
                                           int hStride, int wStride) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (nStride <= 0 || cStride <= 0 || hStride <= 0 || wStride <= 0) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t type = data_type_status(dataType);
  if (type != CUDNN_STATUS_SUCCESS) return type;
  const int64_t dim[4] = {n, c, h, w}, stride[4] = {nStride, cStride, hStride, wStride};
  // Elements must not alias: ordered by stride, each dimension must step past the previous one.
  int order[4] = {0, 1, 2, 3};
  std::sort(order, order + 4, [&](int a, int b) { return stride[a] < stride[b]; });
  int64_t span = 1;
  for (int i : order) {
    if (dim[i] == 1) continue;
    if (stride[i] < span) return CUDNN_STATUS_BAD_PARAM;
    span = stride[i] * dim[i];
  }
  if (span > INT_MAX || int64_t(n) * c * h * w > INT_MAX) return CUDNN_STATUS_BAD_PARAM;
  desc->set = true;
  std::copy(dim, dim + 4, desc->dim);
  std::copy(stride, stride + 4, desc->stride);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t desc, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (int64_t(n) * c * h * w > INT_MAX) return CUDNN_STATUS_BAD_PARAM;
  if (format == CUDNN_TENSOR_NCHW)
    return cudnnSetTensor4dDescriptorEx(desc, dataType, n, c, h, w, c * h * w, h * w, w, 1);
  if (format == CUDNN_TENSOR_NHWC)
    return cudnnSetTensor4dDescriptorEx(desc, dataType, n, c, h, w, h * w * c, 1, w * c, c);
  if (format == CUDNN_TENSOR_NCHW_VECT_C) return CUDNN_STATUS_NOT_SUPPORTED;
  return CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnGetTensor4dDescriptor(const cudnnTensorDescriptor_t desc,
                                         cudnnDataType_t* dataType, int* n, int* c, int* h, int* w,
                                         int* nStride, int* cStride, int* hStride, int* wStride) {
  if (!desc || !desc->set) return CUDNN_STATUS_BAD_PARAM;
  if (dataType) *dataType = CUDNN_DATA_FLOAT;
  int* const dims[4] = {n, c, h, w};
  int* const strides[4] = {nStride, cStride, hStride, wStride};
  for (int i = 0; i < 4; ++i) {
    if (dims[i]) *dims[i] = int(desc->dim[i]);
    if (strides[i]) *strides[i] = int(desc->stride[i]);
  }
  return CUDNN_STATUS_SUCCESS;
}

// ---- filter descriptors ----------------------------------------------------------------------

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t* desc) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  *desc = new cudnnFilterStruct;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t desc, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (int64_t(k) * c * h * w > INT_MAX) return CUDNN_STATUS_BAD_PARAM;
  if (format == CUDNN_TENSOR_NCHW_VECT_C) return CUDNN_STATUS_NOT_SUPPORTED;
  if (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t type = data_type_status(dataType);
  if (type != CUDNN_STATUS_SUCCESS) return type;
  desc->set = true;
  desc->format = format;
  desc->dim[0] = k;
  desc->dim[1] = c;
  desc->dim[2] = h;
  desc->dim[3] = w;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetFilter4dDescriptor(const cudnnFilterDescriptor_t desc,
                                         cudnnDataType_t* dataType, cudnnTensorFormat_t* format,
                                         int* k, int* c, int* h, int* w) {
  if (!desc || !desc->set) return CUDNN_STATUS_BAD_PARAM;
  if (dataType) *dataType = CUDNN_DATA_FLOAT;
  if (format) *format = desc->format;
  int* const dims[4] = {k, c, h, w};
  for (int i = 0; i < 4; ++i)
    if (dims[i]) *dims[i] = int(desc->dim[i]);
  return CUDNN_STATUS_SUCCESS;
}

// ---- convolution descriptors -----------------------------------------------------------------

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t* desc) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  *desc = new cudnnConvolutionStruct;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t desc) {
  delete desc;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t desc, int pad_h,
                                              int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType) {
  if (!desc) return CUDNN_STATUS_BAD_PARAM;
  if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0)
    return CUDNN_STATUS_BAD_PARAM;
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_BAD_PARAM;
  const cudnnStatus_t type = data_type_status(computeType);
  if (type != CUDNN_STATUS_SUCCESS) return type;
  desc->set = true;
  desc->pad_h = pad_h;
  desc->pad_w = pad_w;
  desc->stride_h = u;
  desc->stride_w = v;
  desc->dil_h = dilation_h;
  desc->dil_w = dilation_w;
  desc->mode = mode;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dDescriptor(const cudnnConvolutionDescriptor_t desc, int* pad_h,
                                              int* pad_w, int* u, int* v, int* dilation_h,
                                              int* dilation_w, cudnnConvolutionMode_t* mode,
                                              cudnnDataType_t* computeType) {
  if (!desc || !desc->set) return CUDNN_STATUS_BAD_PARAM;
  if (pad_h) *pad_h = desc->pad_h;
  if (pad_w) *pad_w = desc->pad_w;
  if (u) *u = desc->stride_h;
  if (v) *v = desc->stride_w;
  if (dilation_h) *dilation_h = desc->dil_h;
  if (dilation_w) *dilation_w = desc->dil_w;
  if (mode) *mode = desc->mode;
  if (computeType) *computeType = CUDNN_DATA_FLOAT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int groupCount) {
  if (!desc || groupCount < 1) return CUDNN_STATUS_BAD_PARAM;
  desc->groups = groupCount;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionGroupCount(cudnnConvolutionDescriptor_t desc, int* groupCount) {
  if (!desc || !groupCount) return CUDNN_STATUS_BAD_PARAM;
  *groupCount = desc->groups;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t desc,
                                          cudnnMathType_t mathType) {
  if (!desc || !valid_math(mathType)) return CUDNN_STATUS_BAD_PARAM;
  desc->math = mathType;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionMathType(cudnnConvolutionDescriptor_t desc,
                                          cudnnMathType_t* mathType) {
  if (!desc || !mathType) return CUDNN_STATUS_BAD_PARAM;
  *mathType = desc->math;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t convDesc,
                                                    const cudnnTensorDescriptor_t inputTensorDesc,
                                                    const cudnnFilterDescriptor_t filterDesc,
                                                    int* n, int* c, int* h, int* w) {
  ConvGeometry g;
  const cudnnStatus_t st = geometry(convDesc, inputTensorDesc, filterDesc, &g);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (!n || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM;
  *n = int(g.n);
  *c = int(g.k);
  *h = int(g.oh);
  *w = int(g.ow);
  return CUDNN_STATUS_SUCCESS;
}

// ---- forward ---------------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return algorithm_max_count(handle, count, CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnFilterDescriptor_t filterDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t* perfResults) {
  return list_algorithms(Pass::Forward, handle, convDesc, srcDesc, filterDesc, destDesc,
                         requestedAlgoCount, returnedAlgoCount, perfResults);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    cudnnConvolutionFwdAlgo_t algo, size_t* sizeInBytes) {
  return workspace_size(Pass::Forward, handle, convDesc, xDesc, wDesc, yDesc, algo, sizeInBytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void* alpha,
                                      const cudnnTensorDescriptor_t xDesc, const void* x,
                                      const cudnnFilterDescriptor_t wDesc, const void* w,
                                      const cudnnConvolutionDescriptor_t convDesc,
                                      cudnnConvolutionFwdAlgo_t algo, void* workSpace,
                                      size_t workSpaceSizeInBytes, const void* beta,
                                      const cudnnTensorDescriptor_t yDesc, void* y) {
  return run_pass(Pass::Forward, "cudnnConvolutionForward", handle, convDesc, xDesc, wDesc, yDesc,
                  algo, workSpace, workSpaceSizeInBytes, alpha, beta, {"x", x}, {"w", w}, {"y", y},
                  nd_emu::dnn::conv_forward);
}

// ---- backward data ---------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return algorithm_max_count(handle, count, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t gradDesc, const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t* perfResults) {
  return list_algorithms(Pass::BackwardData, handle, convDesc, gradDesc, filterDesc, diffDesc,
                         requestedAlgoCount, returnedAlgoCount, perfResults);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc,
    cudnnConvolutionBwdDataAlgo_t algo, size_t* sizeInBytes) {
  return workspace_size(Pass::BackwardData, handle, convDesc, dxDesc, wDesc, dyDesc, algo,
                        sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void* alpha,
                                           const cudnnFilterDescriptor_t wDesc, const void* w,
                                           const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void* workSpace,
                                           size_t workSpaceSizeInBytes, const void* beta,
                                           const cudnnTensorDescriptor_t dxDesc, void* dx) {
  return run_pass(Pass::BackwardData, "cudnnConvolutionBackwardData", handle, convDesc, dxDesc,
                  wDesc, dyDesc, algo, workSpace, workSpaceSizeInBytes, alpha, beta, {"w", w},
                  {"dy", dy}, {"dx", dx}, nd_emu::dnn::conv_backward_data);
}

// ---- backward filter -------------------------------------------------------------------------

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t handle, int* count) {
  return algorithm_max_count(handle, count, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, const int requestedAlgoCount, int* returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t* perfResults) {
  return list_algorithms(Pass::BackwardFilter, handle, convDesc, srcDesc, gradDesc, diffDesc,
                         requestedAlgoCount, returnedAlgoCount, perfResults);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t gradDesc,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t* sizeInBytes) {
  return workspace_size(Pass::BackwardFilter, handle, convDesc, xDesc, gradDesc, dyDesc, algo,
                        sizeInBytes);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void* alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void* x,
                                             const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void* workSpace,
                                             size_t workSpaceSizeInBytes, const void* beta,
                                             const cudnnFilterDescriptor_t dwDesc, void* dw) {
  return run_pass(Pass::BackwardFilter, "cudnnConvolutionBackwardFilter", handle, convDesc, xDesc,
                  dwDesc, dyDesc, algo, workSpace, workSpaceSizeInBytes, alpha, beta, {"x", x},
                  {"dy", dy}, {"dw", dw}, nd_emu::dnn::conv_backward_filter);
}

// ---- bias, tensor add ------------------------------------------------------------------------

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t handle, const void* alpha,
                                           const cudnnTensorDescriptor_t dyDesc, const void* dy,
                                           const void* beta, const cudnnTensorDescriptor_t dbDesc,
                                           void* db) {
  if (!handle || !alpha || !beta || !dy || !db) return CUDNN_STATUS_BAD_PARAM;
  if (!dyDesc || !dbDesc || !dyDesc->set || !dbDesc->set) return CUDNN_STATUS_BAD_PARAM;
  if (dbDesc->dim[0] != 1 || dbDesc->dim[1] != dyDesc->dim[1] || dbDesc->dim[2] != 1 ||
      dbDesc->dim[3] != 1)
    return CUDNN_STATUS_BAD_PARAM;
  const Blend blend{*static_cast<const float*>(alpha), *static_cast<const float*>(beta)};
  const Layout ldy = layout_of(*dyDesc), ldb = layout_of(*dbDesc);
  const char* what = "cudnnConvolutionBackwardBias";
  queue(handle, what, [=] {
    if (!check_spans(what, {{"dy", dy, ldy.bytes(), false}, {"db", db, ldb.bytes(), true}})) return;
    std::vector<float> bdy, bdb;
    const float* pdy = packed_input(ldy, dy, false, bdy);
    float* pdb = packed_output(ldb, db, blend.beta != 0.0, bdb);
    nd_emu::dnn::bias_backward(ldy.dim[0], ldy.dim[1], ldy.dim[2] * ldy.dim[3], pdy, pdb, blend);
    finish_output(ldb, db, bdb);
  });
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnAddTensor(cudnnHandle_t handle, const void* alpha,
                             const cudnnTensorDescriptor_t aDesc, const void* A, const void* beta,
                             const cudnnTensorDescriptor_t cDesc, void* C) {
  if (!handle || !alpha || !beta || !A || !C) return CUDNN_STATUS_BAD_PARAM;
  if (!aDesc || !cDesc || !aDesc->set || !cDesc->set) return CUDNN_STATUS_BAD_PARAM;
  for (int i = 0; i < 4; ++i)
    if (aDesc->dim[i] != cDesc->dim[i] && aDesc->dim[i] != 1) return CUDNN_STATUS_BAD_PARAM;
  const Blend blend{*static_cast<const float*>(alpha), *static_cast<const float*>(beta)};
  const Layout la = layout_of(*aDesc), lc = layout_of(*cDesc);
  // A broadcast dimension steps by 0, so one loop over C's shape covers both cases.
  int64_t a_step[4];
  for (int i = 0; i < 4; ++i) a_step[i] = la.dim[i] == 1 ? 0 : la.stride[i];
  const char* what = "cudnnAddTensor";
  queue(handle, what, [=] {
    // A may be C itself (C = (alpha + beta) * C): only a partial overlap is refused.
    const bool same = A == C && la.bytes() == lc.bytes();
    if (!check_spans(what, {{"A", A, la.bytes(), false}, {"C", C, same ? 0 : lc.bytes(), true}}))
      return;
    if (same && !nd_emu::check_device_range(C, lc.bytes(), "cudnnAddTensor: C")) return;
    const float* a = static_cast<const float*>(A);
    float* c = static_cast<float*>(C);
    const int64_t planes = lc.dim[0] * lc.dim[1];
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < planes; ++t) {
      const int64_t n = t / lc.dim[1], ch = t % lc.dim[1];
      const float* ap = a + n * a_step[0] + ch * a_step[1];
      float* cp = c + n * lc.stride[0] + ch * lc.stride[1];
      for (int64_t h = 0; h < lc.dim[2]; ++h)
        for (int64_t w = 0; w < lc.dim[3]; ++w) {
          const double av = ap[h * a_step[2] + w * a_step[3]];
          float& cv = cp[h * lc.stride[2] + w * lc.stride[3]];
          cv = blend.beta == 0.0 ? float(blend.alpha * av)
                                 : float(blend.alpha * av + blend.beta * double(cv));
        }
    }
  });
  return CUDNN_STATUS_SUCCESS;
}
