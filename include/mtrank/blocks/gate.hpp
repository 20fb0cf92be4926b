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
// Note: the mixture and softmax loops are written here in plain C++; when the kernels family
// include/mtrank/kernels/{mixture,softmax}.hpp lands, these helpers should forward to it.
#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
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
    std::vector<Index> order;  // scratch for top-k selection
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
    const double inv_t = 1.0 / opt_.temperature;
    const bool sparse = opt_.top_k > 0 && opt_.top_k < E;
    ws.order.resize(static_cast<std::size_t>(E));
    for (Index b = 0; b < x.rows; ++b) {
      const T* z = logits.row(b);
      T* gb = g.row(b);
      if (sparse) {
        std::iota(ws.order.begin(), ws.order.end(), Index(0));
        std::partial_sort(ws.order.begin(), ws.order.begin() + opt_.top_k, ws.order.end(),
                          [&](Index a, Index c) { return z[a] > z[c] || (z[a] == z[c] && a < c); });
        std::fill(gb, gb + E, T(0));
        double mx = z[ws.order[0]] * inv_t, sum = 0;
        for (Index i = 0; i < opt_.top_k; ++i) {
          const Index e = ws.order[static_cast<std::size_t>(i)];
          const double v = std::exp(z[e] * inv_t - mx);
          gb[e] = static_cast<T>(v);
          sum += v;
        }
        for (Index i = 0; i < opt_.top_k; ++i) {
          const Index e = ws.order[static_cast<std::size_t>(i)];
          gb[e] = static_cast<T>(gb[e] / sum);
        }
      } else {
        double mx = z[0] * inv_t;
        for (Index e = 1; e < E; ++e) mx = std::max(mx, double(z[e]) * inv_t);
        double sum = 0;
        for (Index e = 0; e < E; ++e) sum += std::exp(z[e] * inv_t - mx);
        for (Index e = 0; e < E; ++e) gb[e] = static_cast<T>(std::exp(z[e] * inv_t - mx) / sum);
      }
    }
    return g;
  }

  /// dg [B, E] -> accumulates dW, db; returns dx [B, in] (when need_dx).
  MatrixView<const T> backward(MatrixView<const T> dg, Workspace& ws, bool need_dx = true) const {
    MatrixView<const T> g = ws.g.matrix();
    require_shape(dg, g.rows, g.cols, "softmax gate backward dg");
    MatrixView<T> dz = ensure(ws.dz, g.rows, g.cols);
    const T inv_t = static_cast<T>(1.0 / opt_.temperature);
    for (Index b = 0; b < g.rows; ++b) {
      const T* gb = g.row(b);
      const T* d = dg.row(b);
      T dot = 0;
      for (Index e = 0; e < g.cols; ++e) dot += gb[e] * d[e];
      for (Index e = 0; e < g.cols; ++e) dz(b, e) = gb[e] * (d[e] - dot) * inv_t;
    }
    return linear_.backward(dz, ws.linear, need_dx);
  }

  Index in_features() const { return opt_.in; }
  Index num_experts() const { return opt_.num_experts; }
  const SoftmaxGateOptions& options() const { return opt_; }
  const nn::Linear<T>& linear() const { return linear_; }

 private:
  SoftmaxGateOptions opt_;
  std::string name_;
  nn::Linear<T> linear_;
};

/// m[b, :] = sum_e g[b, e] f[e][b, :]. Every f[e] is [B, h]; rows with g == 0 are skipped.
template <class T>
void mixture_forward(MatrixView<const T> g, const std::vector<MatrixView<const T>>& f, MatrixView<T> m) {
  require(static_cast<Index>(f.size()) == g.cols, "mixture: ", f.size(), " experts but gate width ", g.cols);
  for (Index b = 0; b < m.rows; ++b) {
    T* mb = m.row(b);
    std::fill(mb, mb + m.cols, T(0));
    for (Index e = 0; e < g.cols; ++e) {
      const T w = g(b, e);
      if (w == T(0)) continue;
      const T* fb = f[static_cast<std::size_t>(e)].row(b);
      for (Index c = 0; c < m.cols; ++c) mb[c] += w * fb[c];
    }
  }
}

/// Backward of mixture_forward: dg[b, e] = <dm[b], f_e[b]> (overwritten) and
/// df_e[b] += g[b, e] dm[b] (accumulated; experts shared by several mixtures add up).
template <class T>
void mixture_backward(MatrixView<const T> dm, MatrixView<const T> g, const std::vector<MatrixView<const T>>& f,
                      MatrixView<T> dg, const std::vector<MatrixView<T>>& df) {
  for (Index b = 0; b < dm.rows; ++b) {
    const T* db = dm.row(b);
    for (Index e = 0; e < g.cols; ++e) {
      const T* fb = f[static_cast<std::size_t>(e)].row(b);
      T dot = 0;
      for (Index c = 0; c < dm.cols; ++c) dot += db[c] * fb[c];
      dg(b, e) = dot;
      const T w = g(b, e);
      if (w == T(0)) continue;
      T* dfb = df[static_cast<std::size_t>(e)].row(b);
      for (Index c = 0; c < dm.cols; ++c) dfb[c] += w * db[c];
    }
  }
}

extern template class SoftmaxGate<float>;
extern template class SoftmaxGate<double>;

}  // namespace mtrank::blocks
