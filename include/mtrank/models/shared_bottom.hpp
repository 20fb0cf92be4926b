// SharedBottom backbone: one Mlp shared by every task; each task reads the same bottom output.
// Satisfies the MultiTaskBackbone concept (blocks/backbone.hpp). A single-task DNN is a
// SharedBottom with one task.
#pragma once
#include <string_view>
#include <vector>

#include "mtrank/nn/mlp.hpp"

namespace mtrank::models {

struct SharedBottomOptions {
  Index in = 0;
  Index num_tasks = 1;
  nn::MlpOptions bottom;  // bottom.in is set from `in`
};

template <class T = float>
class SharedBottom {
 public:
  using Scalar = T;
  struct Workspace {
    typename nn::Mlp<T>::Workspace bottom;
    std::vector<MatrixView<const T>> outputs;
    TensorT<T> d_sum;
  };
  SharedBottom() = default;
  SharedBottom(ParameterArenaT<T>& arena, std::string_view prefix, SharedBottomOptions opt) : opt_(std::move(opt)) {
    require(opt_.num_tasks >= 1, "shared_bottom: num_tasks must be >= 1, got ", opt_.num_tasks);
    opt_.bottom.in = opt_.in;
    bottom_ = nn::Mlp<T>(arena, join_name(prefix, "bottom"), opt_.bottom);
  }
  const std::vector<MatrixView<const T>>& forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    auto h = bottom_.forward(x, ws.bottom, ctx);
    ws.outputs.assign(static_cast<std::size_t>(opt_.num_tasks), h);
    return ws.outputs;
  }
  MatrixView<const T> backward(const std::vector<MatrixView<const T>>& d_tasks, Workspace& ws, bool need_dx = true) const {
    require(static_cast<Index>(d_tasks.size()) == opt_.num_tasks, "shared_bottom backward: ", d_tasks.size(),
            " task gradients, expected ", opt_.num_tasks);
    const auto& h = ws.outputs.front();
    MatrixView<T> d = ensure(ws.d_sum, h.rows, h.cols);
    copy(d_tasks[0], d);
    for (std::size_t k = 1; k < d_tasks.size(); ++k)
      for (Index r = 0; r < d.rows; ++r)
        for (Index c = 0; c < d.cols; ++c) d(r, c) += d_tasks[k](r, c);
    return bottom_.backward(d, ws.bottom, need_dx);
  }
  double penalty(double) const { return 0.0; }
  Index num_tasks() const { return opt_.num_tasks; }
  Index in_features() const { return opt_.in; }
  /// Input columns >= cols are constants: the bottom's first layer skips their gradient.
  void limit_input_grad(Index cols) { bottom_.limit_input_grad(cols); }
  Index out_features(Index) const { return bottom_.out_features(); }

 private:
  SharedBottomOptions opt_;
  nn::Mlp<T> bottom_;
};

extern template class SharedBottom<float>;
extern template class SharedBottom<double>;

}  // namespace mtrank::models
