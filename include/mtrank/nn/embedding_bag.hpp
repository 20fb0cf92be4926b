// Embedding bag (PyTorch nn.EmbeddingBag): pooled lookups of variable-length id lists.
//
//   y[b, :] = pool_{j in [offsets[b], offsets[b+1])} w_j * W[row(ids[j]), :]
//   pool = sum, or mean (divided by the bag's length; an empty bag gives zeros);
//   w_j = per_sample_weights[j] when given (allowed with both modes), else 1.
//
// offsets has B + 1 entries: offsets[0] == 0, non-decreasing, offsets[B] == ids.size() (the
// include_last_offset=True convention of PyTorch). Ids map to rows as in nn::Embedding (hash or
// range check, errors name the embedding). Parameter "<prefix>.weight" [rows, dim], sparse rows.
// backward accumulates into the sparse row gradient (rows of the batch only) and returns the
// gradient of the per-sample weights (empty when none were given).
#pragma once
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/nn/embedding.hpp"

namespace mtrank::nn {

struct EmbeddingBagOptions {
  Index rows = 0;
  Index dim = 0;
  bool hash = false;
  kernels::PoolingMode mode = kernels::PoolingMode::sum;
  Init init = Init::embedding_default();
  std::string name{};  // used in error messages; defaults to the prefix
};

template <class T = float>
class EmbeddingBag {
 public:
  using Scalar = T;
  struct Workspace {
    std::vector<Index> rows;     // table row of each id in the last forward
    std::vector<Index> offsets;  // copy of the offsets
    std::span<const T> weights;  // per-sample weights of the last forward (caller keeps them alive)
    TensorT<T> y;                // [B, dim]
    std::vector<T> dweights;     // gradient of the per-sample weights
    std::vector<T*> grad_rows;   // backward scratch
  };

  EmbeddingBag() = default;
  EmbeddingBag(ParameterArenaT<T>& arena, std::string_view prefix, EmbeddingBagOptions opt)
      : opt_(std::move(opt)), name_(detail::embedding_name(prefix, opt_.name)) {
    detail::check_embedding_options(name_, opt_.rows, opt_.dim);
    weight_ = &arena.add(join_name(prefix, "weight"), Shape{opt_.rows, opt_.dim}, {.init = opt_.init, .sparse = true});
  }

  /// [offsets.size() - 1, dim].
  MatrixView<const T> forward(std::span<const std::int64_t> ids, std::span<const Index> offsets, Workspace& ws,
                              std::span<const T> per_sample_weights = {}, const Context& = {}) const {
    if (offsets.empty()) fail("embedding bag '", name_, "': offsets must have batch + 1 entries, got none");
    const Index B = static_cast<Index>(offsets.size()) - 1;
    const Index n = static_cast<Index>(ids.size());
    if (offsets[0] != 0) fail("embedding bag '", name_, "': offsets[0] must be 0, got ", offsets[0]);
    for (Index b = 0; b < B; ++b)
      if (offsets[b + 1] < offsets[b])
        fail("embedding bag '", name_, "': offsets must be non-decreasing, offsets[", b + 1, "] = ", offsets[b + 1],
             " < offsets[", b, "] = ", offsets[b]);
    if (offsets[B] != n)
      fail("embedding bag '", name_, "': offsets[", B, "] must equal the number of ids ", n, ", got ", offsets[B]);
    if (!per_sample_weights.empty() && static_cast<Index>(per_sample_weights.size()) != n)
      fail("embedding bag '", name_, "': per_sample_weights has ", per_sample_weights.size(), " entries, expected ", n);
    map_embedding_ids(ids, opt_.rows, opt_.hash, name_, ws.rows);
    ws.offsets.assign(offsets.begin(), offsets.end());
    ws.weights = per_sample_weights;
    const T* w = per_sample_weights.empty() ? nullptr : per_sample_weights.data();
    MatrixView<T> y = ensure(ws.y, B, opt_.dim);
    if constexpr (std::is_same_v<T, float>)
      kernels::embedding_bag_kernels().f32_embedding_bag(B, opt_.dim, weight_->value, ws.rows.data(), ws.offsets.data(), w,
                                                         opt_.mode, y.data, y.stride);
    else
      kernels::embedding_bag_ref<T>(B, opt_.dim, weight_->value, ws.rows.data(), ws.offsets.data(), w, opt_.mode, y.data,
                                    y.stride);
    return y;
  }

  /// Accumulates the table gradient (sparse rows); returns d(per_sample_weights) (empty if none).
  std::span<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dweights = true) const {
    const Index B = static_cast<Index>(ws.offsets.size()) - 1;
    require_shape(dy, B, opt_.dim, "EmbeddingBag backward dy");
    const T* w = ws.weights.empty() ? nullptr : ws.weights.data();
    kernels::embedding_bag_backward_sparse<T>(B, opt_.dim, dy.data, dy.stride, ws.rows.data(), ws.offsets.data(), w,
                                              opt_.mode, weight_->sparse_grad, ws.grad_rows);
    if (!w || !need_dweights) return {};
    ws.dweights.resize(ws.weights.size());
    if constexpr (std::is_same_v<T, float>)
      kernels::embedding_bag_kernels().f32_embedding_bag_weight_grad(B, opt_.dim, dy.data, dy.stride, weight_->value,
                                                                     ws.rows.data(), ws.offsets.data(), opt_.mode,
                                                                     ws.dweights.data());
    else
      kernels::embedding_bag_weight_grad_ref<T>(B, opt_.dim, dy.data, dy.stride, weight_->value, ws.rows.data(),
                                                ws.offsets.data(), opt_.mode, ws.dweights.data());
    return ws.dweights;
  }

  Index row_of(std::int64_t id) const { return map_embedding_id(id, opt_.rows, opt_.hash, name_); }
  MatrixView<const T> weight() const { return {weight_->value, opt_.rows, opt_.dim}; }
  Parameter<T>& weight_param() const { return *weight_; }
  Index dim() const { return opt_.dim; }
  Index rows() const { return opt_.rows; }
  const EmbeddingBagOptions& options() const { return opt_; }

 private:
  EmbeddingBagOptions opt_;
  std::string name_;
  Parameter<T>* weight_ = nullptr;
};

extern template class EmbeddingBag<float>;
extern template class EmbeddingBag<double>;

}  // namespace mtrank::nn
