// PEPNet building blocks (Chang et al., KDD 2023): Gate NU, EPNet (the seed's slot-gate) and
// PPNet-style per-task tower gates.
//
// GateNU:  delta = gamma * sigmoid(W2 ReLU(W1 x + b1) + b2),  gamma = 2 by default.
//          Parameters: layers.0.weight [hidden, in], layers.0.bias, layers.1.weight [out, hidden],
//          layers.1.bias.
// EpNet:   x = [domain-side embeddings; stop_gradient(E)], E = concat of the general feature-slot
//          embeddings with widths w_0..w_{S-1}; delta = GateNU(x) with S outputs (slot-wise: one
//          value per slot, broadcast over its width) or sum(w) outputs (unit-wise);
//          O = delta (.) E. Gradients: dE = delta (.) dO (the stop_gradient path carries none);
//          d domain comes from the gate. Parameters: gate.layers.{0,1}.{weight,bias}.
// PpNet:   for task k and tower hidden layer l, delta_kl = GateNU_kl([prior; stop_gradient(o)])
//          with width(layer l) outputs; the tower multiplies its layer-l output by delta_kl
//          (gate_scale_forward / gate_scale_backward). Parameters: gates.{k}.{l}.layers.*.
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/kernels/activation.hpp"
#include "mtrank/nn/linear.hpp"

namespace mtrank::blocks {

struct GateNUOptions {
  Index in = 0;
  Index hidden = 0;  // 0: same as in
  Index out = 0;
  double gamma = 2.0;
};

template <class T = float>
class GateNU {
 public:
  using Scalar = T;
  struct Workspace {
    typename nn::Linear<T>::Workspace l1, l2;
    TensorT<T> h, delta, da, dh;
  };

  GateNU() = default;
  GateNU(ParameterArenaT<T>& arena, std::string_view prefix, GateNUOptions opt) : opt_(opt) {
    if (opt_.hidden == 0) opt_.hidden = opt_.in;
    require(opt_.in > 0 && opt_.out > 0, "GateNU '", prefix, "': in and out must be > 0, got in=", opt_.in,
            " out=", opt_.out);
    require(opt_.gamma > 0, "GateNU '", prefix, "': gamma must be > 0, got ", opt_.gamma);
    l1_ = nn::Linear<T>(arena, join_name(prefix, "layers.0"), {.in = opt_.in, .out = opt_.hidden});
    l2_ = nn::Linear<T>(arena, join_name(prefix, "layers.1"), {.in = opt_.hidden, .out = opt_.out});
  }

  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    MatrixView<const T> a1 = l1_.forward(x, ws.l1, ctx);
    MatrixView<T> h = ensure(ws.h, x.rows, opt_.hidden);
    for (Index r = 0; r < x.rows; ++r)
      for (Index c = 0; c < opt_.hidden; ++c) h(r, c) = a1(r, c) > T(0) ? a1(r, c) : T(0);
    MatrixView<const T> a2 = l2_.forward(h, ws.l2, ctx);
    MatrixView<T> d = ensure(ws.delta, x.rows, opt_.out);
    const T g = static_cast<T>(opt_.gamma);
    for (Index r = 0; r < x.rows; ++r)
      for (Index c = 0; c < opt_.out; ++c) d(r, c) = g * kernels::sigmoid_scalar(a2(r, c));
    return d;
  }

  MatrixView<const T> backward(MatrixView<const T> ddelta, Workspace& ws, bool need_dx = true) const {
    MatrixView<const T> d = ws.delta.matrix();
    require_shape(ddelta, d.rows, d.cols, "GateNU backward ddelta");
    MatrixView<T> da = ensure(ws.da, d.rows, d.cols);
    const T inv_g = static_cast<T>(1.0 / opt_.gamma);
    for (Index r = 0; r < d.rows; ++r)
      for (Index c = 0; c < d.cols; ++c) da(r, c) = ddelta(r, c) * d(r, c) * (T(1) - d(r, c) * inv_g);
    MatrixView<const T> dh = l2_.backward(da, ws.l2, true);
    MatrixView<T> dpre = ensure(ws.dh, d.rows, opt_.hidden);
    MatrixView<const T> h = ws.h.matrix();
    for (Index r = 0; r < d.rows; ++r)
      for (Index c = 0; c < opt_.hidden; ++c) dpre(r, c) = h(r, c) > T(0) ? dh(r, c) : T(0);
    return l1_.backward(dpre, ws.l1, need_dx);
  }

  Index in_features() const { return opt_.in; }
  Index out_features() const { return opt_.out; }
  const GateNUOptions& options() const { return opt_; }

 private:
  GateNUOptions opt_;
  nn::Linear<T> l1_, l2_;
};

struct EpNetOptions {
  Index domain_in = 0;              // width of the domain-side embeddings (may be 0)
  std::vector<Index> slot_widths;   // widths of the general feature slots in E
  Index hidden = 0;                 // Gate NU hidden width (0: gate input width)
  double gamma = 2.0;
  bool unit_wise = false;           // false: one delta per slot; true: one per unit of E
};

template <class T = float>
class EpNet {
 public:
  using Scalar = T;
  struct Workspace {
    TensorT<T> gate_in, out, d_emb, d_delta;
    typename GateNU<T>::Workspace gate;
    MatrixView<const T> emb;
    MatrixView<const T> delta;
  };
  struct Grads {
    MatrixView<const T> d_domain;  // [B, domain_in] (empty when domain_in == 0 or not requested)
    MatrixView<const T> d_emb;     // [B, sum(slot_widths)]: delta (.) dO
  };

  EpNet() = default;
  EpNet(ParameterArenaT<T>& arena, std::string_view prefix, EpNetOptions opt) : opt_(std::move(opt)) {
    require(!opt_.slot_widths.empty(), "EPNet '", prefix, "': slot_widths must not be empty");
    require(opt_.domain_in >= 0, "EPNet '", prefix, "': domain_in must be >= 0");
    for (std::size_t s = 0; s < opt_.slot_widths.size(); ++s) {
      require(opt_.slot_widths[s] > 0, "EPNet '", prefix, "': slot_widths[", s, "] must be > 0, got ",
              opt_.slot_widths[s]);
      slot_begin_.push_back(emb_width_);
      emb_width_ += opt_.slot_widths[s];
    }
    const Index gin = opt_.domain_in + emb_width_;
    gate_ = GateNU<T>(arena, join_name(prefix, "gate"),
                      {.in = gin,
                       .hidden = opt_.hidden ? opt_.hidden : gin,
                       .out = opt_.unit_wise ? emb_width_ : static_cast<Index>(opt_.slot_widths.size()),
                       .gamma = opt_.gamma});
  }

  /// domain [B, domain_in] (ignored when domain_in == 0), emb [B, sum(slot_widths)] -> O.
  MatrixView<const T> forward(MatrixView<const T> domain, MatrixView<const T> emb, Workspace& ws,
                              const Context& ctx = {}) const {
    const Index B = emb.rows;
    require(emb.cols == emb_width_, "EPNet: embedding input has ", emb.cols, " columns, expected sum(slot_widths) = ",
            emb_width_);
    if (opt_.domain_in > 0) require_shape(domain, B, opt_.domain_in, "EPNet domain input");
    MatrixView<T> gin = ensure(ws.gate_in, B, opt_.domain_in + emb_width_);
    if (opt_.domain_in > 0) copy(domain, gin.col_block(0, opt_.domain_in));
    copy(emb, gin.col_block(opt_.domain_in, emb_width_));  // stop_gradient(E): no grad flows back here
    ws.emb = emb;
    ws.delta = gate_.forward(gin, ws.gate, ctx);
    MatrixView<T> out = ensure(ws.out, B, emb_width_);
    for (Index b = 0; b < B; ++b)
      for (std::size_t s = 0; s < opt_.slot_widths.size(); ++s)
        for (Index c = slot_begin_[s]; c < slot_begin_[s] + opt_.slot_widths[s]; ++c)
          out(b, c) = ws.delta(b, opt_.unit_wise ? c : static_cast<Index>(s)) * emb(b, c);
    return out;
  }

  Grads backward(MatrixView<const T> dout, Workspace& ws, bool need_d_domain = true) const {
    const Index B = ws.emb.rows;
    require_shape(dout, B, emb_width_, "EPNet backward dO");
    MatrixView<T> de = ensure(ws.d_emb, B, emb_width_);
    MatrixView<T> dd = ensure(ws.d_delta, B, ws.delta.cols);
    ws.d_delta.zero();
    for (Index b = 0; b < B; ++b)
      for (std::size_t s = 0; s < opt_.slot_widths.size(); ++s)
        for (Index c = slot_begin_[s]; c < slot_begin_[s] + opt_.slot_widths[s]; ++c) {
          const Index j = opt_.unit_wise ? c : static_cast<Index>(s);
          de(b, c) = ws.delta(b, j) * dout(b, c);
          dd(b, j) += dout(b, c) * ws.emb(b, c);
        }
    const bool want = need_d_domain && opt_.domain_in > 0;
    MatrixView<const T> dgin = gate_.backward(dd, ws.gate, want);
    Grads g;
    g.d_emb = de;
    if (want) g.d_domain = dgin.col_block(0, opt_.domain_in);
    return g;
  }

  Index emb_width() const { return emb_width_; }
  Index num_slots() const { return static_cast<Index>(opt_.slot_widths.size()); }
  const GateNU<T>& gate() const { return gate_; }
  const EpNetOptions& options() const { return opt_; }

 private:
  EpNetOptions opt_;
  std::vector<Index> slot_begin_;
  Index emb_width_ = 0;
  GateNU<T> gate_;
};

struct PpNetOptions {
  Index prior_in = 0;               // width of the personal-prior embeddings (user/item/author ids)
  Index context_in = 0;             // width of the stop-gradient context (e.g. the EPNet output), may be 0
  Index num_tasks = 0;
  std::vector<Index> layer_widths;  // widths of the tower hidden layers that are gated
  Index hidden = 0;                 // Gate NU hidden width (0: gate input width)
  double gamma = 2.0;
};

template <class T = float>
class PpNet {
 public:
  using Scalar = T;
  struct Workspace {
    TensorT<T> gate_in, d_prior;
    std::vector<typename GateNU<T>::Workspace> gates;  // [k * L + l]
    std::vector<std::vector<MatrixView<const T>>> deltas;  // [k][l]
  };

  PpNet() = default;
  PpNet(ParameterArenaT<T>& arena, std::string_view prefix, PpNetOptions opt) : opt_(std::move(opt)) {
    require(opt_.prior_in > 0, "PPNet '", prefix, "': prior_in must be > 0");
    require(opt_.context_in >= 0, "PPNet '", prefix, "': context_in must be >= 0");
    require(opt_.num_tasks > 0, "PPNet '", prefix, "': num_tasks must be > 0");
    require(!opt_.layer_widths.empty(), "PPNet '", prefix, "': layer_widths must not be empty");
    const Index gin = opt_.prior_in + opt_.context_in;
    for (Index k = 0; k < opt_.num_tasks; ++k)
      for (std::size_t l = 0; l < opt_.layer_widths.size(); ++l) {
        require(opt_.layer_widths[l] > 0, "PPNet '", prefix, "': layer_widths[", l, "] must be > 0");
        gates_.emplace_back(arena, join_name(prefix, "gates." + std::to_string(k) + "." + std::to_string(l)),
                            GateNUOptions{.in = gin, .hidden = opt_.hidden ? opt_.hidden : gin,
                                          .out = opt_.layer_widths[l], .gamma = opt_.gamma});
      }
  }

  /// prior [B, prior_in], context [B, context_in] (stop-gradient) -> deltas[k][l] [B, layer_widths[l]].
  const std::vector<std::vector<MatrixView<const T>>>& forward(MatrixView<const T> prior, MatrixView<const T> context,
                                                               Workspace& ws, const Context& ctx = {}) const {
    const Index B = prior.rows;
    require_shape(prior, B, opt_.prior_in, "PPNet prior input");
    if (opt_.context_in > 0) require_shape(context, B, opt_.context_in, "PPNet context input");
    MatrixView<T> gin = ensure(ws.gate_in, B, opt_.prior_in + opt_.context_in);
    copy(prior, gin.col_block(0, opt_.prior_in));
    if (opt_.context_in > 0) copy(context, gin.col_block(opt_.prior_in, opt_.context_in));
    const std::size_t L = opt_.layer_widths.size();
    ws.gates.resize(gates_.size());
    ws.deltas.resize(static_cast<std::size_t>(opt_.num_tasks));  // resize, not assign(n, vector(L)): no
    for (auto& d : ws.deltas) d.resize(L);                          // temporary vector per call
    for (std::size_t i = 0; i < gates_.size(); ++i) ws.deltas[i / L][i % L] = gates_[i].forward(gin, ws.gates[i], ctx);
    return ws.deltas;
  }

  /// d_deltas[k][l] (an empty view = no gradient) -> d prior [B, prior_in].
  MatrixView<const T> backward(const std::vector<std::vector<MatrixView<const T>>>& d_deltas, Workspace& ws,
                               bool need_dx = true) const {
    const std::size_t L = opt_.layer_widths.size();
    require(static_cast<Index>(d_deltas.size()) == opt_.num_tasks, "PPNet backward: ", d_deltas.size(),
            " task gradient lists but num_tasks is ", opt_.num_tasks);
    const Index B = ws.gate_in.dim(0);
    MatrixView<T> dp;
    if (need_dx) {
      dp = ensure(ws.d_prior, B, opt_.prior_in);
      ws.d_prior.zero();
    }
    for (std::size_t i = 0; i < gates_.size(); ++i) {
      require(d_deltas[i / L].size() == L, "PPNet backward: task ", i / L, " has ", d_deltas[i / L].size(),
              " layer gradients, expected ", L);
      MatrixView<const T> dd = d_deltas[i / L][i % L];
      if (dd.empty()) continue;
      MatrixView<const T> dg = gates_[i].backward(dd, ws.gates[i], need_dx);
      if (need_dx) add_into(dg.col_block(0, opt_.prior_in), dp);
    }
    return need_dx ? MatrixView<const T>(dp) : MatrixView<const T>{};
  }

  const PpNetOptions& options() const { return opt_; }

 private:
  PpNetOptions opt_;
  std::vector<GateNU<T>> gates_;
};

/// y = h (.) delta (same shapes).
template <class T>
void gate_scale_forward(MatrixView<const T> h, MatrixView<const T> delta, MatrixView<T> y) {
  require_shape(delta, h.rows, h.cols, "gate_scale delta");
  require_shape(y, h.rows, h.cols, "gate_scale output");
  for (Index r = 0; r < h.rows; ++r)
    for (Index c = 0; c < h.cols; ++c) y(r, c) = h(r, c) * delta(r, c);
}
/// dh = dy (.) delta, ddelta = dy (.) h (both overwritten).
template <class T>
void gate_scale_backward(MatrixView<const T> dy, MatrixView<const T> h, MatrixView<const T> delta, MatrixView<T> dh,
                         MatrixView<T> ddelta) {
  for (Index r = 0; r < h.rows; ++r)
    for (Index c = 0; c < h.cols; ++c) {
      dh(r, c) = dy(r, c) * delta(r, c);
      ddelta(r, c) = dy(r, c) * h(r, c);
    }
}

extern template class GateNU<float>;
extern template class GateNU<double>;
extern template class EpNet<float>;
extern template class EpNet<double>;
extern template class PpNet<float>;
extern template class PpNet<double>;

}  // namespace mtrank::blocks
