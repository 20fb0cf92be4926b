// Activation layers: identity, ReLU, PReLU, Dice, sigmoid, tanh, GELU.
//
// PReLU (PyTorch nn.PReLU(num_parameters=width)): y = x if x > 0 else a_j x; parameter "weight" [width].
// Dice (DIN paper): y = s (alpha + (1 - alpha) p), p = sigmoid((s - mean) / sqrt(var + eps)), with batch
// statistics (biased variance) while training and running statistics at inference; parameters
// "alpha" [width] and buffers "running_mean", "running_var" (PyTorch BatchNorm update rule).
#pragma once
#include <string>
#include <string_view>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::nn {

enum class ActivationKind { identity, relu, prelu, dice, sigmoid, tanh, gelu };

/// "relu", "prelu", "dice", "sigmoid", "tanh", "gelu", "identity"/"none"/"linear".
ActivationKind parse_activation(std::string_view name);
const char* activation_name(ActivationKind kind);

struct ActivationOptions {
  ActivationKind kind = ActivationKind::relu;
  Index width = 0;            // required for prelu and dice
  double prelu_init = 0.25;   // PyTorch default
  double dice_eps = 1e-8;
  double dice_momentum = 0.1;  // running = (1 - m) running + m batch
};

template <class T = float>
class Activation {
 public:
  using Scalar = T;
  struct Workspace {
    MatrixView<const T> x;
    TensorT<T> y, dx;
    TensorT<T> aux;       // dice: p per element
    TensorT<T> mean, inv_std;  // dice: statistics used in the last forward
    bool batch_stats = false;
  };

  Activation() = default;
  Activation(ParameterArenaT<T>& arena, std::string_view prefix, ActivationOptions opt);

  bool has_parameters() const { return opt_.kind == ActivationKind::prelu || opt_.kind == ActivationKind::dice; }
  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const;
  /// Applies the activation in place on y (inference only, parameter-free or running stats).
  void forward_inplace(MatrixView<T> y) const;
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  ActivationKind kind() const { return opt_.kind; }
  const ActivationOptions& options() const { return opt_; }

 private:
  void apply(MatrixView<const T> x, MatrixView<T> y, Workspace* ws, bool training) const;
  ActivationOptions opt_;
  std::string name_;
  Parameter<T>* weight_ = nullptr;  // prelu slope or dice alpha
  Parameter<T>* running_mean_ = nullptr;
  Parameter<T>* running_var_ = nullptr;
};

extern template class Activation<float>;
extern template class Activation<double>;

}  // namespace mtrank::nn
