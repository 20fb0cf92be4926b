// Parameter initialisers. Defaults mirror PyTorch so that models match when seeded alike
// in distribution (not bit-for-bit: PyTorch's generator differs).
#pragma once
#include <cmath>

#include "mtrank/core/rng.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank {

struct Init {
  enum class Kind { zeros, constant, uniform, normal, kaiming_uniform } kind = Kind::zeros;
  double a = 0, b = 0;  // constant: a; uniform: [a, b); normal: mean a, std b; kaiming: fan_in a

  static Init zeros() { return {Kind::zeros}; }
  static Init constant(double v) { return {Kind::constant, v}; }
  static Init uniform(double lo, double hi) { return {Kind::uniform, lo, hi}; }
  static Init normal(double mean, double stddev) { return {Kind::normal, mean, stddev}; }
  /// PyTorch nn.Linear default for weight and bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  static Init linear_default(Index fan_in) {
    double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    return uniform(-bound, bound);
  }
  /// Small normal for embedding tables (DeepCTR-style; see shared/models.md practical notes).
  static Init embedding_default() { return normal(0.0, 1e-4); }
};

template <class T>
void initialize(T* data, Index n, const Init& init, Rng& rng) {
  switch (init.kind) {
    case Init::Kind::zeros:
      for (Index i = 0; i < n; ++i) data[i] = T(0);
      break;
    case Init::Kind::constant:
      for (Index i = 0; i < n; ++i) data[i] = static_cast<T>(init.a);
      break;
    case Init::Kind::uniform:
    case Init::Kind::kaiming_uniform:
      for (Index i = 0; i < n; ++i) data[i] = static_cast<T>(rng.uniform(init.a, init.b));
      break;
    case Init::Kind::normal:
      for (Index i = 0; i < n; ++i) data[i] = static_cast<T>(rng.normal(init.a, init.b));
      break;
  }
}

}  // namespace mtrank
