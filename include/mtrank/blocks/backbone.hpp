// Concepts shared by the multi-task blocks: what an expert is, how a block builds one, and
// what a multi-task backbone offers to the model layer (embeddings -> backbone -> K towers).
#pragma once
#include <concepts>
#include <string_view>
#include <utility>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/nn/mlp.hpp"

namespace mtrank::blocks {

/// An expert maps [B, in] -> [B, h]; backward accumulates its parameter gradients and returns dx.
template <class E>
concept Expert = requires(const E& e, typename E::Workspace& ws, MatrixView<const typename E::Scalar> x,
                          const Context& ctx) {
  typename E::Scalar;
  { e.forward(x, ws, ctx) } -> std::convertible_to<MatrixView<const typename E::Scalar>>;
  { e.backward(x, ws, true) } -> std::convertible_to<MatrixView<const typename E::Scalar>>;
  { e.in_features() } -> std::convertible_to<Index>;
  { e.out_features() } -> std::convertible_to<Index>;
};

/// How a block constructs an expert: `Options` is the expert's option type, make() builds one
/// under `prefix` with input width `in`. The primary template expects E::Options with an `in`
/// field and a constructor E(arena, prefix, Options); specialise it for other expert types.
template <class E>
struct ExpertTraits {
  using Options = typename E::Options;
  static E make(ParameterArenaT<typename E::Scalar>& arena, std::string_view prefix, Index in, Options opt) {
    opt.in = in;
    return E(arena, prefix, std::move(opt));
  }
};

template <class T>
struct ExpertTraits<nn::Mlp<T>> {
  using Options = nn::MlpOptions;
  static nn::Mlp<T> make(ParameterArenaT<T>& arena, std::string_view prefix, Index in, Options opt) {
    opt.in = in;
    return nn::Mlp<T>(arena, prefix, std::move(opt));
  }
};

template <class E>
using ExpertOptionsOf = typename ExpertTraits<E>::Options;

/// Modules that can treat trailing input columns as constants (nn::Linear::limit_input_grad).
template <class M>
concept LimitsInputGrad = requires(M& m, Index cols) { m.limit_input_grad(cols); };

/// limit_input_grad where the module supports it; others keep computing the whole dx (correct,
/// only slower).
template <class M>
void limit_input_grad_if_supported(M& m, Index cols) {
  if constexpr (LimitsInputGrad<M>) m.limit_input_grad(cols);
}

/// The interface the model layer programs against. forward() returns the K task inputs
/// [B, h_k]; backward() takes their gradients and returns dx [B, in].
/// Regularisers (SNR's L0 penalty) are exposed as `double penalty(double weight) const`: it
/// returns weight * penalty and accumulates its gradient into the arena. Backbones without
/// one return 0.
template <class B>
concept MultiTaskBackbone = requires(const B& b, typename B::Workspace& ws, MatrixView<const typename B::Scalar> x,
                                     const std::vector<MatrixView<const typename B::Scalar>>& d_tasks,
                                     const Context& ctx) {
  { b.forward(x, ws, ctx) } -> std::same_as<const std::vector<MatrixView<const typename B::Scalar>>&>;
  { b.backward(d_tasks, ws, true) } -> std::same_as<MatrixView<const typename B::Scalar>>;
  { b.num_tasks() } -> std::convertible_to<Index>;
  { b.out_features(Index{}) } -> std::convertible_to<Index>;
  { b.in_features() } -> std::convertible_to<Index>;
  { b.penalty(1.0) } -> std::convertible_to<double>;
};

/// dst += src (same shape).
template <class T>
inline void add_into(MatrixView<const T> src, MatrixView<T> dst) {
  for (Index r = 0; r < src.rows; ++r) {
    const T* s = src.row(r);
    T* d = dst.row(r);
    for (Index c = 0; c < src.cols; ++c) d[c] += s[c];
  }
}

/// Sets every element of a view to zero.
template <class T>
inline void set_zero(MatrixView<T> m) {
  for (Index r = 0; r < m.rows; ++r) std::fill(m.row(r), m.row(r) + m.cols, T(0));
}

}  // namespace mtrank::blocks
