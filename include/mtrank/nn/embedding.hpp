// Embedding lookup: y[b, :] = W[row(ids[b]), :], W "<prefix>.weight" [rows, dim] with sparse
// row gradients (only the rows of the batch are touched by backward).
//
// Raw ids are int64. With hash = true, row = data::hash_id(id, rows) (splitmix64 % rows);
// otherwise 0 <= id < rows is required and a bad id throws mtrank::Error
//   "embedding 'item_id': id 1048577 >= rows 1048576"   /   "embedding 'item_id': id -3 < 0".
// float runs the embedding-bag kernel family (bags of one, with prefetch), double the reference.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/data/schema.hpp"
#include "mtrank/kernels/embedding_bag.hpp"

namespace mtrank::nn {

struct EmbeddingOptions {
  Index rows = 0;  // vocabulary size (table rows)
  Index dim = 0;   // embedding width
  bool hash = false;
  Init init = Init::embedding_default();  // N(0, 1e-4^2)
  std::string name{};                     // used in error messages; defaults to the prefix
};

/// The table row of a raw id under the schema's id rule (data::map_id_to_row): hashed into
/// [0, rows) when `hash`, else checked against [0, rows), ids outside going to oov_row when it is
/// >= 0. The error names the table: "<kind> '<name>': id <id> out of range [0, <rows>) ...".
inline Index map_embedding_id(std::int64_t id, Index rows, bool hash, std::string_view name,
                              std::string_view kind = "embedding", Index oov_row = -1) {
  return data::map_id_to_row(id, rows, hash, oov_row, name, kind);
}

inline void map_embedding_ids(std::span<const std::int64_t> ids, Index rows, bool hash, std::string_view name,
                              std::vector<Index>& out) {
  out.resize(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) out[i] = map_embedding_id(ids[i], rows, hash, name);
}

namespace detail {
inline std::string embedding_name(std::string_view prefix, const std::string& name) {
  return name.empty() ? std::string(prefix) : name;
}
inline void check_embedding_options(const std::string& name, Index rows, Index dim) {
  if (rows <= 0 || dim <= 0) fail("embedding '", name, "': rows and dim must be > 0, got rows=", rows, " dim=", dim);
}
}  // namespace detail

template <class T = float>
class Embedding {
 public:
  using Scalar = T;
  struct Workspace {
    std::vector<Index> rows;     // table row of each sample in the last forward
    std::vector<Index> offsets;  // 0, 1, ..., B (bags of one for the kernel)
    TensorT<T> y;                // [B, dim]
    std::vector<T*> grad_rows;   // backward scratch
  };

  Embedding() = default;
  Embedding(ParameterArenaT<T>& arena, std::string_view prefix, EmbeddingOptions opt)
      : opt_(std::move(opt)), name_(detail::embedding_name(prefix, opt_.name)) {
    detail::check_embedding_options(name_, opt_.rows, opt_.dim);
    weight_ = &arena.add(join_name(prefix, "weight"), Shape{opt_.rows, opt_.dim}, {.init = opt_.init, .sparse = true});
  }

  /// [ids.size(), dim]: one row per id.
  MatrixView<const T> forward(std::span<const std::int64_t> ids, Workspace& ws, const Context& = {}) const {
    const Index B = static_cast<Index>(ids.size());
    map_embedding_ids(ids, opt_.rows, opt_.hash, name_, ws.rows);
    ws.offsets.resize(static_cast<std::size_t>(B + 1));
    for (Index b = 0; b <= B; ++b) ws.offsets[static_cast<std::size_t>(b)] = b;
    MatrixView<T> y = ensure(ws.y, B, opt_.dim);
    if constexpr (std::is_same_v<T, float>)
      kernels::embedding_bag_kernels().f32_embedding_bag(B, opt_.dim, weight_->value, ws.rows.data(), ws.offsets.data(),
                                                         nullptr, kernels::PoolingMode::sum, y.data, y.stride);
    else
      kernels::embedding_bag_ref<T>(B, opt_.dim, weight_->value, ws.rows.data(), ws.offsets.data(), nullptr,
                                    kernels::PoolingMode::sum, y.data, y.stride);
    return y;
  }

  /// Accumulates dW[row(ids[b]), :] += dy[b, :] into the sparse row gradient (rows of the batch only).
  void backward(MatrixView<const T> dy, Workspace& ws) const {
    const Index B = static_cast<Index>(ws.rows.size());
    require_shape(dy, B, opt_.dim, "Embedding backward dy");
    kernels::embedding_bag_backward_sparse<T>(B, opt_.dim, dy.data, dy.stride, ws.rows.data(), ws.offsets.data(),
                                              nullptr, kernels::PoolingMode::sum, weight_->sparse_grad, ws.grad_rows);
  }

  Index row_of(std::int64_t id) const { return map_embedding_id(id, opt_.rows, opt_.hash, name_); }
  MatrixView<const T> weight() const { return {weight_->value, opt_.rows, opt_.dim}; }
  Parameter<T>& weight_param() const { return *weight_; }
  Index dim() const { return opt_.dim; }
  Index rows() const { return opt_.rows; }
  const EmbeddingOptions& options() const { return opt_; }

 private:
  EmbeddingOptions opt_;
  std::string name_;
  Parameter<T>* weight_ = nullptr;
};

extern template class Embedding<float>;
extern template class Embedding<double>;

}  // namespace mtrank::nn
