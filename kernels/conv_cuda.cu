// CUDA convolution family (see conv.h): batched im2col/col2im kernels, and 2-D convolution forward
// and backward through cuDNN's legacy API. By default every convolution descriptor uses
// CUDNN_FMA_MATH so cuDNN never picks TF32 tensor-core kernels, which would round inputs to 10
// mantissa bits and make the GPU drift from the CPU reference; with the TF32 math mode
// (common.h, --tf32) descriptors use CUDNN_DEFAULT_MATH as PyTorch's default does, and each call
// runs with the math type its algorithm was chosen for. With the deterministic mode only
// algorithms cuDNN reports as deterministic are used. Descriptors and chosen algorithms are
// cached per (device, shape, math mode); algorithms come from cuDNN's heuristics (no timing runs)
// and their workspace from the caller's Scratch.
#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cuda_check.h"

namespace nd::kernels {

namespace {

constexpr int kBlock = 256;
// Skip algorithms whose workspace exceeds this: a huge FFT workspace would stay in the caching
// allocator for the rest of the run; a slower algorithm with a small workspace is preferred.
constexpr size_t kMaxWorkspaceBytes = size_t(512) << 20;

// ---- im2col / col2im --------------------------------------------------------------------------

// One thread per column element; the linear index of cols (N, C*kh*kw, oh*ow) runs over
// (n, c, ky, kx, oy, ox), last fastest.
template <typename Idx>
__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ cols, Conv2dShape s,
                              int64_t oh, int64_t ow, int64_t total) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const Idx ox = r % static_cast<Idx>(ow);
    r /= static_cast<Idx>(ow);
    const Idx oy = r % static_cast<Idx>(oh);
    r /= static_cast<Idx>(oh);
    const Idx kx = r % static_cast<Idx>(s.kw);
    r /= static_cast<Idx>(s.kw);
    const Idx ky = r % static_cast<Idx>(s.kh);
    r /= static_cast<Idx>(s.kh);
    const Idx nc = r;  // n * C + c
    const int64_t iy = oy * s.stride_h - s.pad_h + ky * s.dil_h;
    const int64_t ix = ox * s.stride_w - s.pad_w + kx * s.dil_w;
    const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
    cols[t] = inside ? x[(static_cast<int64_t>(nc) * s.h + iy) * s.w + ix] : 0.0f;
  }
}

// One thread per input pixel (n, c, iy, ix): it gathers every column entry that im2col read from
// this pixel, so no atomics are needed, and adds the sum into x (matching col2im_cpu, which
// accumulates into a buffer the caller zeroed).
template <typename Idx>
__global__ void col2im_kernel(const float* __restrict__ cols, float* __restrict__ x, Conv2dShape s,
                              int64_t oh, int64_t ow, int64_t total) {
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Idx r = static_cast<Idx>(t);
    const int64_t ix = r % static_cast<Idx>(s.w);
    r /= static_cast<Idx>(s.w);
    const int64_t iy = r % static_cast<Idx>(s.h);
    r /= static_cast<Idx>(s.h);
    const int64_t nc = r;  // n * C + c
    const float* base = cols + nc * s.kh * s.kw * oh * ow;
    float sum = 0.0f;
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      const int64_t ty = iy + s.pad_h - ky * s.dil_h;  // = oy * stride_h
      if (ty < 0 || ty % s.stride_h != 0) continue;
      const int64_t oy = ty / s.stride_h;
      if (oy >= oh) continue;
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const int64_t tx = ix + s.pad_w - kx * s.dil_w;
        if (tx < 0 || tx % s.stride_w != 0) continue;
        const int64_t ox = tx / s.stride_w;
        if (ox >= ow) continue;
        sum += base[((ky * s.kw + kx) * oh + oy) * ow + ox];
      }
    }
    x[t] += sum;
  }
}

void check_shape(const Conv2dShape& s, const char* who) {
  ND_CHECK(s.n >= 0 && s.c > 0 && s.h > 0 && s.w > 0 && s.o > 0 && s.kh > 0 && s.kw > 0, who,
           ": bad shape (n ", s.n, ", c ", s.c, ", h ", s.h, ", w ", s.w, ", o ", s.o, ", kh ",
           s.kh, ", kw ", s.kw, ")");
  ND_CHECK(s.stride_h > 0 && s.stride_w > 0 && s.dil_h > 0 && s.dil_w > 0 && s.pad_h >= 0 &&
               s.pad_w >= 0,
           who, ": stride and dilation must be positive and padding non-negative");
  ND_CHECK(s.groups > 0 && s.c % s.groups == 0 && s.o % s.groups == 0, who, ": groups ", s.groups,
           " must divide both input channels ", s.c, " and output channels ", s.o);
  ND_CHECK(s.out_h() > 0 && s.out_w() > 0, who, ": the (dilated) kernel ", s.kh, "x", s.kw,
           " does not fit the padded ", s.h, "x", s.w, " input");
}

template <typename Kernel>
void launch_indexed(Kernel kernel32, Kernel kernel64, int64_t total, const float* in, float* out,
                    const Conv2dShape& s, cudaStream_t st) {
  const Kernel k = total <= INT_MAX ? kernel32 : kernel64;
  ND_LAUNCH(grid_for(total, kBlock), kBlock, 0, st, k)(in, out, s, s.out_h(), s.out_w(), total);
}

// ---- cuDNN descriptors and the per-shape plan cache ---------------------------------------------

int to_int(int64_t v, const char* what) {
  ND_CHECK(v >= 0 && v <= INT_MAX, "conv2d (cuDNN): ", what, " = ", v, " does not fit in int");
  return static_cast<int>(v);
}

class TensorDesc {
 public:
  TensorDesc() { ND_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~TensorDesc() { (void)cudnnDestroyTensorDescriptor(d_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  void set(int n, int c, int h, int w) {
    ND_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, h, w));
  }
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};

class FilterDesc {
 public:
  FilterDesc() { ND_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_)); }
  ~FilterDesc() { (void)cudnnDestroyFilterDescriptor(d_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};

class ConvDesc {
 public:
  ConvDesc() { ND_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_)); }
  ~ConvDesc() { (void)cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

template <typename Algo>
struct AlgoChoice {
  bool ready = false;
  Algo algo{};
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_FMA_MATH;  // the descriptor's math type for this algorithm
};

struct ConvPlan {
  TensorDesc x, y, bias;  // x (N, C, H, W), y (N, O, oh, ow), bias (1, O, 1, 1)
  FilterDesc w;           // (O, C/groups, kh, kw)
  ConvDesc conv;
  AlgoChoice<cudnnConvolutionFwdAlgo_t> fwd;
  AlgoChoice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
  AlgoChoice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;

  GpuMathMode mode;

  ConvPlan(const Conv2dShape& s, const GpuMathMode& m) : mode(m) {
    const int n = to_int(s.n, "n"), c = to_int(s.c, "c"), h = to_int(s.h, "h");
    const int wd = to_int(s.w, "w"), o = to_int(s.o, "o"), g = to_int(s.groups, "groups");
    const int oh = to_int(s.out_h(), "out_h"), ow = to_int(s.out_w(), "out_w");
    x.set(n, c, h, wd);
    y.set(n, o, oh, ow);
    bias.set(1, o, 1, 1);
    ND_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, o,
                                              c / g, to_int(s.kh, "kh"), to_int(s.kw, "kw")));
    ND_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
        conv.get(), to_int(s.pad_h, "pad_h"), to_int(s.pad_w, "pad_w"),
        to_int(s.stride_h, "stride_h"), to_int(s.stride_w, "stride_w"), to_int(s.dil_h, "dil_h"),
        to_int(s.dil_w, "dil_w"), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    ND_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv.get(), g));
    // FMA only unless TF32 is asked for, so results track the CPU reference (file comment).
    ND_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), base_math()));
    int dn = 0, dc = 0, dh = 0, dw = 0;
    ND_CUDNN_CHECK(
        cudnnGetConvolution2dForwardOutputDim(conv.get(), x.get(), w.get(), &dn, &dc, &dh, &dw));
    ND_CHECK(dn == n && dc == o && dh == oh && dw == ow, "conv2d (cuDNN): output ", dn, "x", dc,
             "x", dh, "x", dw, " differs from the expected ", n, "x", o, "x", oh, "x", ow);
  }
  cudnnMathType_t base_math() const { return mode.tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }
  // Sets the descriptor's math type to the one `choice` was picked with (cuDNN requires it).
  template <typename Algo>
  void use(const AlgoChoice<Algo>& choice) const {
    ND_CUDNN_CHECK(cudnnSetConvolutionMathType(conv.get(), choice.math));
  }
};

// cuDNN documents these as non-deterministic (they accumulate with atomics).
bool nondeterministic(cudnnConvolutionFwdAlgo_t) {
  return false;
}
bool nondeterministic(cudnnConvolutionBwdDataAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
}
bool nondeterministic(cudnnConvolutionBwdFilterAlgo_t a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

// Heuristic results come best first; take the first that succeeded, fits the plan's math mode
// (no tensor-op math unless TF32 is on; deterministic when asked), reports a workspace size
// under this descriptor and fits the workspace cap. `workspace_of` returns false when cuDNN
// rejects the algorithm.
template <typename Perf, typename Algo, typename WorkspaceOf>
AlgoChoice<Algo> pick(const ConvPlan& plan, const std::vector<Perf>& perf, int returned,
                      const std::vector<Algo>& fallbacks, WorkspaceOf workspace_of,
                      const char* what) {
  AlgoChoice<Algo> choice;
  auto try_algo = [&](Algo a, cudnnMathType_t math) {
    if (plan.mode.deterministic && nondeterministic(a)) return false;
    ND_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), math));
    size_t bytes = 0;
    const bool usable = workspace_of(a, &bytes) && bytes <= kMaxWorkspaceBytes;
    ND_CUDNN_CHECK(cudnnSetConvolutionMathType(plan.conv.get(), plan.base_math()));
    if (!usable) return false;
    choice.ready = true;
    choice.algo = a;
    choice.workspace = bytes;
    choice.math = math;
    return true;
  };
  for (int i = 0; i < returned; ++i) {
    const Perf& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS) continue;
    const bool tensor_op =
        p.mathType == CUDNN_TENSOR_OP_MATH || p.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
    if (tensor_op && !plan.mode.tf32) continue;
    if (plan.mode.deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
    if (try_algo(p.algo, p.mathType)) return choice;
  }
  for (Algo a : fallbacks)
    if (try_algo(a, plan.base_math())) return choice;
  ND_FAIL("conv2d (cuDNN): no usable ", what, " algorithm",
          plan.mode.tf32 ? "" : " without tensor-op math",
          plan.mode.deterministic ? " that is deterministic" : "",
          " for this shape and a workspace under ", kMaxWorkspaceBytes >> 20, " MiB");
}

void choose_forward(cudnnHandle_t h, ConvPlan& p) {
  int max_count = 0;
  ND_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::max(max_count, 1));
  int returned = 0;
  ND_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
      h, p.x.get(), p.w.get(), p.conv.get(), p.y.get(), max_count, &returned, perf.data()));
  p.fwd = pick(
      p, perf, returned,
      std::vector<cudnnConvolutionFwdAlgo_t>{CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
                                             CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                             CUDNN_CONVOLUTION_FWD_ALGO_GEMM},
      [&](cudnnConvolutionFwdAlgo_t a, size_t* bytes) {
        return cudnnGetConvolutionForwardWorkspaceSize(h, p.x.get(), p.w.get(), p.conv.get(),
                                                       p.y.get(), a, bytes) == CUDNN_STATUS_SUCCESS;
      },
      "forward");
}

void choose_backward_data(cudnnHandle_t h, ConvPlan& p) {
  int max_count = 0;
  ND_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(std::max(max_count, 1));
  int returned = 0;
  ND_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
      h, p.w.get(), p.y.get(), p.conv.get(), p.x.get(), max_count, &returned, perf.data()));
  p.bwd_data = pick(
      p, perf, returned,
      std::vector<cudnnConvolutionBwdDataAlgo_t>{CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
                                                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_0},
      [&](cudnnConvolutionBwdDataAlgo_t a, size_t* bytes) {
        return cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w.get(), p.y.get(), p.conv.get(),
                                                            p.x.get(), a,
                                                            bytes) == CUDNN_STATUS_SUCCESS;
      },
      "backward-data");
}

void choose_backward_filter(cudnnHandle_t h, ConvPlan& p) {
  int max_count = 0;
  ND_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(std::max(max_count, 1));
  int returned = 0;
  ND_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
      h, p.x.get(), p.y.get(), p.conv.get(), p.w.get(), max_count, &returned, perf.data()));
  p.bwd_filter = pick(
      p, perf, returned,
      std::vector<cudnnConvolutionBwdFilterAlgo_t>{CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                                                   CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0},
      [&](cudnnConvolutionBwdFilterAlgo_t a, size_t* bytes) {
        return cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x.get(), p.y.get(), p.conv.get(),
                                                              p.w.get(), a,
                                                              bytes) == CUDNN_STATUS_SUCCESS;
      },
      "backward-filter");
}

enum class Pass { Forward, BackwardData, BackwardFilter };

// The algorithm choices a call needs, copied out of the cache under its lock.
struct PlanView {
  const ConvPlan* plan = nullptr;
  AlgoChoice<cudnnConvolutionFwdAlgo_t> fwd;
  AlgoChoice<cudnnConvolutionBwdDataAlgo_t> bwd_data;
  AlgoChoice<cudnnConvolutionBwdFilterAlgo_t> bwd_filter;
};

// Plans are never evicted (a network has a handful of conv shapes), so the pointer stays valid.
PlanView get_plan(const Conv2dShape& s, cudnnHandle_t h, bool fwd, bool bwd_data, bool bwd_filter) {
  static std::mutex mu;
  static std::map<std::array<int64_t, 16>, std::unique_ptr<ConvPlan>> cache;
  int device = 0;
  ND_CUDA_CHECK(cudaGetDevice(&device));
  const GpuMathMode mode = gpu_math_mode();
  const int64_t mode_bits = (mode.tf32 ? 1 : 0) | (mode.deterministic ? 2 : 0);
  const std::array<int64_t, 16> key = {device,  s.n,     s.c,        s.h,        s.w,     s.o,
                                       s.kh,    s.kw,    s.stride_h, s.stride_w, s.pad_h, s.pad_w,
                                       s.dil_h, s.dil_w, s.groups,   mode_bits};
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<ConvPlan>& slot = cache[key];
  if (!slot) slot = std::make_unique<ConvPlan>(s, mode);
  ConvPlan& p = *slot;
  if (fwd && !p.fwd.ready) choose_forward(h, p);
  if (bwd_data && !p.bwd_data.ready) choose_backward_data(h, p);
  if (bwd_filter && !p.bwd_filter.ready) choose_backward_filter(h, p);
  return PlanView{&p, p.fwd, p.bwd_data, p.bwd_filter};
}

void* workspace(Scratch& scratch, size_t bytes) {
  return bytes ? scratch.get(bytes) : nullptr;
}

}  // namespace

void im2col_cuda(const float* x, float* cols, const Conv2dShape& s, cudaStream_t st) {
  check_shape(s, "im2col_cuda");
  const int64_t total = s.n * s.c * s.kh * s.kw * s.out_h() * s.out_w();
  if (total == 0) return;
  launch_indexed(&im2col_kernel<int32_t>, &im2col_kernel<int64_t>, total, x, cols, s, st);
}

void col2im_cuda(const float* cols, float* x, const Conv2dShape& s, cudaStream_t st) {
  check_shape(s, "col2im_cuda");
  const int64_t total = s.n * s.c * s.h * s.w;
  if (total == 0) return;
  launch_indexed(&col2im_kernel<int32_t>, &col2im_kernel<int64_t>, total, cols, x, s, st);
}

void conv2d_forward_cuda(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                         float* y, Scratch& scratch, cudaStream_t st) {
  check_shape(s, "conv2d_forward_cuda");
  if (s.n == 0) return;
  cudnnHandle_t h = cudnn_handle(st);
  const PlanView v = get_plan(s, h, /*fwd=*/true, false, false);
  const ConvPlan& p = *v.plan;
  const float one = 1.0f, zero = 0.0f;
  void* ws = workspace(scratch, v.fwd.workspace);
  p.use(v.fwd);
  ND_CUDNN_CHECK(cudnnConvolutionForward(h, &one, p.x.get(), x, p.w.get(), w, p.conv.get(),
                                         v.fwd.algo, ws, v.fwd.workspace, &zero, p.y.get(), y));
  if (bias) {  // y += bias broadcast over (N, ., oh, ow)
    ND_CUDNN_CHECK(cudnnAddTensor(h, &one, p.bias.get(), bias, &one, p.y.get(), y));
  }
}

void conv2d_backward_cuda(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                          float* dx, float* dw, float* dbias, Scratch& scratch, cudaStream_t st) {
  check_shape(s, "conv2d_backward_cuda");
  if (s.n == 0) {  // empty batch: the weight and bias gradients are zero sums
    if (dw) {
      const size_t bytes = sizeof(float) * s.o * (s.c / s.groups) * s.kh * s.kw;
      ND_CUDA_CHECK(cudaMemsetAsync(dw, 0, bytes, st));
    }
    if (dbias) ND_CUDA_CHECK(cudaMemsetAsync(dbias, 0, sizeof(float) * s.o, st));
    return;
  }
  if (!dx && !dw && !dbias) return;
  cudnnHandle_t h = cudnn_handle(st);
  const PlanView v = get_plan(s, h, false, dx != nullptr, dw != nullptr);
  const ConvPlan& p = *v.plan;
  const float one = 1.0f, zero = 0.0f;
  // The passes run one after another on one stream, so one workspace serves both.
  const size_t ws_bytes =
      std::max(dx ? v.bwd_data.workspace : size_t(0), dw ? v.bwd_filter.workspace : size_t(0));
  void* ws = workspace(scratch, ws_bytes);
  if (dx) {
    p.use(v.bwd_data);
    ND_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, p.w.get(), w, p.y.get(), dy, p.conv.get(),
                                                v.bwd_data.algo, ws, v.bwd_data.workspace, &zero,
                                                p.x.get(), dx));
  }
  if (dw) {
    p.use(v.bwd_filter);
    ND_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, p.x.get(), x, p.y.get(), dy,
                                                  p.conv.get(), v.bwd_filter.algo, ws,
                                                  v.bwd_filter.workspace, &zero, p.w.get(), dw));
  }
  if (dbias) {
    ND_CUDNN_CHECK(
        cudnnConvolutionBackwardBias(h, &one, p.y.get(), dy, &zero, p.bias.get(), dbias));
  }
}

}  // namespace nd::kernels
