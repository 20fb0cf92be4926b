// Transformer encoder for behaviour sequences (DMT) -- PyTorch semantics.
//
// TransformerEncoderLayer (nn.TransformerEncoderLayer, batch_first = true, norm_first = false):
//   x1 = LN1(x + Dropout1(SelfAttn(x)))          self-attention with key padding mask
//   y  = LN2(x1 + Dropout2(linear2(Dropout(act(linear1(x1))))))
// Parameter names: self_attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias},
// linear1.{weight,bias} [ff, d], linear2.{weight,bias} [d, ff], norm1.*, norm2.*.
// Output rows at padding positions are zero (PyTorch computes values there that nothing
// should read; we zero them so stacked layers and poolers can never pick them up).
//
// TransformerEncoder: optional input embeddings added to the sequence, then num_layers layers
// (names layers.{i}.*, as nn.TransformerEncoder):
//   PositionKind::learned   x_t += position_embedding.weight[t - start]   ([max_len, d])
//   PositionKind::time_gap  x_t += time_embedding.weight[bucket(gap_t)]   ([num_buckets, d])
// bucket(gap) = 0 for gap 0, else min(num_buckets - 1, 1 + floor(log_base gap)) (sequence.hpp).
// Sequences longer than max_len keep their most recent max_len items (Overflow::truncate) or
// are rejected (Overflow::reject). Embedding tables have sparse row gradients.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/nn/activation.hpp"
#include "mtrank/nn/attention.hpp"
#include "mtrank/nn/dropout.hpp"
#include "mtrank/nn/layer_norm.hpp"
#include "mtrank/nn/linear.hpp"
#include "mtrank/nn/sequence.hpp"

namespace mtrank::nn {

struct TransformerEncoderLayerOptions {
  Index d_model = 0;
  Index nhead = 1;
  Index dim_feedforward = 2048;  // PyTorch default
  double dropout = 0.1;          // PyTorch default; active only when training
  ActivationKind activation = ActivationKind::relu;
  double layer_norm_eps = 1e-5;
};

template <class T = float>
class TransformerEncoderLayer {
 public:
  using Scalar = T;
  struct Workspace {
    const SeqWindows* win = nullptr;
    typename MultiHeadAttention<T>::Workspace attn;
    typename Dropout<T>::Workspace drop1, drop2, drop_ff;
    typename LayerNorm<T>::Workspace norm1, norm2;
    typename Linear<T>::Workspace lin1, lin2;
    typename Activation<T>::Workspace act;
    TensorT<T> s1, s2, y, dy, dh1, dx;
  };
  TransformerEncoderLayer() = default;
  TransformerEncoderLayer(ParameterArenaT<T>& arena, std::string_view prefix, TransformerEncoderLayerOptions opt);

  /// x [B*L, d] with windows w (must outlive backward); returns [B*L, d], zero outside windows.
  MatrixView<const T> forward(MatrixView<const T> x, const SeqWindows& w, Workspace& ws,
                              const Context& ctx = {}) const;
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  Index d_model() const { return opt_.d_model; }

 private:
  TransformerEncoderLayerOptions opt_;
  MultiHeadAttention<T> attn_;
  Linear<T> lin1_, lin2_;
  LayerNorm<T> norm1_, norm2_;
  Activation<T> act_;
  Dropout<T> drop_, drop1_, drop2_;
};

enum class PositionKind { none, learned, time_gap };

struct TransformerEncoderOptions {
  TransformerEncoderLayerOptions layer;
  Index num_layers = 1;
  PositionKind position = PositionKind::learned;
  Index max_len = 0;        // required (> 0) for learned positions; 0 = unlimited otherwise
  Overflow overflow = Overflow::truncate;
  Index time_buckets = 32;  // time_gap embeddings
  double time_base = 2.0;
  Init embedding_init = Init::embedding_default();
};

template <class T = float>
class TransformerEncoder {
 public:
  using Scalar = T;
  struct Workspace {
    SeqWindows win;
    std::vector<Index> buckets;
    TensorT<T> x0, dx;
    std::vector<typename TransformerEncoderLayer<T>::Workspace> layers;
  };
  TransformerEncoder() = default;
  TransformerEncoder(ParameterArenaT<T>& arena, std::string_view prefix, TransformerEncoderOptions opt);

  /// x [B*L, d]; `gaps` [B*L] (request time - behaviour time, >= 0) for PositionKind::time_gap.
  MatrixView<const T> forward(MatrixView<const T> x, Lengths lengths, Workspace& ws, const Context& ctx = {},
                              std::span<const std::int64_t> gaps = {}) const;
  /// Returns dx [B*L, d] (zero at padding and before a truncation window).
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  /// Windows of the last forward (after truncation): pass them to TargetAttention-like poolers.
  const SeqWindows& windows(const Workspace& ws) const { return ws.win; }
  Index d_model() const { return opt_.layer.d_model; }

 private:
  TransformerEncoderOptions opt_;
  std::string name_;
  std::string x_what_;  // "<name> x" for error messages, built once (forward allocates nothing)
  Parameter<T>* table_ = nullptr;
  std::vector<TransformerEncoderLayer<T>> layers_;
};

extern template class TransformerEncoderLayer<float>;
extern template class TransformerEncoderLayer<double>;
extern template class TransformerEncoder<float>;
extern template class TransformerEncoder<double>;

}  // namespace mtrank::nn
