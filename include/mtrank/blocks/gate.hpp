// Softmax gate (MMoE, Ma et al. KDD 2018) and the expert mixture it weights.
//
//   z = (W x + b) / temperature          W [E, in], b [E] (PyTorch Linear layout, bias optional)
//   dense:  g = softmax(z) over the E experts
//   top-k:  K_b = indices of the top_k largest z[b, :] (ties: lower index first)
//           g[b, e] = exp(z[b, e]) / sum_{e' in K_b} exp(z[b, e'])  for e in K_b, 0 elsewhere
//   mixture m[b, :] = sum_e g[b, e] f_e[b, :]
//
// Backward: dz[b, e] = g[b, e] (dg[b, e] - sum_e' g[b, e'] dg[b, e']), which is zero for the
// experts dropped by top-k (their g is 0), so the gradient flows only through kept entries.
//
// Parameters: "<prefix>.weight" [E, in], "<prefix>.bias" [E].
//
// The softmax and the mixture run on the kernel families kernels/softmax.hpp and
// kernels/mixture.hpp (dispatched AVX-512 / AVX2 / ref for float; the _ref templates for double).
// Top-k is a mask over the logits handed to the masked softmax kernel.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/kernels/mixture.hpp"
#include "mtrank/kernels/softmax.hpp"
#include "mtrank/nn/linear.hpp"

namespace mtrank::blocks {

struct SoftmaxGateOptions {
  Index in = 0;           // input width (set by the owning backbone)
  Index num_experts = 0;  // E (set by the owning backbone)
  bool bias = true;
  double temperature = 1.0;
  Index top_k = 0;  // 0 (or E): dense softmax; otherwise keep the top_k logits per row
};

template <class T = float>
class SoftmaxGate {
 public:
  using Scalar = T;
  struct Workspace {
    typename nn::Linear<T>::Workspace linear;
    TensorT<T> g, dz;
    std::vector<Index> order;         // scratch for top-k selection
    std::vector<std::uint8_t> mask;   // top-k: kept entries
  };

  SoftmaxGate() = default;
  SoftmaxGate(ParameterArenaT<T>& arena, std::string_view prefix, SoftmaxGateOptions opt) : opt_(opt), name_(prefix) {
    require(opt.num_experts > 0, "softmax gate '", prefix, "': num_experts must be > 0 (a gate over zero experts)");
    require(opt.in > 0, "softmax gate '", prefix, "': in must be > 0, got ", opt.in);
    require(opt.temperature > 0, "softmax gate '", prefix, "': temperature must be > 0, got ", opt.temperature);
    require(opt.top_k >= 0 && opt.top_k <= opt.num_experts, "softmax gate '", prefix, "': top_k ", opt.top_k,
            " must be in [0, num_experts = ", opt.num_experts, "]");
    linear_ = nn::Linear<T>(arena, prefix, {.in = opt.in, .out = opt.num_experts, .bias = opt.bias});
  }

  /// Returns g [B, E].
  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    MatrixView<const T> logits = linear_.forward(x, ws.linear, ctx);
    MatrixView<T> g = ensure(ws.g, x.rows, opt_.num_experts);
    const Index E = opt_.num_experts;
    const bool sparse = opt_.top_k > 0 && opt_.top_k < E;
    const std::uint8_t* mask = nullptr;
    if (sparse) {
      ws.mask.assign(static_cast<std::size_t>(x.rows * E), 0);
      ws.order.resize(static_cast<std::size_t>(E));
      for (Index b = 0; b < x.rows; ++b) {
        const T* z = logits.row(b);
        std::iota(ws.order.begin(), ws.order.end(), Index(0));
        std::partial_sort(ws.order.begin(), ws.order.begin() + opt_.top_k, ws.order.end(),
                          [&](Index a, Index c) { return z[a] > z[c] || (z[a] == z[c] && a < c); });
        for (Index i = 0; i < opt_.top_k; ++i) ws.mask[static_cast<std::size_t>(b * E + ws.order[i])] = 1;
      }
      mask = ws.mask.data();
    }
    const T t = static_cast<T>(opt_.temperature);
    if constexpr (std::is_same_v<T, float>)
      kernels::softmax_kernels().f32_softmax(x.rows, E, logits.data, logits.stride, t, mask, E, g.data, g.stride);
    else
      kernels::softmax_ref<T>(x.rows, E, logits.data, logits.stride, t, mask, E, g.data, g.stride);
    return g;
  }

  /// dg [B, E] -> accumulates dW, db; returns dx [B, in] (when need_dx).
  MatrixView<const T> backward(MatrixView<const T> dg, Workspace& ws, bool need_dx = true) const {
    MatrixView<const T> g = ws.g.matrix();
    require_shape(dg, g.rows, g.cols, "softmax gate backward dg");
    MatrixView<T> dz = ensure(ws.dz, g.rows, g.cols);
    const T t = static_cast<T>(opt_.temperature);
    if constexpr (std::is_same_v<T, float>)
      kernels::softmax_kernels().f32_softmax_backward(g.rows, g.cols, g.data, g.stride, dg.data, dg.stride, t, dz.data,
                                                      dz.stride);
    else
      kernels::softmax_backward_ref<T>(g.rows, g.cols, g.data, g.stride, dg.data, dg.stride, t, dz.data, dz.stride);
    return linear_.backward(dz, ws.linear, need_dx);
  }

  Index in_features() const { return opt_.in; }
  Index num_experts() const { return opt_.num_experts; }
  const SoftmaxGateOptions& options() const { return opt_; }
  const nn::Linear<T>& linear() const { return linear_; }
  void limit_input_grad(Index cols) { linear_.limit_input_grad(cols); }

 private:
  SoftmaxGateOptions opt_;
  std::string name_;
  nn::Linear<T> linear_;
};

namespace detail {
template <class V>
bool common_stride(const std::vector<V>& v) {
  for (const auto& m : v)
    if (m.stride != v[0].stride) return false;
  return true;
}
}  // namespace detail

/// m[b, :] = sum_e g[b, e] f[e][b, :]. Every f[e] is [B, h] (kernels/mixture.hpp).
template <class T>
void mixture_forward(MatrixView<const T> g, const std::vector<MatrixView<const T>>& f, MatrixView<T> m) {
  require(static_cast<Index>(f.size()) == g.cols, "mixture: ", f.size(), " experts but gate width ", g.cols);
  for (const auto& fe : f) require_shape(fe, m.rows, m.cols, "mixture expert output");
  // Expert pointers on the stack for up to 64 experts: serving must not allocate per call.
  std::array<const T*, 64> small;
  std::vector<const T*> large(f.size() > small.size() ? f.size() : 0);
  const T** ptr_data = f.size() > small.size() ? large.data() : small.data();
  struct {
    const T** p;
    const T*& operator[](std::size_t i) { return p[i]; }
    const T** data() { return p; }
  } ptr{ptr_data};
  if (detail::common_stride(f)) {
    for (std::size_t e = 0; e < f.size(); ++e) ptr[e] = f[e].data;
    const Index ld = f[0].stride;
    if constexpr (std::is_same_v<T, float>)
      kernels::mixture_kernels().f32_mixture(m.rows, g.cols, m.cols, g.data, g.stride, ptr.data(), ld, m.data, m.stride);
    else
      kernels::mixture_ref<T>(m.rows, g.cols, m.cols, g.data, g.stride, ptr.data(), ld, m.data, m.stride);
    return;
  }
  for (Index b = 0; b < m.rows; ++b) {  // experts with different row strides
    for (std::size_t e = 0; e < f.size(); ++e) ptr[e] = f[e].row(b);
    kernels::mixture_ref<T>(1, g.cols, m.cols, g.row(b), g.stride, ptr.data(), 0, m.row(b), m.stride);
  }
}

/// Backward of mixture_forward: dg[b, e] = <dm[b], f_e[b]> (overwritten) and
/// df_e[b] += g[b, e] dm[b] (accumulated; experts shared by several mixtures add up).
template <class T>
void mixture_backward(MatrixView<const T> dm, MatrixView<const T> g, const std::vector<MatrixView<const T>>& f,
                      MatrixView<T> dg, const std::vector<MatrixView<T>>& df) {
  require(f.size() == df.size() && static_cast<Index>(f.size()) == g.cols, "mixture backward: ", f.size(),
          " experts, ", df.size(), " expert gradients, gate width ", g.cols);
  std::vector<const T*> xp(f.size());
  std::vector<T*> dp(df.size());
  if (detail::common_stride(f) && detail::common_stride(df)) {
    for (std::size_t e = 0; e < f.size(); ++e) {
      xp[e] = f[e].data;
      dp[e] = df[e].data;
    }
    if constexpr (std::is_same_v<T, float>)
      kernels::mixture_kernels().f32_mixture_backward(dm.rows, g.cols, dm.cols, g.data, g.stride, xp.data(),
                                                      f[0].stride, dm.data, dm.stride, dp.data(), df[0].stride,
                                                      dg.data, dg.stride);
    else
      kernels::mixture_backward_ref<T>(dm.rows, g.cols, dm.cols, g.data, g.stride, xp.data(), f[0].stride, dm.data,
                                       dm.stride, dp.data(), df[0].stride, dg.data, dg.stride);
    return;
  }
  for (Index b = 0; b < dm.rows; ++b) {
    for (std::size_t e = 0; e < f.size(); ++e) {
      xp[e] = f[e].row(b);
      dp[e] = df[e].row(b);
    }
    kernels::mixture_backward_ref<T>(1, g.cols, dm.cols, g.row(b), g.stride, xp.data(), 0, dm.row(b), dm.stride,
                                     dp.data(), 0, dg.row(b), dg.stride);
  }
}

extern template class SoftmaxGate<float>;
extern template class SoftmaxGate<double>;

}  // namespace mtrank::blocks
