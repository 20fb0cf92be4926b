// Per-call context passed to forward(): training or inference, and the RNG used by
// stochastic layers (dropout, SNR code sampling). Holds no model state.
#pragma once
#include "mtrank/core/rng.hpp"

namespace mtrank {

struct Context {
  bool training = false;
  Rng* rng = nullptr;  // required when training uses dropout or sampled gates
  // Inference on weights that stay fixed between calls (serving): float Linear layers may run on
  // packed copies of their weights (kernels/packed_linear.hpp), which are refreshed only when the
  // packing epoch moves (optimiser steps, parameter loads, kernels::invalidate_packed_weights()).
  // Plain inference() reads the weights as they are on every call (evaluation during training,
  // finite differences, hand-edited weights).
  bool fixed_weights = false;

  static Context inference() { return {}; }
  static Context serving() { return {false, nullptr, true}; }
  static Context train(Rng& r) { return {true, &r}; }
  /// Inference that may use packed weights.
  bool packed_weights() const { return !training && fixed_weights; }
};

}  // namespace mtrank
