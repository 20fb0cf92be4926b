// Turns a Batch into the dense input of a network:
//   x = [emb(sparse_0); ...; emb(sparse_n); pool(seq_0); ...; pool(seq_m); dense]
// Each sparse field has a table "embeddings.<field>.weight" [vocab, dim] (sparse-row
// gradients). A sequence field uses its own table or, with `table`, the table of a sparse field
// (e.g. click_seq shares item_id's), and is pooled by mean or sum over its most recent max_len
// ids (an empty sequence pools to zeros). Ids are hashed or range-checked per the schema; NaN/Inf
// dense values are rejected with an error naming the field and row.
// With `dot_interactions` (DLRM, Naumov et al. 2019), the pairwise inner products of all
// embedding vectors (sparse fields and pooled sequences) are appended after the dense block:
// an MLP on concatenated embeddings learns inner products poorly, and user x item affinity is
// exactly such a product.
#pragma once
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/data/batch.hpp"
#include "mtrank/models/co_action_features.hpp"
#include "mtrank/kernels/embedding_bag.hpp"

namespace mtrank::models {

enum class SequencePooling { mean, sum };

/// Serving hook: which fields forward_fields() fills. An empty vector selects every field of that kind.
struct FieldSelection {
  std::vector<bool> sparse, dense, sequences;
};

struct FeatureEmbedderOptions {
  SequencePooling sequence_pooling = SequencePooling::mean;
  Init embedding_init = Init::embedding_default();
  bool dot_interactions = false;
  /// Co-action features (co_action_features.hpp), appended after everything else; off when
  /// co_action.item_field is empty.
  CoActionFeatureOptions co_action;
  /// Sequence fields whose tables are created but which are not pooled into x (no columns): a
  /// model that runs its own sequence encoder (DIN, DMT, SIM; models/interest_model.hpp) reads
  /// their tables through sequence_table() / sequence_row_of().
  std::vector<std::string> external_sequences;
};

template <class T = float>
class FeatureEmbedder {
 public:
  using Scalar = T;
  struct Workspace {
    TensorT<T> x, dx;                      // [B, out_features]
    std::vector<std::vector<Index>> rows;  // per sparse field: table row per sample
    std::vector<std::vector<Index>> seq_rows, seq_offsets;  // per sequence field (truncated)
    typename CoActionFeatures<T>::Workspace co_action;
    std::vector<Index> unit_offsets;                        // 0..B: one id per sample
    std::vector<T*> grad_rows;                              // scratch for sparse backward
  };

  FeatureEmbedder() = default;
  FeatureEmbedder(ParameterArenaT<T>& arena, std::string_view prefix, const data::FeatureSchema& schema,
                  FeatureEmbedderOptions opt = {});

  MatrixView<const T> forward(const data::Batch& batch, Workspace& ws, const Context& ctx = {}) const;
  /// Serving hook (request scoring): fills only the columns of the selected fields in x [B,
  /// out_features] (caller memory), leaving the other columns as they are, and computes no dot
  /// interactions. Unselected fields of `batch` are not read (their values may be anything).
  void forward_fields(const data::Batch& batch, const FieldSelection& sel, MatrixView<T> x, Workspace& ws) const;
  /// Serving hook: recomputes the dot-interaction columns of x from its embedding columns (no-op without them).
  void fill_interactions(MatrixView<T> x) const;
  bool has_interactions() const { return opt_.dot_interactions; }
  /// Co-action columns [co_action_offset(), out_features()) need the item and the user side of a
  /// row together: forward() fills them, forward_fields() does not.
  bool has_co_action() const { return opt_.co_action.enabled(); }
  Index co_action_offset() const { return co_offset_; }
  const data::FeatureSchema& schema() const { return schema_; }

  /// Whether backward() uses dx: false when x holds only dense inputs (no tables, no co-action),
  /// so a network below may skip computing its input gradient, as autograd does for inputs
  /// that do not require grad.
  bool needs_input_grad() const {
    if (has_co_action() || !tables_.empty()) return true;
    for (std::size_t q = 0; q < seq_tables_.size(); ++q)
      if (!seq_external_[q]) return true;
    return false;
  }
  /// Leading columns of x whose gradient backward() reads: 0 without trainable inputs; the
  /// embedding columns when the dense block ends x (a network may skip the dense columns'
  /// gradient, see nn::Linear::limit_input_grad); every column otherwise.
  Index input_grad_columns() const {
    if (!needs_input_grad()) return 0;
    return inter_offset_ == width_ ? dense_offset_ : width_;
  }
  /// Scatters dx [B, out_features] into the tables' sparse row gradients (dense inputs get none).
  void backward(MatrixView<const T> dx, Workspace& ws) const;

  Index out_features() const { return width_; }
  /// Column offset and width of sparse field i / sequence field j / the dense block in x.
  Index sparse_offset(std::size_t i) const { return sparse_offset_[i]; }
  Index sequence_offset(std::size_t j) const { return seq_offset_[j]; }  // -1 for an external sequence
  /// External sequences (FeatureEmbedderOptions::external_sequences): table, width and id -> row.
  bool sequence_external(std::size_t j) const { return seq_external_[j]; }
  Parameter<T>& sequence_table(std::size_t j) const { return *seq_tables_[j]; }
  Index sequence_dim(std::size_t j) const { return seq_dim_[j]; }
  Index sequence_row_of(std::size_t j, std::int64_t id) const;
  Index dense_offset() const { return dense_offset_; }
  /// Table row of a raw id for sparse field i (hash or range check; throws naming the field).
  Index row_of(std::size_t field, std::int64_t id) const;
  kernels::PoolingMode pooling() const {
    return opt_.sequence_pooling == SequencePooling::mean ? kernels::PoolingMode::mean : kernels::PoolingMode::sum;
  }
  /// Offsets 0, 1, ..., B: every sample's bag is its one id.
  static const Index* unit_offsets(Workspace& ws, Index B) {
    if (static_cast<Index>(ws.unit_offsets.size()) != B + 1) {
      ws.unit_offsets.resize(static_cast<std::size_t>(B + 1));
      std::iota(ws.unit_offsets.begin(), ws.unit_offsets.end(), Index{0});
    }
    return ws.unit_offsets.data();
  }
  const Parameter<T>& table(std::size_t sparse_field) const { return *tables_[sparse_field]; }

 private:
  data::FeatureSchema schema_;
  FeatureEmbedderOptions opt_;
  std::vector<Parameter<T>*> tables_;      // per sparse field
  std::vector<Parameter<T>*> seq_tables_;  // per sequence field
  std::vector<Index> sparse_offset_, seq_offset_, seq_dim_;
  std::vector<bool> seq_hash_, seq_external_;
  std::vector<std::pair<Index, Index>> vec_;  // (offset, width) of every embedding vector in x
  Index inter_offset_ = 0;
  std::vector<Index> seq_vocab_, seq_oov_;
  Index dense_offset_ = 0, width_ = 0;
  CoActionFeatures<T> co_action_;
  Index co_offset_ = 0;
};

extern template class FeatureEmbedder<float>;
extern template class FeatureEmbedder<double>;

}  // namespace mtrank::models
