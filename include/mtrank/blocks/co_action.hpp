// Co-action unit (CAN, Bian et al., WSDM 2022). An item-side embedding P [B, P] (from its own
// table) is reshaped into the weights and biases of a micro-MLP; each user-side input
// (L = 1) or each item of a behaviour sequence x [B, L, d] (stored as [B*L, d], row b*L + t)
// goes through that micro-MLP, with optional multi-order inputs x, x^2, ..., x^C; the outputs
// are summed over the valid positions t < length[b].
//
// Reshape order (follows the official CAN code, gen_coaction): P is read left to right as
//   for each order block c (C blocks when order_independent, else 1 block shared by all orders):
//     for each micro layer l (widths in_0 = d, in_{l+1} = layers[l]):
//       W_l [in_l, layers[l]] row-major  (h_{l+1} = h_l W_l + b_l, i.e. W_l[i, o] = P[off + i*out + o])
//       b_l [layers[l]]                  (only when bias)
// so P must have (order_independent ? C : 1) * sum_l (in_l * out_l + (bias ? out_l : 0)) columns.
// Activation (tanh by default) after every micro layer except the last (as the official code;
// activate_last = true applies it to the last too).
// Output per sample: concat over orders c of (concat_layers ? [h_1; h_2; ...; h_n] : h_n), each
// summed over valid positions (the official code concatenates every layer's output for every
// order); sum_orders = true adds the order blocks instead of concatenating them.
//
// float runs the co-action kernel family (kernels/co_action.hpp: sequence positions in SIMD
// lanes, AVX2 / AVX-512 dispatched; the backward recomputes the micro-MLP instead of reading
// ws.acts); double (gradient checks) runs the loops below.
#pragma once
#include <cmath>
#include <span>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/kernels/co_action.hpp"

namespace mtrank::blocks {

enum class MicroActivation { tanh, relu, sigmoid, identity };

struct CoActionOptions {
  Index in = 0;                      // d: width of each user-side / sequence embedding
  std::vector<Index> layers{4, 4};   // micro-MLP widths
  bool bias = true;
  Index orders = 1;                  // C: inputs x, x^2, ..., x^C
  bool order_independent = false;    // separate micro-MLP parameters per order
  MicroActivation activation = MicroActivation::tanh;
  bool activate_last = false;
  bool concat_layers = true;         // output every layer's output (official code) or only the last
  bool sum_orders = false;           // add order blocks instead of concatenating them
};

template <class T = float>
class CoActionUnit {
 public:
  using Scalar = T;
  struct Workspace {
    MatrixView<const T> p, x;
    Index seq_len = 0;
    std::vector<Index> lengths;
    TensorT<T> acts;  // [B*L*C, sum(layers)] micro-layer outputs (after activation)
    TensorT<T> y, dp, dx;
    std::vector<T> g, gin;  // scratch
  };

  CoActionUnit() = default;
  explicit CoActionUnit(CoActionOptions opt) : opt_(std::move(opt)) {
    require(opt_.in > 0, "co-action unit: in must be > 0, got ", opt_.in);
    require(!opt_.layers.empty(), "co-action unit: layers must not be empty");
    require(opt_.orders >= 1, "co-action unit: orders must be >= 1, got ", opt_.orders);
    Index w = opt_.in, wl = 0, unused = 0;
    auto add = [](Index& acc, Index v) {
      require(!__builtin_add_overflow(acc, v, &acc), "co-action unit: micro-MLP sizes overflow 64 bits");
    };
    for (std::size_t l = 0; l < opt_.layers.size(); ++l) {
      require(opt_.layers[l] > 0, "co-action unit: layers[", l, "] must be > 0");
      require(!__builtin_mul_overflow(w, opt_.layers[l], &wl), "co-action unit: micro-MLP sizes overflow 64 bits");
      w_off_.push_back(block_);
      add(block_, wl);
      b_off_.push_back(block_);
      if (opt_.bias) add(block_, opt_.layers[l]);
      act_off_.push_back(act_width_);
      add(act_width_, opt_.layers[l]);
      w = opt_.layers[l];
    }
    require(!__builtin_mul_overflow(opt_.orders, std::max(block_, act_width_), &unused),
            "co-action unit: micro-MLP sizes overflow 64 bits");  // param_width(), out_features()
    per_order_ = opt_.concat_layers ? act_width_ : opt_.layers.back();
  }

  /// Columns P must have.
  Index param_width() const { return (opt_.order_independent ? opt_.orders : 1) * block_; }
  Index out_features() const { return (opt_.sum_orders ? 1 : opt_.orders) * per_order_; }
  Index in_features() const { return opt_.in; }
  const CoActionOptions& options() const { return opt_; }

  /// p [B, param_width()], x [B*seq_len, in], lengths: empty (all seq_len valid) or B values in
  /// [0, seq_len]. Returns [B, out_features()].
  MatrixView<const T> forward(MatrixView<const T> p, MatrixView<const T> x, Index seq_len,
                              std::span<const Index> lengths, Workspace& ws) const {
    const Index B = p.rows;
    require(p.cols == param_width(), "co-action unit: item-side parameter input has ", p.cols,
            " columns, expected ", param_width());
    require(seq_len >= 1, "co-action unit: seq_len must be >= 1, got ", seq_len);
    require_shape(x, B * seq_len, opt_.in, "co-action unit input x ([B*seq_len, in])");
    require(lengths.empty() || static_cast<Index>(lengths.size()) == B, "co-action unit: lengths has ",
            lengths.size(), " entries for batch ", B);
    for (std::size_t b = 0; b < lengths.size(); ++b)
      if (lengths[b] < 0 || lengths[b] > seq_len)
        fail("co-action unit: lengths[", b, "] = ", lengths[b], " out of range [0, ", seq_len, "]");
    ws.p = p;
    ws.x = x;
    ws.seq_len = seq_len;
    ws.lengths.assign(lengths.begin(), lengths.end());
    const Index C = opt_.orders;
    if constexpr (std::is_same_v<T, float>) {
      MatrixView<T> y = ensure(ws.y, B, out_features());
      const kernels::CoActionArgs a = kernel_args(B, seq_len, p.stride, x.stride);
      ws.g.resize(static_cast<std::size_t>(kernels::co_action_scratch_size(a)));
      kernels::co_action_kernels().f32_co_action_forward(a, p.data, x.data, ws.lengths.empty() ? nullptr : ws.lengths.data(),
                                                         y.data, ws.g.data());
      return y;
    }
    MatrixView<T> acts = ensure(ws.acts, B * seq_len * C, act_width_);
    MatrixView<T> y = ensure(ws.y, B, out_features());
    ws.y.zero();
    ws.gin.resize(static_cast<std::size_t>(opt_.in));
    for (Index b = 0; b < B; ++b) {
      const Index len = lengths.empty() ? seq_len : lengths[static_cast<std::size_t>(b)];
      for (Index t = 0; t < len; ++t) {
        const T* xr = x.row(b * seq_len + t);
        for (Index c = 0; c < C; ++c) {
          for (Index i = 0; i < opt_.in; ++i) ws.gin[i] = power(xr[i], c + 1);
          const T* P = p.row(b) + (opt_.order_independent ? c * block_ : 0);
          T* a = acts.row((b * seq_len + t) * C + c);
          const T* h = ws.gin.data();
          Index w = opt_.in;
          for (std::size_t l = 0; l < opt_.layers.size(); ++l) {
            const Index o = opt_.layers[l];
            const T* W = P + w_off_[l];
            T* out = a + act_off_[l];
            for (Index j = 0; j < o; ++j) out[j] = opt_.bias ? P[b_off_[l] + j] : T(0);
            for (Index i = 0; i < w; ++i) {
              const T hi = h[i];
              for (Index j = 0; j < o; ++j) out[j] += hi * W[i * o + j];
            }
            if (activated(l))
              for (Index j = 0; j < o; ++j) out[j] = act(out[j]);
            h = out;
            w = o;
          }
          T* yb = y.row(b) + (opt_.sum_orders ? 0 : c * per_order_);
          const T* src = opt_.concat_layers ? a : a + act_off_.back();
          for (Index j = 0; j < per_order_; ++j) yb[j] += src[j];
        }
      }
    }
    return y;
  }

  /// dy [B, out_features()] -> ws.dp [B, param_width()] and ws.dx [B*seq_len, in] (both overwritten).
  void backward(MatrixView<const T> dy, Workspace& ws) const {
    const Index B = ws.p.rows, L = ws.seq_len, C = opt_.orders;
    require_shape(dy, B, out_features(), "co-action unit backward dy");
    MatrixView<T> dp = ensure(ws.dp, B, param_width());
    MatrixView<T> dx = ensure(ws.dx, B * L, opt_.in);
    if constexpr (std::is_same_v<T, float>) {
      kernels::CoActionArgs a = kernel_args(B, L, ws.p.stride, ws.x.stride);
      a.ld_y = dy.stride;
      ws.g.resize(static_cast<std::size_t>(kernels::co_action_scratch_size(a)));
      kernels::co_action_kernels().f32_co_action_backward(a, ws.p.data, ws.x.data,
                                                          ws.lengths.empty() ? nullptr : ws.lengths.data(), dy.data,
                                                          dp.data, dx.data, ws.g.data());
      return;
    }
    ws.dp.zero();
    ws.dx.zero();
    MatrixView<const T> acts = ws.acts.matrix();
    ws.g.resize(static_cast<std::size_t>(act_width_));
    std::vector<T>& g = ws.g;
    ws.gin.resize(static_cast<std::size_t>(opt_.in) * 2);
    T* hin = ws.gin.data();
    T* dhin = ws.gin.data() + opt_.in;
    for (Index b = 0; b < B; ++b) {
      const Index len = ws.lengths.empty() ? L : ws.lengths[static_cast<std::size_t>(b)];
      for (Index t = 0; t < len; ++t) {
        const T* xr = ws.x.row(b * L + t);
        for (Index c = 0; c < C; ++c) {
          const T* P = ws.p.row(b) + (opt_.order_independent ? c * block_ : 0);
          T* dP = dp.row(b) + (opt_.order_independent ? c * block_ : 0);
          const T* a = acts.row((b * L + t) * C + c);
          // Gradient arriving at each layer's output from y.
          const T* dyb = dy.row(b) + (opt_.sum_orders ? 0 : c * per_order_);
          std::fill(g.begin(), g.end(), T(0));
          if (opt_.concat_layers)
            for (Index j = 0; j < act_width_; ++j) g[j] = dyb[j];
          else
            for (Index j = 0; j < opt_.layers.back(); ++j) g[act_off_.back() + j] = dyb[j];
          for (Index i = 0; i < opt_.in; ++i) hin[i] = power(xr[i], c + 1);
          for (std::size_t l = opt_.layers.size(); l-- > 0;) {
            const Index o = opt_.layers[l];
            const Index w = l ? opt_.layers[l - 1] : opt_.in;
            const T* out = a + act_off_[l];
            T* go = g.data() + act_off_[l];
            if (activated(l))
              for (Index j = 0; j < o; ++j) go[j] *= act_grad(out[j]);
            const T* h = l ? a + act_off_[l - 1] : hin;
            T* gh = l ? g.data() + act_off_[l - 1] : dhin;
            if (l == 0) std::fill(dhin, dhin + opt_.in, T(0));
            const T* W = P + w_off_[l];
            T* dW = dP + w_off_[l];
            if (opt_.bias)
              for (Index j = 0; j < o; ++j) dP[b_off_[l] + j] += go[j];
            for (Index i = 0; i < w; ++i) {
              T acc = 0;
              for (Index j = 0; j < o; ++j) {
                dW[i * o + j] += h[i] * go[j];
                acc += W[i * o + j] * go[j];
              }
              gh[i] += acc;
            }
          }
          T* dxr = dx.row(b * L + t);
          for (Index i = 0; i < opt_.in; ++i) dxr[i] += dhin[i] * T(c + 1) * power(xr[i], c);
        }
      }
    }
  }

 private:
  kernels::CoActionArgs kernel_args(Index B, Index L, Index ld_p, Index ld_x) const {
    kernels::CoActionArgs a;
    a.batch = B, a.seq_len = L, a.in = opt_.in;
    a.n_layers = static_cast<Index>(opt_.layers.size());
    a.widths = opt_.layers.data();
    a.bias = opt_.bias, a.orders = opt_.orders, a.order_independent = opt_.order_independent;
    switch (opt_.activation) {
      case MicroActivation::tanh: a.activation = kernels::CoActionActivation::tanh; break;
      case MicroActivation::relu: a.activation = kernels::CoActionActivation::relu; break;
      case MicroActivation::sigmoid: a.activation = kernels::CoActionActivation::sigmoid; break;
      case MicroActivation::identity: a.activation = kernels::CoActionActivation::identity; break;
    }
    a.activate_last = opt_.activate_last, a.concat_layers = opt_.concat_layers, a.sum_orders = opt_.sum_orders;
    a.ld_p = ld_p, a.ld_x = ld_x;
    return a;
  }
  static T power(T v, Index e) {
    T r = 1;
    for (Index i = 0; i < e; ++i) r *= v;
    return r;
  }
  bool activated(std::size_t l) const { return opt_.activate_last || l + 1 < opt_.layers.size(); }
  T act(T v) const {
    switch (opt_.activation) {
      case MicroActivation::tanh: return std::tanh(v);
      case MicroActivation::relu: return v > T(0) ? v : T(0);
      case MicroActivation::sigmoid: return T(1) / (T(1) + std::exp(-v));
      case MicroActivation::identity: return v;
    }
    return v;
  }
  // Derivative expressed through the output y.
  T act_grad(T y) const {
    switch (opt_.activation) {
      case MicroActivation::tanh: return T(1) - y * y;
      case MicroActivation::relu: return y > T(0) ? T(1) : T(0);
      case MicroActivation::sigmoid: return y * (T(1) - y);
      case MicroActivation::identity: return T(1);
    }
    return T(1);
  }

  CoActionOptions opt_;
  std::vector<Index> w_off_, b_off_, act_off_;
  Index block_ = 0, act_width_ = 0, per_order_ = 0;
};

extern template class CoActionUnit<float>;
extern template class CoActionUnit<double>;

}  // namespace mtrank::blocks
