// Linear layer, PyTorch layout: y = x W^T + b, W [out, in], b [out].
//
// float forward: kernels::f32_linear_fused (sgemm + a bias/activation epilogue), except for
// serving passes (ctx.packed_weights(): a model's serving_context() or Context::serving(w),
// weights fixed between calls), which run kernels::packed_linear on a copy of the weights packed
// once for the micro-kernel (kernels/packed_linear.hpp). The copy's format is the serving plan
// ctx.weights (kernels::inference_format: f32; int8 for every batch; bf16 for batches of at most
// kernels::kBf16MaxRows rows where weight bandwidth dominates), never a process-wide setting, so
// models in one process may serve in different formats. Copies are kept per Linear and per format
// and repacked when the weights version of the arena holding the weight moves (every optimiser
// step on that arena and every io::load_arena into it; code writing weights by hand calls
// arena.mark_weights_changed()); other arenas' changes never touch them.
// kernels::set_packed_inference(false) routes inference through f32_linear_fused as well.
// double (gradient checks) keeps matmul + bias.
#pragma once
#include <algorithm>
#include <memory>
#include <string_view>
#include <type_traits>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/activation.hpp"
#include "mtrank/kernels/gemm.hpp"
#include "mtrank/kernels/linear_fused.hpp"
#include "mtrank/kernels/packed_linear.hpp"

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
    if constexpr (std::is_same_v<T, float>) packed_ = std::make_shared<kernels::PackedWeightCache>();
  }

  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    return forward_act(x, kernels::FusedActivation::identity, ws, ctx);
  }

  /// act(x W^T + b) in one fused call (Mlp uses this for relu/sigmoid/tanh/gelu layers).
  MatrixView<const T> forward_act(MatrixView<const T> x, kernels::FusedActivation act, Workspace& ws,
                                  const Context& ctx = {}) const {
    ws.x = x;
    MatrixView<T> y = ensure(ws.y, x.rows, opt_.out);
    forward_into(x, y, act, ctx);
    return y;
  }

  /// y = x W^T + b into caller memory (may be a column block of a wider matrix). Always f32/f64.
  void forward_into(MatrixView<const T> x, MatrixView<T> y) const {
    forward_into(x, y, kernels::FusedActivation::identity, Context::inference());
  }

  /// y = act(x W^T + b); when ctx.packed_weights() (serving passes) float layers use the
  /// packed-weight kernels on a copy in the format of ctx.weights (see the top of this file).
  void forward_into(MatrixView<const T> x, MatrixView<T> y, kernels::FusedActivation act, const Context& ctx) const {
    if (x.cols != opt_.in) fail("Linear '", weight_->name, "': input has ", x.cols, " columns, expected ", opt_.in);
    require_shape(y, x.rows, opt_.out, "Linear output");
    if constexpr (std::is_same_v<T, float>) {
      const float* b = bias_ ? bias_->value : nullptr;
      if (ctx.packed_weights() && kernels::packed_inference()) {
        // Held for the whole call: a concurrent repack (another format cannot cause one; only a
        // weight change of this arena can) never frees the copy under this pass.
        const std::shared_ptr<const kernels::PackedMatrix> w =
            packed_->get(weight_->value, opt_.out, opt_.in, kernels::inference_format(x.rows, ctx.weights),
                         weight_->weights_version());
        kernels::packed_linear(x.rows, x.data, x.stride, *w, b, act, y.data, y.stride);
      } else
        kernels::f32_linear_fused(x.rows, opt_.in, opt_.out, x.data, x.stride, weight_->value, b, act, y.data,
                                  y.stride);
    } else {
      if (bias_) {
        for (Index r = 0; r < y.rows; ++r) std::copy(bias_->value, bias_->value + opt_.out, y.row(r));
        kernels::matmul<T>(x, false, weight(), true, y, T(1), T(1));
      } else {
        kernels::matmul<T>(x, false, weight(), true, y);
      }
      apply_ref(act, y);
    }
  }

  /// Treats input columns >= cols as constants: backward reports their gradient as 0 without
  /// computing it (a network's first layer whose trailing inputs are raw dense features, as
  /// autograd skips inputs that do not require grad). Set while building a model.
  void limit_input_grad(Index cols) {
    require(cols >= 0 && cols <= opt_.in, "Linear: input-gradient columns ", cols, " outside [0, ", opt_.in, "]");
    dx_cols_ = cols;
  }
  Index input_grad_columns() const { return dx_cols_ < 0 ? opt_.in : dx_cols_; }

  /// Accumulates dW += dy^T x and db += colsum(dy); returns dx = dy W (when need_dx).
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const {
    require_shape(dy, ws.x.rows, opt_.out, "Linear backward dy");
    const Index dx_cols = input_grad_columns();
    if constexpr (std::is_same_v<T, float>) {
      MatrixView<T> dx = need_dx ? ensure(ws.dx, dy.rows, opt_.in) : MatrixView<T>{};
      kernels::f32_linear_backward(dy.rows, opt_.in, opt_.out, dy.data, dy.stride, ws.x.data, ws.x.stride,
                                   weight_->value, weight_->grad, bias_ ? bias_->grad : nullptr,
                                   need_dx ? dx.data : nullptr, opt_.in, kernels::LinearImpl::automatic, dx_cols);
      if (!need_dx) return {};
      zero_constant_columns(dx, dx_cols);
      return dx;
    } else {
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
      zero_constant_columns(dx, dx_cols);
      return dx;
    }
  }

  MatrixView<const T> weight() const { return {weight_->value, opt_.out, opt_.in}; }
  const T* bias() const { return bias_ ? bias_->value : nullptr; }
  Parameter<T>& weight_param() const { return *weight_; }
  Parameter<T>* bias_param() const { return bias_; }
  Index in_features() const { return opt_.in; }
  Index out_features() const { return opt_.out; }
  const LinearOptions& options() const { return opt_; }

 private:
  static void zero_constant_columns(MatrixView<T> dx, Index cols) {
    if (cols >= dx.cols) return;
    for (Index r = 0; r < dx.rows; ++r) std::fill(dx.row(r) + cols, dx.row(r) + dx.cols, T(0));
  }
  static void apply_ref(kernels::FusedActivation act, MatrixView<T> y) {
    for (Index r = 0; r < y.rows; ++r) {
      T* yr = y.row(r);
      switch (act) {
        case kernels::FusedActivation::identity: break;
        case kernels::FusedActivation::relu: kernels::relu_fwd_ref(yr, yr, y.cols); break;
        case kernels::FusedActivation::sigmoid: kernels::sigmoid_fwd_ref(yr, yr, y.cols); break;
        case kernels::FusedActivation::tanh: kernels::tanh_fwd_ref(yr, yr, y.cols); break;
        case kernels::FusedActivation::gelu_erf: kernels::gelu_fwd_ref(yr, yr, y.cols); break;
      }
    }
  }

  LinearOptions opt_;
  Parameter<T>* weight_ = nullptr;
  Parameter<T>* bias_ = nullptr;
  Index dx_cols_ = -1;  // -1: every input column gets its gradient
  std::shared_ptr<kernels::PackedWeightCache> packed_;  // float: packed weight copies for inference
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace mtrank::nn
