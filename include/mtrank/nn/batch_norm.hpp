// Batch normalisation over the batch dimension (PyTorch nn.BatchNorm1d on [B, C]).
// Training: batch mean and biased variance normalise; running statistics are updated with
// the unbiased variance and momentum m: running = (1 - m) running + m batch. Inference uses
// the running statistics. Parameters "weight" (gamma), "bias" (beta); buffers
// "running_mean", "running_var".
#pragma once
#include <cmath>
#include <string>
#include <string_view>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::nn {

struct BatchNormOptions {
  Index width = 0;
  double eps = 1e-5;
  double momentum = 0.1;
};

template <class T = float>
class BatchNorm {
 public:
  using Scalar = T;
  struct Workspace {
    TensorT<T> y, dx, xhat, inv_std;
    bool batch_stats = false;
    MatrixView<const T> x;
  };
  BatchNorm() = default;
  BatchNorm(ParameterArenaT<T>& arena, std::string_view prefix, BatchNormOptions opt) : opt_(opt), name_(prefix) {
    require(opt.width > 0, "BatchNorm '", prefix, "': width must be > 0");
    gamma_ = &arena.add(join_name(prefix, "weight"), Shape{opt.width}, {.init = Init::constant(1.0)});
    beta_ = &arena.add(join_name(prefix, "bias"), Shape{opt.width}, {.init = Init::zeros()});
    mean_ = &arena.add(join_name(prefix, "running_mean"), Shape{opt.width}, {.init = Init::zeros(), .trainable = false});
    var_ = &arena.add(join_name(prefix, "running_var"), Shape{opt.width}, {.init = Init::constant(1.0), .trainable = false});
  }

  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    const Index B = x.rows, W = opt_.width;
    if (x.cols != W) fail("BatchNorm '", name_, "': input has ", x.cols, " columns, expected ", W);
    ws.x = x;
    ws.batch_stats = ctx.training && B > 1;
    MatrixView<T> y = ensure(ws.y, B, W);
    MatrixView<T> xhat = ensure(ws.xhat, B, W);
    ws.inv_std.resize(Shape{W});
    for (Index j = 0; j < W; ++j) {
      double m, var;
      if (ws.batch_stats) {
        double s = 0, ss = 0;
        for (Index r = 0; r < B; ++r) s += x(r, j);
        m = s / double(B);
        for (Index r = 0; r < B; ++r) ss += (x(r, j) - m) * (x(r, j) - m);
        var = ss / double(B);
        const double mom = opt_.momentum;
        mean_->value[j] = T((1 - mom) * mean_->value[j] + mom * m);
        var_->value[j] = T((1 - mom) * var_->value[j] + mom * ss / double(B - 1));
      } else {
        m = mean_->value[j];
        var = var_->value[j];
      }
      const T inv = T(1.0 / std::sqrt(var + opt_.eps));
      ws.inv_std[j] = inv;
      for (Index r = 0; r < B; ++r) {
        xhat(r, j) = (x(r, j) - T(m)) * inv;
        y(r, j) = gamma_->value[j] * xhat(r, j) + beta_->value[j];
      }
    }
    return y;
  }

  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const {
    const Index B = ws.x.rows, W = opt_.width;
    require_shape(dy, B, W, "BatchNorm backward dy");
    MatrixView<T> dx = ensure(ws.dx, B, W);
    MatrixView<const T> xhat = ws.xhat.matrix();
    for (Index j = 0; j < W; ++j) {
      double sd = 0, sdx = 0;
      for (Index r = 0; r < B; ++r) {
        sd += dy(r, j);
        sdx += dy(r, j) * xhat(r, j);
      }
      gamma_->grad[j] += T(sdx);
      beta_->grad[j] += T(sd);
      const T g = gamma_->value[j], inv = ws.inv_std[j];
      for (Index r = 0; r < B; ++r) {
        if (ws.batch_stats)
          dx(r, j) = g * inv * (dy(r, j) - T(sd / double(B)) - xhat(r, j) * T(sdx / double(B)));
        else
          dx(r, j) = g * inv * dy(r, j);
      }
    }
    if (!need_dx) return {};
    return dx;
  }
  Index width() const { return opt_.width; }

 private:
  BatchNormOptions opt_;
  std::string name_;
  Parameter<T>*gamma_ = nullptr, *beta_ = nullptr, *mean_ = nullptr, *var_ = nullptr;
};

extern template class BatchNorm<float>;
extern template class BatchNorm<double>;

}  // namespace mtrank::nn
