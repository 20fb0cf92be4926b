// Shared helpers for the multi-task block tests.
#pragma once
#include <functional>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/train/grad_check.hpp"
#include "testing.hpp"

namespace mtrank::blocks::testing {

/// Gradient check of a MultiTaskBackbone<double>: loss = sum_k <r_k, out_k>, over every
/// parameter and the input. `make_ctx` builds the context for each forward (training runs
/// re-seed their RNG so that every forward sees the same noise).
template <class Backbone>
GradCheckReport check_backbone(ParameterArenaT<double>& arena, const Backbone& bb, Index batch,
                               const std::function<Context()>& make_ctx, typename Backbone::Workspace& ws,
                               double penalty_weight = 0.0) {
  static_assert(MultiTaskBackbone<Backbone>);
  Rng rng(17);
  TensorT<double> x = mtrank::testing::random_tensor<double>(Shape{batch, bb.in_features()}, rng);
  std::vector<std::vector<double>> r(static_cast<std::size_t>(bb.num_tasks()));
  for (Index k = 0; k < bb.num_tasks(); ++k)
    r[k] = mtrank::testing::random_vector(static_cast<std::size_t>(batch * bb.out_features(k)), rng);
  auto loss = [&] {
    const auto& outs = bb.forward(x.matrix(), ws, make_ctx());
    double l = 0;
    for (Index k = 0; k < bb.num_tasks(); ++k) l += dot_loss(outs[k], r[k]);
    if (penalty_weight != 0.0) {
      // penalty() also accumulates gradients; harmless here (the checker snapshots them before).
      l += bb.penalty(penalty_weight);
    }
    return l;
  };
  TensorT<double> dx;
  std::vector<TensorT<double>> dys(static_cast<std::size_t>(bb.num_tasks()));
  auto analytic = [&] {
    bb.forward(x.matrix(), ws, make_ctx());
    std::vector<MatrixView<const double>> d;
    for (Index k = 0; k < bb.num_tasks(); ++k) {
      dys[k].resize(Shape{batch, bb.out_features(k)});
      std::copy(r[k].begin(), r[k].end(), dys[k].begin());
      d.push_back(dys[k].matrix());
    }
    auto g = bb.backward(d, ws, true);
    if (penalty_weight != 0.0) bb.penalty(penalty_weight);
    dx.resize(Shape{g.rows, g.cols});
    copy(g, dx.matrix());
  };
  analytic();  // sizes dx before its pointer is taken
  return grad_check(arena, loss, analytic, {{"x", x.data(), dx.data(), x.numel()}});
}

inline bool has_param(const ParameterArenaT<double>& arena, const char* name) { return arena.find(name) != nullptr; }

}  // namespace mtrank::blocks::testing
