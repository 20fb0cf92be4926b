// Per-call context passed to forward(): training or inference, and the RNG used by
// stochastic layers (dropout, SNR code sampling). Holds no model state.
#pragma once
#include <cstdint>
#include <string_view>

#include "mtrank/core/rng.hpp"

namespace mtrank {

/// The weight format of a served model's packed Linear copies (part of the model's serving plan,
/// never a process-wide setting): f32; bf16 for batches of at most kernels::kBf16MaxRows rows
/// (needs AVX512_BF16); int8 weight-only quantisation for every batch.
enum class ServingWeights : std::uint8_t { f32, bf16, int8 };

/// "f32" | "bf16" | "int8"; throws mtrank::Error naming the accepted values otherwise.
ServingWeights parse_serving_weights(std::string_view name);
const char* serving_weights_name(ServingWeights w);

struct Context {
  bool training = false;
  Rng* rng = nullptr;  // required when training uses dropout or sampled gates
  // Inference on weights that stay fixed between calls (serving): float Linear layers may run on
  // packed copies of their weights (kernels/packed_linear.hpp), which are refreshed only when the
  // weights version of their own model's arena moves (optimiser steps on it, io::load_arena into
  // it, ParameterArena::mark_weights_changed()). Plain inference() reads the weights as they are
  // on every call (evaluation during training, finite differences, hand-edited weights).
  bool fixed_weights = false;
  // With fixed_weights: the format of the packed copies (the served model's serving plan, see
  // models::Model::serving_context(); kernels::inference_format maps it to a format per batch).
  ServingWeights weights = ServingWeights::f32;

  static Context inference() { return {}; }
  static Context serving(ServingWeights w = ServingWeights::f32) { return {false, nullptr, true, w}; }
  static Context train(Rng& r) { return {true, &r}; }
  /// Inference that may use packed weights.
  bool packed_weights() const { return !training && fixed_weights; }
};

}  // namespace mtrank
