// Multi-head attention (PyTorch nn.MultiheadAttention, batch_first = true, kdim = vdim =
// embed_dim) and target attention (one candidate query over a behaviour sequence).
//
// Inputs follow the padded sequence layout of mtrank/nn/sequence.hpp: a query batch
// [B*Lq, d] and a memory batch [B*Lk, d] (keys = values = memory), each with per-sample
// windows. For sample b, head h (head width dh = d / num_heads, columns [h*dh, (h+1)*dh)):
//   Q = query Wq^T + bq, K = memory Wk^T + bk, V = memory Wv^T + bv
//   P = softmax_j(Q_h K_h^T / sqrt(dh)) over the memory's valid positions j (key padding mask)
//   C_h = P V_h;  out = [C_0 .. C_{H-1}] Wo^T + bo
// with [Wq; Wk; Wv] = in_proj_weight [3d, d], [bq; bk; bv] = in_proj_bias [3d],
// Wo = out_proj.weight [d, d], bo = out_proj.bias [d] (PyTorch's names).
// Output rows of invalid query positions are zero. A valid query whose memory window is
// empty attends to nothing: C = 0, out = bo (PyTorch would return NaN there).
// Deviation: no dropout on the attention probabilities (PyTorch's `dropout` argument).
#pragma once
#include <string>
#include <string_view>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/nn/sequence.hpp"

namespace mtrank::nn {

struct MultiHeadAttentionOptions {
  Index embed_dim = 0;
  Index num_heads = 1;
  bool bias = true;
};

template <class T = float>
class MultiHeadAttention {
 public:
  using Scalar = T;
  struct Workspace {
    MatrixView<const T> query, memory;
    const SeqWindows* qw = nullptr;
    const SeqWindows* kw = nullptr;
    SeqWindows qwin, kwin;  // used by forward(lengths...)
    TensorT<T> q, kv, probs, ctx, out;          // probs [B, H, Lq, Lk]
    TensorT<T> dout, dctx, dq, dkv, dp, dquery, dmemory;
  };
  struct Grads {
    MatrixView<const T> query, memory;
  };

  MultiHeadAttention() = default;
  MultiHeadAttention(ParameterArenaT<T>& arena, std::string_view prefix, MultiHeadAttentionOptions opt);

  /// query [B*Lq, d] with query_lengths; memory [B*Lk, d] with memory_lengths.
  MatrixView<const T> forward(MatrixView<const T> query, Lengths query_lengths, MatrixView<const T> memory,
                              Lengths memory_lengths, Workspace& ws, const Context& ctx = {}) const;
  /// Same with precomputed windows (must outlive backward()).
  MatrixView<const T> forward(MatrixView<const T> query, const SeqWindows& qw, MatrixView<const T> memory,
                              const SeqWindows& kw, Workspace& ws, const Context& ctx = {}) const;
  /// Accumulates parameter gradients; returns d query and d memory (zero at invalid rows).
  /// For self-attention (query == memory) the input gradient is their sum.
  Grads backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;

  Index embed_dim() const { return opt_.embed_dim; }
  Index num_heads() const { return opt_.num_heads; }
  /// Attention probabilities of the last forward: row (b*H + h)*Lq + i, columns j < count.
  MatrixView<const T> probabilities(const Workspace& ws) const { return ws.probs.matrix(); }

 private:
  MultiHeadAttentionOptions opt_;
  std::string name_;
  // "<name> query" / " memory" / " backward dy" for error messages, built once (forward allocates nothing).
  std::string query_what_, memory_what_, dy_what_;
  Parameter<T>* in_w_ = nullptr;
  Parameter<T>* in_b_ = nullptr;
  Parameter<T>* out_w_ = nullptr;
  Parameter<T>* out_b_ = nullptr;
};

struct TargetAttentionOptions {
  Index embed_dim = 0;
  Index num_heads = 1;
  Index max_len = 0;  // 0 = unlimited; see sequence.hpp for the policy
  Overflow overflow = Overflow::truncate;
};

/// Target attention: the candidate [B, d] is the single query over the sequence [B*L, d]
/// (multi-head, key padding mask) -> [B, d]. An empty sequence gives a zero row. Parameters
/// are those of one nn.MultiheadAttention under the prefix (prefix.in_proj_weight, ...).
template <class T = float>
class TargetAttention {
 public:
  using Scalar = T;
  struct Workspace {
    SeqWindows qw, kw;
    typename MultiHeadAttention<T>::Workspace mha;
  };
  struct Grads {
    MatrixView<const T> candidate, sequence;
  };
  TargetAttention() = default;
  TargetAttention(ParameterArenaT<T>& arena, std::string_view prefix, TargetAttentionOptions opt)
      : opt_(opt), mha_(arena, prefix, {.embed_dim = opt.embed_dim, .num_heads = opt.num_heads}) {}

  MatrixView<const T> forward(MatrixView<const T> candidate, MatrixView<const T> sequence, Lengths lengths,
                              Workspace& ws, const Context& ctx = {}) const {
    require_shape(candidate, static_cast<Index>(lengths.size()), opt_.embed_dim, "TargetAttention candidate");
    make_windows(lengths, candidate.rows, sequence.rows, opt_.max_len, opt_.overflow, "TargetAttention sequence",
                 ws.kw);
    ws.qw.set_single(ws.kw);
    return mha_.forward(candidate, ws.qw, sequence, ws.kw, ws.mha, ctx);
  }
  /// Same over precomputed windows, e.g. TransformerEncoder::windows() after truncation.
  MatrixView<const T> forward(MatrixView<const T> candidate, MatrixView<const T> sequence, const SeqWindows& w,
                              Workspace& ws, const Context& ctx = {}) const {
    require_shape(candidate, w.batch, opt_.embed_dim, "TargetAttention candidate");
    ws.kw = w;
    ws.qw.set_single(ws.kw);
    return mha_.forward(candidate, ws.qw, sequence, ws.kw, ws.mha, ctx);
  }
  Grads backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const {
    auto g = mha_.backward(dy, ws.mha, need_dx);
    return {g.query, g.memory};
  }
  const MultiHeadAttention<T>& attention() const { return mha_; }

 private:
  TargetAttentionOptions opt_;
  MultiHeadAttention<T> mha_;
};

extern template class MultiHeadAttention<float>;
extern template class MultiHeadAttention<double>;

}  // namespace mtrank::nn
