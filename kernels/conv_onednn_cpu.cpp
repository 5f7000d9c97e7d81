// The fast CPU convolution (float32) on oneDNN, the library PyTorch's CPU convolutions use. Our
// tensors are NCHW / OIHW; oneDNN picks its own blocked layouts (format "any") and the data is
// reordered in and out around each primitive. Primitives, reorders and the blocked buffers are
// built once per shape and kept in a cache, so steady-state training creates and allocates
// nothing. Threads: oneDNN runs on the OpenMP pool, whose size set_cpu_threads() fixes (see
// kernels/cpu_threads.h). Results are not bitwise those of the im2col + GEMM reference
// (conv_cpu.cpp; other summation order), but they repeat bitwise for a given thread count.
// Without oneDNN in the build the functions below report that it is missing.
#include "kernels/conv.h"

#ifdef ND_WITH_ONEDNN
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace nd::kernels {

#ifdef ND_WITH_ONEDNN

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}
dnnl::stream& cpu_stream() {
  static dnnl::stream stream(cpu_engine());
  return stream;
}

// Geometry of one convolution as oneDNN wants it.
struct DnnlGeometry {
  memory::dims src, weights, bias, dst, strides, dilates, pad_l, pad_r;
  memory::desc user_src, user_weights, user_bias, user_dst;
  explicit DnnlGeometry(const Conv2dShape& s) {
    const int64_t oh = s.out_h(), ow = s.out_w();
    src = {s.n, s.c, s.h, s.w};
    dst = {s.n, s.o, oh, ow};
    bias = {s.o};
    const bool grouped = s.groups > 1;
    if (grouped)
      weights = {s.groups, s.o / s.groups, s.c / s.groups, s.kh, s.kw};
    else
      weights = {s.o, s.c, s.kh, s.kw};
    strides = {s.stride_h, s.stride_w};
    dilates = {s.dil_h - 1, s.dil_w - 1};  // oneDNN counts the gaps between taps
    pad_l = {s.pad_h, s.pad_w};
    // The right padding that makes oneDNN's output size ours: with a stride that does not divide
    // the padded extent, the last input rows are unused (it may be negative).
    const int64_t ekh = s.dil_h * (s.kh - 1) + 1, ekw = s.dil_w * (s.kw - 1) + 1;
    pad_r = {(oh - 1) * s.stride_h + ekh - s.h - s.pad_h,
             (ow - 1) * s.stride_w + ekw - s.w - s.pad_w};
    user_src = memory::desc(src, dt::f32, tag::nchw);
    user_dst = memory::desc(dst, dt::f32, tag::nchw);
    user_weights = memory::desc(weights, dt::f32, grouped ? tag::goihw : tag::oihw);
    user_bias = memory::desc(bias, dt::f32, tag::x);
  }
  static memory::desc any(const memory::dims& d) { return memory::desc(d, dt::f32, tag::any); }
};

// A buffer in the primitive's layout, fed from / copied back to the user's (plain) layout by
// cached reorders; when the layouts agree the user's memory is used directly.
struct Staged {
  memory user;                  // plain layout; its handle is set to the caller's pointer per call
  std::optional<memory> inner;  // the primitive's layout, when it differs
  std::optional<dnnl::reorder> to_inner, to_user;

  Staged(const memory::desc& user_desc, const memory::desc& inner_desc, bool input) {
    dnnl::engine& eng = cpu_engine();
    user = memory(user_desc, eng, DNNL_MEMORY_NONE);
    if (inner_desc == user_desc) return;
    inner.emplace(inner_desc, eng);  // allocated once, reused by every call of this shape
    if (input)
      to_inner.emplace(user, *inner);
    else
      to_user.emplace(*inner, user);
  }
  // The memory the primitive reads or writes, after the caller's data went in (inputs).
  memory& bind(const void* p) {
    user.set_data_handle(const_cast<void*>(p));
    if (to_inner) to_inner->execute(cpu_stream(), user, *inner);
    return inner ? *inner : user;
  }
  void finish() {  // outputs: back to the caller's layout
    if (to_user) to_user->execute(cpu_stream(), *inner, user);
  }
};

struct ForwardEntry {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
  Staged src, weights, dst;
  memory bias;
  ForwardEntry(const DnnlGeometry& g, const dnnl::convolution_forward::primitive_desc& p,
               bool has_bias)
      : pd(p),
        prim(p),
        src(g.user_src, p.src_desc(), true),
        weights(g.user_weights, p.weights_desc(), true),
        dst(g.user_dst, p.dst_desc(), false) {
    if (has_bias) bias = memory(g.user_bias, cpu_engine(), DNNL_MEMORY_NONE);
  }
};

struct BackwardDataEntry {
  dnnl::convolution_backward_data prim;
  Staged diff_dst, weights, diff_src;
  BackwardDataEntry(const DnnlGeometry& g, const dnnl::convolution_backward_data::primitive_desc& p)
      : prim(p),
        diff_dst(g.user_dst, p.diff_dst_desc(), true),
        weights(g.user_weights, p.weights_desc(), true),
        diff_src(g.user_src, p.diff_src_desc(), false) {}
};

struct BackwardWeightsEntry {
  dnnl::convolution_backward_weights prim;
  Staged src, diff_dst, diff_weights;
  memory diff_bias;
  BackwardWeightsEntry(const DnnlGeometry& g,
                       const dnnl::convolution_backward_weights::primitive_desc& p, bool has_bias)
      : prim(p),
        src(g.user_src, p.src_desc(), true),
        diff_dst(g.user_dst, p.diff_dst_desc(), true),
        diff_weights(g.user_weights, p.diff_weights_desc(), false) {
    if (has_bias) diff_bias = memory(g.user_bias, cpu_engine(), DNNL_MEMORY_NONE);
  }
};

// Everything oneDNN keeps for one convolution shape: the forward with and without bias, the
// backward data and the backward weights with and without the bias gradient.
struct ConvEntry {
  DnnlGeometry g;
  std::optional<dnnl::convolution_forward::primitive_desc> fwd_pd[2];  // [with bias]
  std::unique_ptr<ForwardEntry> fwd[2];
  std::unique_ptr<BackwardDataEntry> bwd_data;
  std::unique_ptr<BackwardWeightsEntry> bwd_weights[2];  // [with diff_bias]

  explicit ConvEntry(const Conv2dShape& s) : g(s) {}
  const dnnl::convolution_forward::primitive_desc& forward_pd(bool bias) {
    auto& pd = fwd_pd[bias ? 1 : 0];
    if (!pd) {
      using fwd_t = dnnl::convolution_forward;
      const auto prop = dnnl::prop_kind::forward_training;
      const auto algo = dnnl::algorithm::convolution_direct;
      const auto desc =
          bias ? fwd_t::desc(prop, algo, DnnlGeometry::any(g.src), DnnlGeometry::any(g.weights),
                             g.user_bias, DnnlGeometry::any(g.dst), g.strides, g.dilates, g.pad_l,
                             g.pad_r)
               : fwd_t::desc(prop, algo, DnnlGeometry::any(g.src), DnnlGeometry::any(g.weights),
                             DnnlGeometry::any(g.dst), g.strides, g.dilates, g.pad_l, g.pad_r);
      pd.emplace(desc, cpu_engine());
    }
    return *pd;
  }
  // The forward the backward pass follows (the one that ran, if any).
  const dnnl::convolution_forward::primitive_desc& hint() {
    return forward_pd(fwd_pd[1].has_value());
  }
  ForwardEntry& forward(bool bias) {
    auto& f = fwd[bias ? 1 : 0];
    if (!f) f = std::make_unique<ForwardEntry>(g, forward_pd(bias), bias);
    return *f;
  }
  BackwardDataEntry& backward_data() {
    if (!bwd_data) {
      using bd_t = dnnl::convolution_backward_data;
      bd_t::desc d(dnnl::algorithm::convolution_direct, DnnlGeometry::any(g.src),
                   DnnlGeometry::any(g.weights), DnnlGeometry::any(g.dst), g.strides, g.dilates,
                   g.pad_l, g.pad_r);
      bwd_data =
          std::make_unique<BackwardDataEntry>(g, bd_t::primitive_desc(d, cpu_engine(), hint()));
    }
    return *bwd_data;
  }
  BackwardWeightsEntry& backward_weights(bool want_bias) {
    auto& e = bwd_weights[want_bias ? 1 : 0];
    if (!e) {
      using bw_t = dnnl::convolution_backward_weights;
      const auto algo = dnnl::algorithm::convolution_direct;
      const auto d =
          want_bias ? bw_t::desc(algo, DnnlGeometry::any(g.src), DnnlGeometry::any(g.weights),
                                 g.user_bias, DnnlGeometry::any(g.dst), g.strides, g.dilates,
                                 g.pad_l, g.pad_r)
                    : bw_t::desc(algo, DnnlGeometry::any(g.src), DnnlGeometry::any(g.weights),
                                 DnnlGeometry::any(g.dst), g.strides, g.dilates, g.pad_l, g.pad_r);
      e = std::make_unique<BackwardWeightsEntry>(g, bw_t::primitive_desc(d, cpu_engine(), hint()),
                                                 want_bias);
    }
    return *e;
  }
};

using ShapeKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                            int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
ShapeKey key_of(const Conv2dShape& s) {
  return {s.n,        s.c,        s.h,     s.w,     s.o,     s.kh,    s.kw,
          s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dil_h, s.dil_w, s.groups};
}

std::mutex cache_mutex;
// Calls hold the mutex: the cached buffers belong to one call at a time. `build` creates what
// the call needs (primitive descriptors may fail for a shape oneDNN does not support).
template <typename Build>
auto& entry(const Conv2dShape& s, Build&& build) {
  static std::map<ShapeKey, std::unique_ptr<ConvEntry>> cache;
  auto& e = cache[key_of(s)];
  if (!e) e = std::make_unique<ConvEntry>(s);
  try {
    return build(*e);
  } catch (const dnnl::error& err) {
    ND_FAIL("oneDNN has no convolution for input (", s.n, ", ", s.c, ", ", s.h, ", ", s.w, "), ",
            s.o, " outputs, kernel ", s.kh, "x", s.kw, ", stride ", s.stride_h, ", padding ",
            s.pad_h, ", dilation ", s.dil_h, ", groups ", s.groups, ": ", err.what(),
            "; ND_CPU_CONV=ref selects the reference");
  }
}

}  // namespace

bool conv2d_onednn_available() {
  return true;
}

void conv2d_forward_onednn(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                           float* y) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  ForwardEntry& f = entry(s, [&](ConvEntry& e) -> ForwardEntry& { return e.forward(bias); });
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, f.src.bind(x)},
                                       {DNNL_ARG_WEIGHTS, f.weights.bind(w)},
                                       {DNNL_ARG_DST, f.dst.bind(y)}};
  if (bias) {
    f.bias.set_data_handle(const_cast<float*>(bias));
    args.emplace(DNNL_ARG_BIAS, f.bias);
  }
  f.prim.execute(cpu_stream(), args);
  f.dst.finish();
  cpu_stream().wait();
}

void conv2d_backward_onednn(const Conv2dShape& s, const float* x, const float* w, const float* dy,
                            float* dx, float* dw, float* dbias) {
  std::lock_guard<std::mutex> lock(cache_mutex);
  if (dx) {
    BackwardDataEntry& b =
        entry(s, [](ConvEntry& e) -> BackwardDataEntry& { return e.backward_data(); });
    b.prim.execute(cpu_stream(), {{DNNL_ARG_DIFF_DST, b.diff_dst.bind(dy)},
                                  {DNNL_ARG_WEIGHTS, b.weights.bind(w)},
                                  {DNNL_ARG_DIFF_SRC, b.diff_src.bind(dx)}});
    b.diff_src.finish();
  }
  if (dw) {
    BackwardWeightsEntry& b = entry(s, [&](ConvEntry& e) -> BackwardWeightsEntry& {
      return e.backward_weights(dbias != nullptr);
    });
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, b.src.bind(x)},
                                         {DNNL_ARG_DIFF_DST, b.diff_dst.bind(dy)},
                                         {DNNL_ARG_DIFF_WEIGHTS, b.diff_weights.bind(dw)}};
    if (dbias) {
      b.diff_bias.set_data_handle(dbias);
      args.emplace(DNNL_ARG_DIFF_BIAS, b.diff_bias);
    }
    b.prim.execute(cpu_stream(), args);
    b.diff_weights.finish();
  } else if (dbias) {
    // Only the bias: sum dy over images and pixels (double, as the reference).
    const int64_t p = s.out_h() * s.out_w();
    for (int64_t o = 0; o < s.o; ++o) {
      double acc = 0;
      for (int64_t n = 0; n < s.n; ++n)
        for (int64_t i = 0; i < p; ++i) acc += dy[(n * s.o + o) * p + i];
      dbias[o] = float(acc);
    }
  }
  cpu_stream().wait();
}

#else  // no oneDNN in this build

bool conv2d_onednn_available() {
  return false;
}
void conv2d_forward_onednn(const Conv2dShape&, const float*, const float*, const float*, float*) {
  ND_FAIL("this build has no oneDNN (apt-get install libdnnl-dev and reconfigure)");
}
void conv2d_backward_onednn(const Conv2dShape&, const float*, const float*, const float*, float*,
                            float*, float*) {
  ND_FAIL("this build has no oneDNN (apt-get install libdnnl-dev and reconfigure)");
}

#endif

}  // namespace nd::kernels
