// Multi-layer perceptron: for each layer i, Linear -> [BatchNorm] -> activation -> [Dropout].
// Parameter names (PyTorch state_dict style): layers.{i}.weight/bias, norms.{i}.*, acts.{i}.*.
// With activate_last = false the last Linear's output is returned raw (towers emitting logits).
// Without batch norm, a relu / sigmoid / tanh / identity activation is fused into the Linear
// (kernels::f32_linear_fused: one call, bias and activation as oneDNN post-ops or an epilogue);
// the Activation workspace then holds the output as both x and y, which is all their backward
// needs. gelu is fused only in inference (its backward needs the pre-activation; a backward after
// such a forward recomputes it). PReLU and Dice always run separately.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/nn/activation.hpp"
#include "mtrank/nn/batch_norm.hpp"
#include "mtrank/nn/dropout.hpp"
#include "mtrank/nn/linear.hpp"

namespace mtrank::nn {

struct MlpOptions {
  Index in = 0;
  std::vector<Index> layers;  // output width of each Linear
  ActivationKind activation = ActivationKind::relu;
  bool activate_last = true;
  double dropout = 0.0;
  bool batch_norm = false;
};

template <class T = float>
class Mlp {
 public:
  using Scalar = T;
  struct LayerWorkspace {
    typename Linear<T>::Workspace linear;
    typename BatchNorm<T>::Workspace norm;
    typename Activation<T>::Workspace act;
    typename Dropout<T>::Workspace drop;
    bool fused_gelu = false;  // forward fused gelu: backward recomputes the pre-activation
  };
  struct Workspace {
    std::vector<LayerWorkspace> layers;
    MatrixView<const T> y;
  };

  Mlp() = default;
  Mlp(ParameterArenaT<T>& arena, std::string_view prefix, MlpOptions opt);

  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const;
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  /// Input columns >= cols are constants (see Linear::limit_input_grad): the first layer skips
  /// their gradient. An MLP without layers passes dy through unchanged.
  void limit_input_grad(Index cols) {
    if (!linears_.empty()) linears_.front().limit_input_grad(cols);
  }
  Index in_features() const { return opt_.in; }
  Index out_features() const { return opt_.layers.empty() ? opt_.in : opt_.layers.back(); }
  const MlpOptions& options() const { return opt_; }
  std::size_t num_layers() const { return linears_.size(); }
  const Linear<T>& linear(std::size_t i) const { return linears_[i]; }

 private:
  bool activated(std::size_t i) const { return opt_.activate_last || i + 1 < linears_.size(); }
  MlpOptions opt_;
  std::vector<Linear<T>> linears_;
  std::vector<BatchNorm<T>> norms_;
  std::vector<Activation<T>> acts_;
  std::vector<Dropout<T>> drops_;
};

extern template class Mlp<float>;
extern template class Mlp<double>;

}  // namespace mtrank::nn
