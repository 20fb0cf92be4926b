// Linear layer, PyTorch layout: y = x W^T + b, W [out, in], b [out].
#pragma once
#include <string_view>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/gemm.hpp"

namespace mtrank::nn {

struct LinearOptions {
  Index in = 0;
  Index out = 0;
  bool bias = true;
};

template <class T = float>
class Linear {
 public:
  using Scalar = T;
  struct Workspace {
    MatrixView<const T> x;  // the input of the last forward (caller keeps it alive)
    TensorT<T> y, dx;
  };

  Linear() = default;
  Linear(ParameterArenaT<T>& arena, std::string_view prefix, LinearOptions opt) : opt_(opt) {
    require(opt.in > 0 && opt.out > 0, "Linear '", prefix, "': in and out must be > 0, got in=", opt.in,
            " out=", opt.out);
    const Init init = Init::linear_default(opt.in);
    weight_ = &arena.add(join_name(prefix, "weight"), Shape{opt.out, opt.in}, {.init = init});
    if (opt.bias) bias_ = &arena.add(join_name(prefix, "bias"), Shape{opt.out}, {.init = init});
  }

  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& = {}) const {
    if (x.cols != opt_.in) fail("Linear '", weight_->name, "': input has ", x.cols, " columns, expected ", opt_.in);
    ws.x = x;
    MatrixView<T> y = ensure(ws.y, x.rows, opt_.out);
    forward_into(x, y);
    return y;
  }

  /// y = x W^T + b into caller memory (may be a column block of a wider matrix).
  void forward_into(MatrixView<const T> x, MatrixView<T> y) const {
    if (bias_) {
      for (Index r = 0; r < y.rows; ++r) std::copy(bias_->value, bias_->value + opt_.out, y.row(r));
      kernels::matmul<T>(x, false, weight(), true, y, T(1), T(1));
    } else {
      kernels::matmul<T>(x, false, weight(), true, y);
    }
  }

  /// Accumulates dW += dy^T x and db += colsum(dy); returns dx = dy W (when need_dx).
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const {
    require_shape(dy, ws.x.rows, opt_.out, "Linear backward dy");
    kernels::matmul<T>(dy, true, ws.x, false, MatrixView<T>(weight_->grad, opt_.out, opt_.in), T(1), T(1));
    if (bias_) {
      T* db = bias_->grad;
      for (Index r = 0; r < dy.rows; ++r) {
        const T* d = dy.row(r);
        for (Index j = 0; j < opt_.out; ++j) db[j] += d[j];
      }
    }
    if (!need_dx) return {};
    MatrixView<T> dx = ensure(ws.dx, dy.rows, opt_.in);
    kernels::matmul<T>(dy, false, weight(), false, dx);
    return dx;
  }

  MatrixView<const T> weight() const { return {weight_->value, opt_.out, opt_.in}; }
  const T* bias() const { return bias_ ? bias_->value : nullptr; }
  Parameter<T>& weight_param() const { return *weight_; }
  Parameter<T>* bias_param() const { return bias_; }
  Index in_features() const { return opt_.in; }
  Index out_features() const { return opt_.out; }
  const LinearOptions& options() const { return opt_; }

 private:
  LinearOptions opt_;
  Parameter<T>* weight_ = nullptr;
  Parameter<T>* bias_ = nullptr;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace mtrank::nn
