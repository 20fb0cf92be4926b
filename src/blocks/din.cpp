#include "mtrank/blocks/din.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "mtrank/kernels/din_attention.hpp"
#include "mtrank/kernels/gemm.hpp"

namespace mtrank::blocks {

using nn::ActivationKind;

template <class T>
DinAttention<T>::DinAttention(ParameterArenaT<T>& arena, std::string_view prefix, DinAttentionOptions opt)
    : opt_(std::move(opt)), name_(prefix), keys_what_("DinAttention '" + name_ + "' keys") {
  const Index d = opt_.dim;
  require(d > 0, "DinAttention '", prefix, "': dim must be > 0, got ", d);
  require(!opt_.hidden.empty(), "DinAttention '", prefix, "': hidden must list at least one layer width");
  for (std::size_t i = 0; i < opt_.hidden.size(); ++i)
    require(opt_.hidden[i] > 0, "DinAttention '", prefix, "': hidden[", i, "] must be > 0");
  lin0_ = nn::Linear<T>(arena, join_name(prefix, "layers.0"), {.in = 4 * d, .out = opt_.hidden[0]});
  const std::size_t n = opt_.hidden.size();
  for (std::size_t i = 0; i < n; ++i) {
    const Index w = opt_.hidden[i];
    acts_.emplace_back(arena, join_name(prefix, "acts." + std::to_string(i)),
                       nn::ActivationOptions{.kind = opt_.activation, .width = w});
    const Index out = i + 1 < n ? opt_.hidden[i + 1] : 1;
    lins_.emplace_back(arena, join_name(prefix, "layers." + std::to_string(i + 1)), nn::LinearOptions{.in = w, .out = out});
    const std::string act = join_name(prefix, "acts." + std::to_string(i));
    const bool dice = opt_.activation == ActivationKind::dice;
    act_weight_.push_back(opt_.activation == ActivationKind::prelu ? arena.find(join_name(act, "weight"))
                          : dice                                    ? arena.find(join_name(act, "alpha"))
                                                                    : nullptr);
    act_mean_.push_back(dice ? arena.find(join_name(act, "running_mean")) : nullptr);
    act_var_.push_back(dice ? arena.find(join_name(act, "running_var")) : nullptr);
  }
}

template <class T>
bool DinAttention<T>::use_kernel(const Context& ctx) const {
  if constexpr (!std::is_same_v<T, float>) {
    return false;
  } else {
    const bool act_ok = (opt_.activation == ActivationKind::prelu && act_weight_[0]) ||
                        (opt_.activation == ActivationKind::dice && !ctx.training && act_weight_[0] && act_mean_[0] &&
                         act_var_[0]);
    return opt_.fused && act_ok && (opt_.hidden.size() == 1 || opt_.hidden.size() == 2) &&
           lins_.back().bias() && lin0_.bias() && (opt_.hidden.size() == 1 || lins_[0].bias());
  }
}

template <class T>
MatrixView<const T> DinAttention<T>::score(Workspace& ws, const Context& ctx) const {
  MatrixView<const T> h = ws.h1.matrix();
  if (!opt_.fused) h = ws.lin0.y.matrix();
  ws.acts.resize(acts_.size());
  ws.lins.resize(lins_.size());
  for (std::size_t i = 0; i < acts_.size(); ++i) {
    h = acts_[i].forward(h, ws.acts[i], ctx);
    h = lins_[i].forward(h, ws.lins[i], ctx);
  }
  return h;
}

template <class T>
MatrixView<const T> DinAttention<T>::forward(MatrixView<const T> query, MatrixView<const T> keys, nn::Lengths lengths,
                                             Workspace& ws, const Context& ctx) const {
  const Index d = opt_.dim, h1 = opt_.hidden[0];
  const Index B = static_cast<Index>(lengths.size());
  if (query.cols != d) fail("DinAttention '", name_, "' query: ", query.cols, " columns, expected dim ", d);
  if (keys.cols != d) fail("DinAttention '", name_, "' keys: ", keys.cols, " columns, expected dim ", d);
  if (query.rows != B) fail("DinAttention '", name_, "' query: ", query.rows, " rows != lengths size ", B);
  nn::make_windows(lengths, B, keys.rows, opt_.max_len, opt_.overflow, keys_what_, ws.win);
  const nn::SeqWindows& w = ws.win;
  ws.query = query;
  ws.keys = keys;
  ws.offset.resize(static_cast<std::size_t>(B) + 1);
  ws.offset[0] = 0;
  for (Index b = 0; b < B; ++b) ws.offset[b + 1] = ws.offset[b] + w.count[b];
  const Index N = w.total;
  MatrixView<T> pooled = ensure(ws.pooled, B, d);
  ws.pooled.zero();
  ensure(ws.weights, B, w.padded);
  ws.weights.zero();
  ws.kernel = false;
  if (N == 0) return pooled;

  if constexpr (std::is_same_v<T, float>) {
    if (use_kernel(ctx)) {
      const std::size_t nh = opt_.hidden.size();
      kernels::DinAttentionArgs a;
      a.batch = B, a.padded_len = w.padded, a.dim = d, a.h1 = h1, a.h2 = nh == 2 ? opt_.hidden[1] : 0;
      a.ld_query = query.stride, a.ld_keys = keys.stride;
      a.activation = opt_.activation == ActivationKind::dice ? kernels::DinActivation::dice : kernels::DinActivation::prelu;
      a.softmax = opt_.softmax, a.normalize_by_length = opt_.normalize_by_length;
      kernels::DinAttentionWeights<float> kw;
      kw.w1 = lin0_.weight().data, kw.b1 = lin0_.bias(), kw.act1 = act_weight_[0]->value;
      kw.w3 = lins_.back().weight().data, kw.b3 = lins_.back().bias();
      if (nh == 2) kw.w2 = lins_[0].weight().data, kw.b2 = lins_[0].bias(), kw.act2 = act_weight_[1]->value;
      if (opt_.activation == ActivationKind::dice) {
        // Running statistics exactly as nn::Activation computes them at inference.
        const Index h2 = a.h2;
        ws.kstats.resize(static_cast<std::size_t>(2 * (h1 + h2)));
        float* st = ws.kstats.data();
        for (std::size_t l = 0; l < nh; ++l) {
          const Index hw = opt_.hidden[l];
          float* mean = st + (l ? 2 * h1 : 0);
          float* inv = mean + hw;
          for (Index j = 0; j < hw; ++j) {
            mean[j] = act_mean_[l]->value[j];
            inv[j] = float(1.0 / std::sqrt(double(act_var_[l]->value[j]) + acts_[l].options().dice_eps));
          }
        }
        kw.mean1 = st, kw.inv_std1 = st + h1;
        if (nh == 2) kw.mean2 = st + 2 * h1, kw.inv_std2 = st + 2 * h1 + h2;
      }
      // Pre-activations are always saved (backward may follow an inference-mode forward).
      float* saved = ensure(ws.ksaved, B * w.padded, h1 + a.h2).data;
      ws.kscratch.resize(static_cast<std::size_t>(kernels::din_attention_scratch_size(a)));
      kernels::din_attention_kernels().f32_din_attention_forward(a, kw, query.data, keys.data, w.start.data(),
                                                                 w.count.data(), pooled.data, ws.weights.data(), saved,
                                                                 ws.kscratch.data());
      ws.kernel = true;
      ws.kargs = a;
      ws.kweights = kw;
      return pooled;
    }
  }

  const MatrixView<const T> W1 = lin0_.weight();
  if (opt_.fused) {
    // A = Wq + Wd, Bm = Wk - Wd (rows [0, h1) and [h1, 2 h1) of qa).
    MatrixView<T> qa = ensure(ws.qa, 2 * h1, d);
    for (Index i = 0; i < h1; ++i)
      for (Index c = 0; c < d; ++c) {
        qa(i, c) = W1(i, c) + W1(i, 2 * d + c);
        qa(h1 + i, c) = W1(i, d + c) - W1(i, 2 * d + c);
      }
    MatrixView<T> C = ensure(ws.cvec, B, h1);
    for (Index b = 0; b < B; ++b) std::copy(lin0_.bias(), lin0_.bias() + h1, C.row(b));
    kernels::matmul<T>(query, false, MatrixView<const T>(qa.row_block(0, h1)), true, C, T(1), T(1));
    MatrixView<T> mats = ensure(ws.mats, B * h1, d);
    MatrixView<T> H1 = ensure(ws.h1, N, h1);
    for (Index b = 0; b < B; ++b) {
      const Index n = w.count[b];
      if (n == 0) continue;
      const T* q = query.row(b);
      MatrixView<T> M = mats.row_block(b * h1, h1);
      for (Index i = 0; i < h1; ++i) {
        const T* wp = W1.row(i) + 3 * d;
        const T* bm = qa.row(h1 + i);
        T* m = M.row(i);
        for (Index c = 0; c < d; ++c) m[c] = bm[c] + wp[c] * q[c];
      }
      MatrixView<T> Hb = H1.row_block(ws.offset[b], n);
      for (Index j = 0; j < n; ++j) std::copy(C.row(b), C.row(b) + h1, Hb.row(j));
      kernels::matmul<T>(keys.row_block(w.row(b, 0), n), false, MatrixView<const T>(M), true, Hb, T(1), T(1));
    }
  } else {
    MatrixView<T> in4 = ensure(ws.in4, N, 4 * d);
    for (Index b = 0; b < B; ++b) {
      const T* q = query.row(b);
      for (Index j = 0; j < w.count[b]; ++j) {
        const T* k = keys.row(w.row(b, j));
        T* x = in4.row(ws.offset[b] + j);
        for (Index c = 0; c < d; ++c) {
          x[c] = q[c];
          x[d + c] = k[c];
          x[2 * d + c] = q[c] - k[c];
          x[3 * d + c] = q[c] * k[c];
        }
      }
    }
    lin0_.forward(in4, ws.lin0, ctx);
  }
  ws.scores = score(ws, ctx);

  MatrixView<T> a = ws.weights.matrix();
  for (Index b = 0; b < B; ++b) {
    const Index n = w.count[b];
    if (n == 0) continue;
    T* ab = a.row(b) + w.start[b];
    for (Index j = 0; j < n; ++j) ab[j] = ws.scores(ws.offset[b] + j, 0);
    if (opt_.softmax) {
      T mx = -std::numeric_limits<T>::infinity();
      for (Index j = 0; j < n; ++j) mx = std::max(mx, ab[j]);
      T sum = 0;
      for (Index j = 0; j < n; ++j) sum += (ab[j] = std::exp(ab[j] - mx));
      for (Index j = 0; j < n; ++j) ab[j] /= sum;
    }
    const T scale = opt_.normalize_by_length ? T(1) / T(n) : T(1);
    T* y = pooled.row(b);
    for (Index j = 0; j < n; ++j) {
      const T* k = keys.row(w.row(b, j));
      const T aj = ab[j] * scale;
      for (Index c = 0; c < d; ++c) y[c] += aj * k[c];
    }
  }
  return pooled;
}

template <class T>
typename DinAttention<T>::Grads DinAttention<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  const Index d = opt_.dim, h1 = opt_.hidden[0];
  const nn::SeqWindows& w = ws.win;
  const Index B = w.batch, N = w.total;
  require_shape(dy, B, d, "DinAttention backward dy");
  MatrixView<T> dq = ensure(ws.dq, B, d);
  MatrixView<T> dk = ensure(ws.dkeys, B * w.padded, d);
  ws.dq.zero();
  ws.dkeys.zero();
  if (N == 0) return need_dx ? Grads{dq, dk} : Grads{};
  if constexpr (std::is_same_v<T, float>) {
    if (ws.kernel) {
      const std::size_t nh = opt_.hidden.size();
      kernels::DinAttentionGrads<float> g;
      g.w1 = lin0_.weight_param().grad, g.b1 = lin0_.bias_param()->grad, g.act1 = act_weight_[0]->grad;
      g.w3 = lins_.back().weight_param().grad, g.b3 = lins_.back().bias_param()->grad;
      if (nh == 2) g.w2 = lins_[0].weight_param().grad, g.b2 = lins_[0].bias_param()->grad, g.act2 = act_weight_[1]->grad;
      const float* dyp = dy.data;
      if (dy.stride != d) {  // e.g. a column block of MultiDin's gradient: make it dense
        MatrixView<T> dense = ensure(ws.da, B, d);
        for (Index b = 0; b < B; ++b) std::copy(dy.row(b), dy.row(b) + d, dense.row(b));
        dyp = dense.data;
      }
      kernels::din_attention_kernels().f32_din_attention_backward(
          ws.kargs, ws.kweights, ws.query.data, ws.keys.data, w.start.data(), w.count.data(), ws.weights.data(),
          ws.ksaved.data(), dyp, dq.data, dk.data, g, ws.kscratch.data());
      if (!need_dx) return {};
      return {dq, dk};
    }
  }
  const MatrixView<const T> keys = ws.keys, query = ws.query;
  const MatrixView<const T> a = ws.weights.matrix();
  MatrixView<T> ds = ensure(ws.dscore, N, 1);
  for (Index b = 0; b < B; ++b) {
    const Index n = w.count[b];
    if (n == 0) continue;
    const T scale = opt_.normalize_by_length ? T(1) / T(n) : T(1);
    const T* g = dy.row(b);
    const T* ab = a.row(b) + w.start[b];
    T* dsb = ds.data + ws.offset[b];
    T dot = 0;
    for (Index j = 0; j < n; ++j) {
      const T* k = keys.row(w.row(b, j));
      T* gk = dk.row(w.row(b, j));
      T da = 0;
      for (Index c = 0; c < d; ++c) {
        da += g[c] * k[c];
        gk[c] += ab[j] * scale * g[c];
      }
      dsb[j] = da * scale;
      dot += ab[j] * dsb[j];
    }
    if (opt_.softmax)
      for (Index j = 0; j < n; ++j) dsb[j] = ab[j] * (dsb[j] - dot);
  }
  MatrixView<const T> g = ds;
  for (std::size_t i = lins_.size(); i-- > 0;) {
    g = lins_[i].backward(g, ws.lins[i]);
    g = acts_[i].backward(g, ws.acts[i]);
  }
  const MatrixView<const T> dH1 = g;  // [N, h1]: gradient of the first layer's pre-activation
  const MatrixView<const T> W1 = lin0_.weight();
  if (opt_.fused) {
    MatrixView<T> dW1(lin0_.weight_param().grad, h1, 4 * d);
    T* db1 = lin0_.bias_param()->grad;
    MatrixView<T> dC = ensure(ws.dc, B, h1);
    MatrixView<T> dM = ensure(ws.dmat, h1, d);
    MatrixView<T> dbm = ensure(ws.dbm, h1, d);
    MatrixView<T> dwp = ensure(ws.dwp, h1, d);
    ws.dc.zero();
    ws.dbm.zero();
    ws.dwp.zero();
    const MatrixView<const T> mats = ws.mats.matrix();
    for (Index b = 0; b < B; ++b) {
      const Index n = w.count[b];
      if (n == 0) continue;
      const MatrixView<const T> dHb = dH1.row_block(ws.offset[b], n);
      const MatrixView<const T> Kb = keys.row_block(w.row(b, 0), n);
      T* dcb = dC.row(b);
      for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < h1; ++i) dcb[i] += dHb(j, i);
      kernels::matmul<T>(dHb, true, Kb, false, dM);                                   // dM = dH^T K
      kernels::matmul<T>(dHb, false, mats.row_block(b * h1, h1), false, dk.row_block(w.row(b, 0), n), T(1),
                         T(1));                                                       // dK += dH M
      const T* q = query.row(b);
      T* gq = dq.row(b);
      for (Index i = 0; i < h1; ++i) {
        const T* m = dM.row(i);
        const T* wp = W1.row(i) + 3 * d;
        T* gb = dbm.row(i);
        T* gp = dwp.row(i);
        for (Index c = 0; c < d; ++c) {
          gb[c] += m[c];
          gp[c] += m[c] * q[c];
          gq[c] += m[c] * wp[c];
        }
      }
    }
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < h1; ++i) db1[i] += dC(b, i);
    // c_b = A q_b + b1 with A = Wq + Wd: dA = dC^T Q; dq += dC A.
    MatrixView<T> dA = ensure(ws.dmat, h1, d);
    kernels::matmul<T>(MatrixView<const T>(dC), true, query, false, dA);
    kernels::matmul<T>(MatrixView<const T>(dC), false, MatrixView<const T>(ws.qa.matrix().row_block(0, h1)), false, dq,
                       T(1), T(1));
    for (Index i = 0; i < h1; ++i) {
      T* gw = dW1.row(i);
      for (Index c = 0; c < d; ++c) {
        gw[c] += dA(i, c);                       // Wq
        gw[d + c] += dbm(i, c);                  // Wk
        gw[2 * d + c] += dA(i, c) - dbm(i, c);   // Wd
        gw[3 * d + c] += dwp(i, c);              // Wp
      }
    }
  } else {
    const MatrixView<const T> d4 = lin0_.backward(dH1, ws.lin0, true);
    for (Index b = 0; b < B; ++b) {
      const T* q = query.row(b);
      T* gq = dq.row(b);
      for (Index j = 0; j < w.count[b]; ++j) {
        const T* k = keys.row(w.row(b, j));
        T* gk = dk.row(w.row(b, j));
        const T* x = d4.row(ws.offset[b] + j);
        for (Index c = 0; c < d; ++c) {
          gq[c] += x[c] + x[2 * d + c] + x[3 * d + c] * k[c];
          gk[c] += x[d + c] - x[2 * d + c] + x[3 * d + c] * q[c];
        }
      }
    }
  }
  if (!need_dx) return {};
  return {dq, dk};
}

template class DinAttention<float>;
template class DinAttention<double>;

}  // namespace mtrank::blocks
