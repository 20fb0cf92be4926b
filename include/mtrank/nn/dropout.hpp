// Inverted dropout: while training, y = x * m / (1 - p) with m ~ Bernoulli(1 - p); identity at inference.
#pragma once
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::nn {

struct DropoutOptions {
  double p = 0.0;
};

template <class T = float>
class Dropout {
 public:
  using Scalar = T;
  struct Workspace {
    TensorT<T> y, dx, mask;  // mask holds 0 or 1/(1-p)
    bool active = false;
    MatrixView<const T> x;
  };
  Dropout() = default;
  explicit Dropout(DropoutOptions opt) : opt_(opt) {
    require(opt.p >= 0.0 && opt.p < 1.0, "Dropout: p must be in [0, 1), got ", opt.p);
  }
  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    ws.x = x;
    ws.active = ctx.training && opt_.p > 0.0;
    if (!ws.active) return x;
    require(ctx.rng != nullptr, "Dropout: training with p > 0 needs Context::rng");
    MatrixView<T> y = ensure(ws.y, x.rows, x.cols);
    MatrixView<T> m = ensure(ws.mask, x.rows, x.cols);
    const T scale = T(1.0 / (1.0 - opt_.p));
    for (Index r = 0; r < x.rows; ++r)
      for (Index c = 0; c < x.cols; ++c) {
        m(r, c) = ctx.rng->uniform() < opt_.p ? T(0) : scale;
        y(r, c) = x(r, c) * m(r, c);
      }
    return y;
  }
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const {
    if (!ws.active || !need_dx) return need_dx ? dy : MatrixView<const T>{};
    MatrixView<T> dx = ensure(ws.dx, dy.rows, dy.cols);
    MatrixView<const T> m = ws.mask.matrix();
    for (Index r = 0; r < dy.rows; ++r)
      for (Index c = 0; c < dy.cols; ++c) dx(r, c) = dy(r, c) * m(r, c);
    return dx;
  }
  double p() const { return opt_.p; }

 private:
  DropoutOptions opt_;
};

}  // namespace mtrank::nn
