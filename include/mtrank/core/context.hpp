// Per-call context passed to forward(): training or inference, and the RNG used by
// stochastic layers (dropout, SNR code sampling). Holds no model state.
#pragma once
#include "mtrank/core/rng.hpp"

namespace mtrank {

struct Context {
  bool training = false;
  Rng* rng = nullptr;  // required when training uses dropout or sampled gates

  static Context inference() { return {}; }
  static Context train(Rng& r) { return {true, &r}; }
};

}  // namespace mtrank
