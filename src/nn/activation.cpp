#include "mtrank/nn/activation.hpp"

#include <cmath>
#include <type_traits>

#include "mtrank/kernels/activation.hpp"

namespace mtrank::nn {

ActivationKind parse_activation(std::string_view name) {
  if (name == "relu") return ActivationKind::relu;
  if (name == "prelu") return ActivationKind::prelu;
  if (name == "dice") return ActivationKind::dice;
  if (name == "sigmoid") return ActivationKind::sigmoid;
  if (name == "tanh") return ActivationKind::tanh;
  if (name == "gelu") return ActivationKind::gelu;
  if (name == "identity" || name == "none" || name == "linear") return ActivationKind::identity;
  fail("activation: expected one of relu, prelu, dice, sigmoid, tanh, gelu, identity; got '", name, "'");
}

const char* activation_name(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::identity: return "identity";
    case ActivationKind::relu: return "relu";
    case ActivationKind::prelu: return "prelu";
    case ActivationKind::dice: return "dice";
    case ActivationKind::sigmoid: return "sigmoid";
    case ActivationKind::tanh: return "tanh";
    case ActivationKind::gelu: return "gelu";
  }
  return "?";
}

template <class T>
Activation<T>::Activation(ParameterArenaT<T>& arena, std::string_view prefix, ActivationOptions opt)
    : opt_(opt), name_(prefix) {
  if (opt.kind == ActivationKind::prelu) {
    require(opt.width > 0, "activation '", prefix, "': prelu needs width > 0");
    weight_ = &arena.add(join_name(prefix, "weight"), Shape{opt.width}, {.init = Init::constant(opt.prelu_init)});
  } else if (opt.kind == ActivationKind::dice) {
    require(opt.width > 0, "activation '", prefix, "': dice needs width > 0");
    weight_ = &arena.add(join_name(prefix, "alpha"), Shape{opt.width}, {.init = Init::zeros()});
    running_mean_ = &arena.add(join_name(prefix, "running_mean"), Shape{opt.width},
                               {.init = Init::zeros(), .trainable = false});
    running_var_ = &arena.add(join_name(prefix, "running_var"), Shape{opt.width},
                              {.init = Init::constant(1.0), .trainable = false});
  }
}

namespace {
template <class T>
void dispatch_simple(ActivationKind kind, const T* x, T* y, Index n) {
  if constexpr (std::is_same_v<T, float>) {
    const auto& k = kernels::activation_kernels();
    switch (kind) {
      case ActivationKind::relu: k.relu_fwd(x, y, n); return;
      case ActivationKind::sigmoid: k.sigmoid_fwd(x, y, n); return;
      case ActivationKind::tanh: k.tanh_fwd(x, y, n); return;
      case ActivationKind::gelu: k.gelu_fwd(x, y, n); return;
      default: break;
    }
  } else {
    switch (kind) {
      case ActivationKind::relu: kernels::relu_fwd_ref(x, y, n); return;
      case ActivationKind::sigmoid: kernels::sigmoid_fwd_ref(x, y, n); return;
      case ActivationKind::tanh: kernels::tanh_fwd_ref(x, y, n); return;
      case ActivationKind::gelu: kernels::gelu_fwd_ref(x, y, n); return;
      default: break;
    }
  }
  if (x != y) std::copy(x, x + n, y);  // identity
}

template <class T>
void dispatch_simple_bwd(ActivationKind kind, const T* x, const T* y, const T* dy, T* dx, Index n) {
  if constexpr (std::is_same_v<T, float>) {
    const auto& k = kernels::activation_kernels();
    switch (kind) {
      case ActivationKind::relu: k.relu_bwd(x, dy, dx, n); return;
      case ActivationKind::sigmoid: k.sigmoid_bwd(y, dy, dx, n); return;
      case ActivationKind::tanh: k.tanh_bwd(y, dy, dx, n); return;
      case ActivationKind::gelu: k.gelu_bwd(x, dy, dx, n); return;
      default: break;
    }
  } else {
    switch (kind) {
      case ActivationKind::relu: kernels::relu_bwd_ref(x, dy, dx, n); return;
      case ActivationKind::sigmoid: kernels::sigmoid_bwd_ref(y, dy, dx, n); return;
      case ActivationKind::tanh: kernels::tanh_bwd_ref(y, dy, dx, n); return;
      case ActivationKind::gelu: kernels::gelu_bwd_ref(x, dy, dx, n); return;
      default: break;
    }
  }
  std::copy(dy, dy + n, dx);
}
}  // namespace

template <class T>
void Activation<T>::apply(MatrixView<const T> x, MatrixView<T> y, Workspace* ws, bool training) const {
  const Index B = x.rows, W = x.cols;
  if (opt_.width > 0 && W != opt_.width)
    fail("activation '", name_, "': input has ", W, " columns, expected ", opt_.width);
  switch (opt_.kind) {
    case ActivationKind::prelu: {
      const T* a = weight_->value;
      if constexpr (std::is_same_v<T, float>)
        kernels::activation_kernels().prelu_fwd(x.data, x.stride, a, y.data, y.stride, B, W);
      else
        kernels::prelu_fwd_ref<T>(x.data, x.stride, a, y.data, y.stride, B, W);
      return;
    }
    case ActivationKind::dice: {
      // Statistics: batch (training, B > 1) or running.
      T* mean = nullptr;
      T* inv_std = nullptr;
      TensorT<T> local_mean, local_inv;
      TensorT<T>& mt = ws ? ws->mean : local_mean;
      TensorT<T>& it = ws ? ws->inv_std : local_inv;
      mt.resize(Shape{W});
      it.resize(Shape{W});
      mean = mt.data();
      inv_std = it.data();
      const bool batch = training && B > 1;
      if (ws) ws->batch_stats = batch;
      if (batch) {
        for (Index j = 0; j < W; ++j) {
          double s = 0, ss = 0;
          for (Index r = 0; r < B; ++r) s += x(r, j);
          const double m = s / double(B);
          for (Index r = 0; r < B; ++r) ss += (x(r, j) - m) * (x(r, j) - m);
          const double var = ss / double(B);
          mean[j] = T(m);
          inv_std[j] = T(1.0 / std::sqrt(var + opt_.dice_eps));
          const double unbiased = ss / double(B - 1);
          const double mom = opt_.dice_momentum;
          running_mean_->value[j] = T((1 - mom) * running_mean_->value[j] + mom * m);
          running_var_->value[j] = T((1 - mom) * running_var_->value[j] + mom * unbiased);
        }
      } else {
        for (Index j = 0; j < W; ++j) {
          mean[j] = running_mean_->value[j];
          inv_std[j] = T(1.0 / std::sqrt(double(running_var_->value[j]) + opt_.dice_eps));
        }
      }
      const T* alpha = weight_->value;
      T* p_all = nullptr;
      if (ws) p_all = ensure(ws->aux, B, W).data;
      if constexpr (std::is_same_v<T, float>)
        kernels::activation_kernels().dice_fwd(x.data, x.stride, mean, inv_std, alpha, y.data, y.stride, p_all, B, W);
      else
        kernels::dice_fwd_ref<T>(x.data, x.stride, mean, inv_std, alpha, y.data, y.stride, p_all, B, W);
      return;
    }
    default:
      if (x.contiguous() && y.contiguous()) {
        dispatch_simple<T>(opt_.kind, x.data, y.data, B * W);
      } else {
        for (Index r = 0; r < B; ++r) dispatch_simple<T>(opt_.kind, x.row(r), y.row(r), W);
      }
  }
}

template <class T>
MatrixView<const T> Activation<T>::forward(MatrixView<const T> x, Workspace& ws, const Context& ctx) const {
  ws.x = x;
  MatrixView<T> y = ensure(ws.y, x.rows, x.cols);
  apply(x, y, &ws, ctx.training);
  return y;
}

template <class T>
void Activation<T>::forward_inplace(MatrixView<T> y) const {
  apply(y, y, nullptr, false);
}

template <class T>
MatrixView<const T> Activation<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  const MatrixView<const T> x = ws.x;
  require_shape(dy, x.rows, x.cols, "activation backward dy");
  const Index B = x.rows, W = x.cols;
  MatrixView<T> dx = ensure(ws.dx, B, W);
  const MatrixView<const T> y = ws.y.matrix();
  switch (opt_.kind) {
    case ActivationKind::prelu: {
      const T* a = weight_->value;
      T* ga = weight_->grad;
      if constexpr (std::is_same_v<T, float>)
        kernels::activation_kernels().prelu_bwd(x.data, x.stride, dy.data, dy.stride, a, dx.data, dx.stride, ga, B, W);
      else
        kernels::prelu_bwd_ref<T>(x.data, x.stride, dy.data, dy.stride, a, dx.data, dx.stride, ga, B, W);
      break;
    }
    case ActivationKind::dice: {
      // y = s (alpha + (1 - alpha) p(z)), z = (s - mean) * inv_std.
      const T* alpha = weight_->value;
      T* galpha = weight_->grad;
      const T* p = ws.aux.data();
      const T* inv_std = ws.inv_std.data();
      for (Index j = 0; j < W; ++j) {
        double sum_g = 0, sum_gz = 0;
        for (Index r = 0; r < B; ++r) {
          const T s = x(r, j), d = dy(r, j), pv = p[r * W + j];
          galpha[j] += d * s * (T(1) - pv);
          const T direct = alpha[j] + (T(1) - alpha[j]) * pv;
          const T g = d * s * (T(1) - alpha[j]) * pv * (T(1) - pv);  // dL/dz
          dx(r, j) = d * direct + g * inv_std[j];
          if (ws.batch_stats) {
            const T z = (s - ws.mean[j]) * inv_std[j];
            sum_g += g;
            sum_gz += g * z;
          }
        }
        if (ws.batch_stats) {
          // Through the batch mean and variance (as batch norm's backward).
          const T mg = T(sum_g / double(B)), mgz = T(sum_gz / double(B));
          for (Index r = 0; r < B; ++r) {
            const T z = (x(r, j) - ws.mean[j]) * inv_std[j];
            dx(r, j) -= inv_std[j] * (mg + z * mgz);
          }
        }
      }
      break;
    }
    default:
      for (Index r = 0; r < B; ++r) dispatch_simple_bwd<T>(opt_.kind, x.row(r), y.row(r), dy.row(r), dx.row(r), W);
  }
  if (!need_dx) return {};
  return dx;
}

template class Activation<float>;
template class Activation<double>;

}  // namespace mtrank::nn
