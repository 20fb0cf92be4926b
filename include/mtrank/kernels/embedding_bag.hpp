// Embedding-bag kernel family: pooled lookups from an embedding table, and their backward.
//
// Exact meaning (FBGEMM EmbeddingSpMDM style). `table` is [num_rows, dim] row-major; `indices`,
// `weights` and `grad_rows` are indexed by the absolute position j; `offsets` has batch + 1
// non-decreasing entries and bag b is the positions [offsets[b], offsets[b + 1]).
//
//   f32_embedding_bag (forward):
//     for b in [0, batch):
//       len = offsets[b + 1] - offsets[b]
//       out[b * ld_out + c] = 0                                            for c in [0, dim)
//       for j in [offsets[b], offsets[b + 1]):            // in order
//         w = weights ? weights[j] : 1
//         out[b * ld_out + c] += w * table[indices[j] * dim + c]           for c in [0, dim)
//       if mode == mean and len > 0:
//         out[b * ld_out + c] *= 1 / len                                   (an empty bag gives zeros)
//
//   f32_embedding_bag_backward (scatter-add into row gradients):
//     for b in [0, batch), j in [offsets[b], offsets[b + 1]):
//       s = (weights ? weights[j] : 1) * (mode == mean ? 1 / len_b : 1)
//       grad_rows[j][c] += s * dout[b * ld_dout + c]                       for c in [0, dim)
//     grad_rows[j] is the gradient row of table row indices[j]; two positions that hit the same
//     table row pass the same pointer (positions are processed in order, so this is safe).
//     The caller resolves the pointers, e.g. from SparseRowGrad (embedding_bag_backward_sparse
//     below does that), which keeps std::vector code out of the ISA-flagged kernels.
//
//   f32_embedding_bag_weight_grad (gradient of the per-sample weights, overwrites):
//     for b in [0, batch), j in [offsets[b], offsets[b + 1]):
//       dweights[j] = (mode == mean ? 1 / len_b : 1) * sum_c dout[b * ld_dout + c] * table[indices[j] * dim + c]
//
// Preconditions (not checked by the kernels; nn::EmbeddingBag checks them): every
// indices[j] is already a valid row in [0, num_rows) - range-checked or hashed by the caller;
// offsets are non-decreasing; out / dout rows hold dim floats and ld >= dim.
// The SIMD variants prefetch the table rows kPrefetchDistance positions ahead (across bag
// boundaries) because a lookup into a large table is a cache miss per row.
//
// Numerics: the SIMD variants use the same summation order as the reference; they differ
// only by fused multiply-adds (weighted bags), i.e. |simd - ref| <= 2 * len * 2^-24 * sum_j |w_j x_j|.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

enum class PoolingMode : int { sum = 0, mean = 1 };

/// Positions ahead at which the SIMD variants prefetch table rows.
inline constexpr Index kEmbeddingPrefetchDistance = 16;

template <class T>
void embedding_bag_ref(Index batch, Index dim, const T* table, const Index* indices, const Index* offsets,
                       const T* weights, PoolingMode mode, T* out, Index ld_out) {
  for (Index b = 0; b < batch; ++b) {
    T* o = out + b * ld_out;
    for (Index c = 0; c < dim; ++c) o[c] = T(0);
    const Index begin = offsets[b], end = offsets[b + 1];
    for (Index j = begin; j < end; ++j) {
      const T* r = table + indices[j] * dim;
      if (weights) {
        const T w = weights[j];
        for (Index c = 0; c < dim; ++c) o[c] += w * r[c];
      } else {
        for (Index c = 0; c < dim; ++c) o[c] += r[c];
      }
    }
    if (mode == PoolingMode::mean && end > begin) {
      const T s = T(1) / static_cast<T>(end - begin);
      for (Index c = 0; c < dim; ++c) o[c] *= s;
    }
  }
}

template <class T>
void embedding_bag_backward_ref(Index batch, Index dim, const T* dout, Index ld_dout, const Index* offsets,
                                const T* weights, PoolingMode mode, T* const* grad_rows) {
  for (Index b = 0; b < batch; ++b) {
    const T* d = dout + b * ld_dout;
    const Index begin = offsets[b], end = offsets[b + 1];
    const T scale = mode == PoolingMode::mean && end > begin ? T(1) / static_cast<T>(end - begin) : T(1);
    for (Index j = begin; j < end; ++j) {
      const T s = weights ? weights[j] * scale : scale;
      T* g = grad_rows[j];
      for (Index c = 0; c < dim; ++c) g[c] += s * d[c];
    }
  }
}

template <class T>
void embedding_bag_weight_grad_ref(Index batch, Index dim, const T* dout, Index ld_dout, const T* table,
                                   const Index* indices, const Index* offsets, PoolingMode mode, T* dweights) {
  for (Index b = 0; b < batch; ++b) {
    const T* d = dout + b * ld_dout;
    const Index begin = offsets[b], end = offsets[b + 1];
    const T scale = mode == PoolingMode::mean && end > begin ? T(1) / static_cast<T>(end - begin) : T(1);
    for (Index j = begin; j < end; ++j) {
      const T* r = table + indices[j] * dim;
      T acc = T(0);
      for (Index c = 0; c < dim; ++c) acc += d[c] * r[c];
      dweights[j] = scale * acc;
    }
  }
}

/// One dispatch table for the embedding-bag family (float).
struct EmbeddingBagKernels {
  Isa isa;
  void (*f32_embedding_bag)(Index batch, Index dim, const float* table, const Index* indices,
                            const Index* offsets, const float* weights, PoolingMode mode, float* out,
                            Index ld_out);
  void (*f32_embedding_bag_backward)(Index batch, Index dim, const float* dout, Index ld_dout,
                                     const Index* offsets, const float* weights, PoolingMode mode,
                                     float* const* grad_rows);
  void (*f32_embedding_bag_weight_grad)(Index batch, Index dim, const float* dout, Index ld_dout,
                                        const float* table, const Index* indices, const Index* offsets,
                                        PoolingMode mode, float* dweights);
};

/// The table for a given ISA (falls back to the best lower ISA this build and machine have).
const EmbeddingBagKernels& embedding_bag_kernels(Isa isa);
/// The table for active_isa(), chosen once.
const EmbeddingBagKernels& embedding_bag_kernels();

/// Resolves the gradient rows of the positions [offsets[0], offsets[batch]) in `grad`
/// (touching each row once, then taking stable pointers) into `scratch`, and runs the
/// backward kernel: `f32_embedding_bag_backward` of `kernels` for float, the reference for
/// other types. `scratch` is caller-owned so that steady-state calls do not allocate.
template <class T>
void embedding_bag_backward_sparse(Index batch, Index dim, const T* dout, Index ld_dout, const Index* indices,
                                   const Index* offsets, const T* weights, PoolingMode mode, SparseRowGrad<T>& grad,
                                   std::vector<T*>& scratch, const EmbeddingBagKernels* kernels = nullptr) {
  if (batch <= 0) return;
  const Index begin = offsets[0], end = offsets[batch];
  // First pass touches the rows (this may grow the value storage); the second takes pointers,
  // which stay valid because no new row is added afterwards.
  for (Index j = begin; j < end; ++j) grad.row(indices[j]);
  scratch.resize(static_cast<std::size_t>(end));
  for (Index j = begin; j < end; ++j) scratch[static_cast<std::size_t>(j)] = grad.row(indices[j]);
  if constexpr (std::is_same_v<T, float>) {
    const EmbeddingBagKernels& k = kernels ? *kernels : embedding_bag_kernels();
    k.f32_embedding_bag_backward(batch, dim, dout, ld_dout, offsets, weights, mode, scratch.data());
  } else {
    embedding_bag_backward_ref<T>(batch, dim, dout, ld_dout, offsets, weights, mode, scratch.data());
  }
}

}  // namespace mtrank::kernels
