#include "mtrank/models/feature_embedder.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string_view>
#include <type_traits>
#include <unordered_map>

#include "mtrank/kernels/embedding_bag.hpp"
#include "mtrank/nn/embedding.hpp"

namespace mtrank::models {

template <class T>
FeatureEmbedder<T>::FeatureEmbedder(ParameterArenaT<T>& arena, std::string_view prefix,
                                    const data::FeatureSchema& schema, FeatureEmbedderOptions opt)
    : schema_(schema), opt_(opt) {
  schema_.validate();
  Index col = 0;
  for (const auto& f : schema_.sparse) {
    tables_.push_back(&arena.add(join_name(prefix, "embeddings." + f.name + ".weight"), Shape{f.vocab, f.dim},
                                 {.init = opt.embedding_init, .sparse = true}));
    sparse_offset_.push_back(col);
    col += f.dim;
  }
  for (const auto& name : opt_.external_sequences) {
    bool found = false;
    for (const auto& s : schema_.sequences) found = found || s.name == name;
    if (!found) fail("feature embedder: external sequence '", name, "' is not a sequence field of the schema");
  }
  // Table name -> sparse field once (sparse_index per sequence was quadratic in the number of fields).
  std::unordered_map<std::string_view, std::size_t> sparse_at;
  for (std::size_t i = 0; i < schema_.sparse.size(); ++i) sparse_at.emplace(schema_.sparse[i].name, i);
  for (const auto& s : schema_.sequences) {
    seq_external_.push_back(std::find(opt_.external_sequences.begin(), opt_.external_sequences.end(), s.name) !=
                            opt_.external_sequences.end());
    if (!s.table.empty()) {
      const std::size_t t = sparse_at.find(s.table)->second;  // validate() checked that it exists
      seq_tables_.push_back(tables_[static_cast<std::size_t>(t)]);
      seq_dim_.push_back(schema_.sparse[static_cast<std::size_t>(t)].dim);
      seq_hash_.push_back(schema_.sparse[static_cast<std::size_t>(t)].hash);
      seq_vocab_.push_back(schema_.sparse[static_cast<std::size_t>(t)].vocab);
      seq_oov_.push_back(schema_.sparse[static_cast<std::size_t>(t)].oov_row);
    } else {
      seq_tables_.push_back(&arena.add(join_name(prefix, "embeddings." + s.name + ".weight"), Shape{s.vocab, s.dim},
                                       {.init = opt.embedding_init, .sparse = true}));
      seq_dim_.push_back(s.dim);
      seq_hash_.push_back(s.hash);
      seq_vocab_.push_back(s.vocab);
      seq_oov_.push_back(s.oov_row);
    }
    if (seq_external_.back()) {
      seq_offset_.push_back(-1);
      continue;
    }
    seq_offset_.push_back(col);
    col += seq_dim_.back();
  }
  dense_offset_ = col;
  inter_offset_ = col + static_cast<Index>(schema_.dense.size());
  width_ = inter_offset_;
  if (opt_.dot_interactions) {
    for (std::size_t i = 0; i < schema_.sparse.size(); ++i) vec_.push_back({sparse_offset_[i], schema_.sparse[i].dim});
    for (std::size_t j = 0; j < schema_.sequences.size(); ++j)
      if (!seq_external_[j]) vec_.push_back({seq_offset_[j], seq_dim_[j]});
    // Inner products need equal widths; pairs of different widths are skipped.
    for (std::size_t a = 0; a < vec_.size(); ++a)
      for (std::size_t b = a + 1; b < vec_.size(); ++b)
        if (vec_[a].second == vec_[b].second) ++width_;
  }
  co_offset_ = width_;
  if (opt_.co_action.enabled()) {
    co_action_ = CoActionFeatures<T>(arena, prefix, schema_, opt_.co_action);
    width_ += co_action_.out_features();
  }
}

namespace {
// Pooled lookup through the embedding-bag kernel family (float) or its reference (double).
template <class T>
void bag_forward(Index batch, Index dim, const T* table, const Index* rows, const Index* offsets,
                 kernels::PoolingMode mode, T* out, Index ld_out) {
  if constexpr (std::is_same_v<T, float>)
    kernels::embedding_bag_kernels().f32_embedding_bag(batch, dim, table, rows, offsets, nullptr, mode, out, ld_out);
  else
    kernels::embedding_bag_ref<T>(batch, dim, table, rows, offsets, nullptr, mode, out, ld_out);
}
template <class T>
void bag_backward(Index batch, Index dim, const T* dout, Index ld, const Index* rows, const Index* offsets,
                  kernels::PoolingMode mode, SparseRowGrad<T>& grad, std::vector<T*>& scratch) {
  const kernels::EmbeddingBagKernels* k = nullptr;
  if constexpr (std::is_same_v<T, float>) k = &kernels::embedding_bag_kernels();
  kernels::embedding_bag_backward_sparse<T>(batch, dim, dout, ld, rows, offsets, nullptr, mode, grad, scratch, k);
}
}  // namespace

template <class T>
Index FeatureEmbedder<T>::row_of(std::size_t field, std::int64_t id) const {
  const auto& f = schema_.sparse[field];
  return nn::map_embedding_id(id, f.vocab, f.hash, f.name, "embedding", f.oov_row);
}

template <class T>
Index FeatureEmbedder<T>::sequence_row_of(std::size_t j, std::int64_t id) const {
  return nn::map_embedding_id(id, seq_vocab_[j], seq_hash_[j], schema_.sequences[j].name, "sequence", seq_oov_[j]);
}

template <class T>
MatrixView<const T> FeatureEmbedder<T>::forward(const data::Batch& batch, Workspace& ws, const Context&) const {
  MatrixView<T> x = ensure(ws.x, batch.size, width_);
  forward_fields(batch, FieldSelection{}, x, ws);
  fill_interactions(x);
  if (has_co_action()) co_action_.forward(batch, x.col_block(co_offset_, width_ - co_offset_), ws.co_action);
  return x;
}

template <class T>
void FeatureEmbedder<T>::forward_fields(const data::Batch& batch, const FieldSelection& sel, MatrixView<T> x,
                                        Workspace& ws) const {
  const Index B = batch.size;
  const Index ns = static_cast<Index>(schema_.sparse.size());
  const Index nd = static_cast<Index>(schema_.dense.size());
  require(static_cast<Index>(batch.sparse.size()) == B * ns, "batch: ", batch.sparse.size(), " sparse ids, expected ",
          B, " x ", ns, " fields");
  require(batch.dense.numel() == B * nd, "batch: ", batch.dense.numel(), " dense values, expected ", B, " x ", nd, " fields");
  require(batch.sequences.size() == schema_.sequences.size(), "batch: ", batch.sequences.size(),
          " sequence fields, expected ", schema_.sequences.size());
  require_shape(x, B, width_, "feature embedder output");
  if (B == 0) return;  // an empty batch (e.g. a request with no candidates) has nothing to fill
  auto selected = [](const std::vector<bool>& v, std::size_t i) { return v.empty() || v[i]; };
  ws.rows.resize(static_cast<std::size_t>(ns));
  for (Index f = 0; f < ns; ++f) {
    if (!selected(sel.sparse, static_cast<std::size_t>(f))) continue;
    auto& rows = ws.rows[f];
    rows.resize(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) rows[b] = row_of(static_cast<std::size_t>(f), batch.sparse[b * ns + f]);
    bag_forward<T>(B, schema_.sparse[f].dim, tables_[f]->value, rows.data(), unit_offsets(ws, B),
                   kernels::PoolingMode::sum, x.data + sparse_offset_[f], x.stride);
  }
  ws.seq_rows.resize(schema_.sequences.size());
  ws.seq_offsets.resize(schema_.sequences.size());
  for (std::size_t q = 0; q < schema_.sequences.size(); ++q) {
    if (!selected(sel.sequences, q) || seq_external_[q]) continue;
    const auto& spec = schema_.sequences[q];
    const auto& col = batch.sequences[q];
    require(static_cast<Index>(col.offsets.size()) == B + 1, "sequence '", spec.name, "': offsets has ",
            col.offsets.size(), " entries, expected batch size + 1 = ", B + 1);
    auto& rows = ws.seq_rows[q];
    auto& offs = ws.seq_offsets[q];
    rows.clear();
    offs.assign(1, 0);
    for (Index b = 0; b < B; ++b) {
      const std::int64_t a = col.offsets[b], e = col.offsets[b + 1];
      if (a < 0 || e < a || e > static_cast<std::int64_t>(col.ids.size()))
        fail("sequence '", spec.name, "': offsets [", a, ", ", e, ") of sample ", b, " invalid for ", col.ids.size(), " ids");
      const std::int64_t start = std::max(a, e - spec.max_len);  // keep the most recent max_len
      for (std::int64_t j = start; j < e; ++j) {
        rows.push_back(sequence_row_of(q, col.ids[static_cast<std::size_t>(j)]));
      }
      offs.push_back(static_cast<Index>(rows.size()));
    }
    bag_forward<T>(B, seq_dim_[q], seq_tables_[q]->value, rows.data(), offs.data(), pooling(), x.data + seq_offset_[q],
                   x.stride);
  }
  // Row by row (both sides are row-major); the finiteness test is a branch-free OR over the
  // row, and only a failing row is rescanned to name the field.
  const bool all_dense = sel.dense.empty();
  for (Index b = 0; b < B && nd > 0; ++b) {
    const float* src = batch.dense.data() + b * nd;
    T* dst = x.row(b) + dense_offset_;
    unsigned bad = 0;
    if (all_dense) {  // the common case, kept free of the selection test so that it vectorises
      for (Index j = 0; j < nd; ++j) {
        const float v = src[j];
        bad |= unsigned(!(std::abs(v) <= std::numeric_limits<float>::max()));
        dst[j] = T(v);
      }
    } else {
      for (Index j = 0; j < nd; ++j) {
        bad |= unsigned(!(std::abs(src[j]) <= std::numeric_limits<float>::max()));
        if (sel.dense[static_cast<std::size_t>(j)]) dst[j] = T(src[j]);
      }
    }
    if (bad)
      for (Index j = 0; j < nd; ++j)
        if (!std::isfinite(src[j]) && (all_dense || sel.dense[static_cast<std::size_t>(j)]))
          fail("dense feature '", schema_.dense[j].name, "': value ", src[j], " in row ", b, " is not finite");
  }
}

template <class T>
void FeatureEmbedder<T>::fill_interactions(MatrixView<T> x) const {
  if (!opt_.dot_interactions) return;
  for (Index b = 0; b < x.rows; ++b) {
    T* xr = x.row(b);
    Index c = inter_offset_;
    for (std::size_t i = 0; i < vec_.size(); ++i)
      for (std::size_t j = i + 1; j < vec_.size(); ++j) {
        if (vec_[i].second != vec_[j].second) continue;
        T dot = 0;
        for (Index k = 0; k < vec_[i].second; ++k) dot += xr[vec_[i].first + k] * xr[vec_[j].first + k];
        xr[c++] = dot;
      }
  }
}

template <class T>
void FeatureEmbedder<T>::backward(MatrixView<const T> dx, Workspace& ws) const {
  const Index B = dx.rows;
  require_shape(dx, ws.x.dim(0), width_, "feature embedder backward dx");
  if (B == 0) return;
  if (has_co_action()) co_action_.backward(dx.col_block(co_offset_, width_ - co_offset_), ws.co_action);
  MatrixView<const T> g_in = dx;
  if (opt_.dot_interactions) {
    // d(x_i . x_j) flows back into both vectors; fold it into a copy of dx.
    MatrixView<T> g = ensure(ws.dx, B, width_);
    copy(dx, g);
    const MatrixView<const T> x = ws.x.matrix();
    for (Index b = 0; b < B; ++b) {
      Index c = inter_offset_;
      for (std::size_t i = 0; i < vec_.size(); ++i)
        for (std::size_t j = i + 1; j < vec_.size(); ++j) {
          if (vec_[i].second != vec_[j].second) continue;
          const T d = dx(b, c++);
          for (Index k = 0; k < vec_[i].second; ++k) {
            g(b, vec_[i].first + k) += d * x(b, vec_[j].first + k);
            g(b, vec_[j].first + k) += d * x(b, vec_[i].first + k);
          }
        }
    }
    g_in = g;
  }
  for (std::size_t f = 0; f < tables_.size(); ++f)
    bag_backward<T>(B, schema_.sparse[f].dim, g_in.data + sparse_offset_[f], g_in.stride, ws.rows[f].data(),
                    unit_offsets(ws, B), kernels::PoolingMode::sum, tables_[f]->sparse_grad, ws.grad_rows);
  for (std::size_t q = 0; q < seq_tables_.size(); ++q)
    if (!seq_external_[q])
      bag_backward<T>(B, seq_dim_[q], g_in.data + seq_offset_[q], g_in.stride, ws.seq_rows[q].data(),
                    ws.seq_offsets[q].data(), pooling(), seq_tables_[q]->sparse_grad, ws.grad_rows);
}

template class FeatureEmbedder<float>;
template class FeatureEmbedder<double>;

}  // namespace mtrank::models
