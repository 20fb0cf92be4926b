// A multi-task network on a dense input: any backbone (SharedBottom, MMoE, PLE, SNR, ...)
// followed by one tower per task. Each tower is an Mlp ending in one unit (a logit for
// binary tasks, the prediction for regression tasks). Towers are named "towers.{k}".
#pragma once
#include <string_view>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/nn/mlp.hpp"

namespace mtrank::models {

struct TowerOptions {
  std::vector<Index> hidden;  // hidden widths; a final width-1 layer is appended
  nn::ActivationKind activation = nn::ActivationKind::relu;
  double dropout = 0.0;
  bool batch_norm = false;
};

template <class T, class Backbone>
class MultiTaskNet {
 public:
  using Scalar = T;
  struct Workspace {
    typename Backbone::Workspace backbone;
    std::vector<typename nn::Mlp<T>::Workspace> towers;
    TensorT<T> out;  // [B, K]
    std::vector<TensorT<T>> d_tower;
    std::vector<MatrixView<const T>> d_tasks;
  };

  MultiTaskNet() = default;
  MultiTaskNet(ParameterArenaT<T>& arena, std::string_view prefix, Backbone backbone, TowerOptions tower)
      : backbone_(std::move(backbone)) {
    for (Index k = 0; k < backbone_.num_tasks(); ++k) {
      nn::MlpOptions o{.in = backbone_.out_features(k), .layers = tower.hidden, .activation = tower.activation,
                       .activate_last = false, .dropout = tower.dropout, .batch_norm = tower.batch_norm};
      o.layers.push_back(1);
      towers_.emplace_back(arena, join_name(prefix, "towers." + std::to_string(k)), o);
    }
  }

  /// Returns [B, K]: one output column per task.
  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    const auto& reps = backbone_.forward(x, ws.backbone, ctx);
    const Index K = num_tasks();
    ws.towers.resize(static_cast<std::size_t>(K));
    MatrixView<T> out = ensure(ws.out, x.rows, K);
    for (Index k = 0; k < K; ++k) {
      auto y = towers_[k].forward(reps[k], ws.towers[k], ctx);
      for (Index b = 0; b < x.rows; ++b) out(b, k) = y(b, 0);
    }
    return out;
  }

  /// d_out [B, K] -> dx [B, in]; accumulates all parameter gradients.
  MatrixView<const T> backward(MatrixView<const T> d_out, Workspace& ws, bool need_dx = true) const {
    const Index K = num_tasks(), B = d_out.rows;
    require_shape(d_out, ws.out.dim(0), K, "multi-task backward d_out");
    ws.d_tower.resize(static_cast<std::size_t>(K));
    ws.d_tasks.resize(static_cast<std::size_t>(K));
    for (Index k = 0; k < K; ++k) {
      MatrixView<T> d = ensure(ws.d_tower[k], B, 1);
      for (Index b = 0; b < B; ++b) d(b, 0) = d_out(b, k);
      ws.d_tasks[k] = towers_[k].backward(d, ws.towers[k], true);
    }
    return backbone_.backward(ws.d_tasks, ws.backbone, need_dx);
  }

  double penalty(double weight) const { return backbone_.penalty(weight); }
  Index num_tasks() const { return backbone_.num_tasks(); }
  Index in_features() const { return backbone_.in_features(); }
  /// Input columns >= cols are constants, where the backbone supports it.
  void limit_input_grad(Index cols) { blocks::limit_input_grad_if_supported(backbone_, cols); }
  const Backbone& backbone() const { return backbone_; }

 private:
  Backbone backbone_;
  std::vector<nn::Mlp<T>> towers_;
};

}  // namespace mtrank::models
