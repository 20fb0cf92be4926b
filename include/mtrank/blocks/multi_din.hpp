// Multi-DIN (seed): several behaviour sequences (e.g. click, long-dwell, interaction), each
// pooled by its own DinAttention with the candidate's concatenated embeddings (id, tag,
// author, ...) as the query; the pooled vectors are concatenated in sequence order:
//   y = [DIN_click(q, K_click); DIN_dwell(q, K_dwell); ...]      [B, S*d]
// Every sequence's behaviours use the same d as the query (DIN needs q - k). Parameters of
// sequence s live under "<prefix>.<name_s>." (e.g. "multi_din.click.layers.0.weight").
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/din.hpp"

namespace mtrank::blocks {

struct MultiDinSequence {
  std::string name;
  DinAttentionOptions din;  // din.dim may be 0 (then MultiDinOptions::dim is used)
};

struct MultiDinOptions {
  Index dim = 0;
  std::vector<MultiDinSequence> sequences;
};

/// One behaviour sequence of a batch, in the padded layout of mtrank/nn/sequence.hpp.
template <class T>
struct SequenceInput {
  MatrixView<const T> values;  // [B*L_s, d]
  nn::Lengths lengths;         // [B]
};

template <class T = float>
class MultiDin {
 public:
  using Scalar = T;
  struct Workspace {
    std::vector<typename DinAttention<T>::Workspace> units;
    TensorT<T> y, dq;
  };
  struct Grads {
    MatrixView<const T> query;
    std::vector<MatrixView<const T>> sequences;  // d values of each sequence
  };

  MultiDin() = default;
  MultiDin(ParameterArenaT<T>& arena, std::string_view prefix, MultiDinOptions opt);

  /// query [B, d]; one SequenceInput per configured sequence, in order -> [B, S*d].
  MatrixView<const T> forward(MatrixView<const T> query, const std::vector<SequenceInput<T>>& sequences,
                              Workspace& ws, const Context& ctx = {}) const;
  Grads backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  Index out_features() const { return opt_.dim * static_cast<Index>(units_.size()); }
  std::size_t num_sequences() const { return units_.size(); }
  const DinAttention<T>& unit(std::size_t s) const { return units_[s]; }

 private:
  MultiDinOptions opt_;
  std::string name_;
  std::vector<DinAttention<T>> units_;
};

extern template class MultiDin<float>;
extern template class MultiDin<double>;

}  // namespace mtrank::blocks
