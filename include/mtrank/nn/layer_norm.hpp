// Layer normalisation over the last dimension (PyTorch nn.LayerNorm(width), eps 1e-5):
//   y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias     (biased variance, per row)
// Parameters "weight" [width] (ones) and "bias" [width] (zeros) when elementwise_affine.
#pragma once
#include <string>
#include <string_view>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::nn {

struct LayerNormOptions {
  Index width = 0;
  double eps = 1e-5;
  bool elementwise_affine = true;
};

template <class T = float>
class LayerNorm {
 public:
  using Scalar = T;
  struct Workspace {
    TensorT<T> y, dx, xhat, rstd;
  };

  LayerNorm() = default;
  LayerNorm(ParameterArenaT<T>& arena, std::string_view prefix, LayerNormOptions opt);

  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const;
  /// Accumulates weight/bias gradients; returns dx.
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  Index width() const { return opt_.width; }
  const LayerNormOptions& options() const { return opt_; }

 private:
  LayerNormOptions opt_;
  std::string name_;
  Parameter<T>* weight_ = nullptr;
  Parameter<T>* bias_ = nullptr;
};

extern template class LayerNorm<float>;
extern template class LayerNorm<double>;

}  // namespace mtrank::nn
