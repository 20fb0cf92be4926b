// PCGrad, gradient surgery for multi-task learning (Yu et al., NeurIPS 2020), on flattened
// shared-parameter gradients. Row i of `task_grads` [K, P] is task i's gradient g_i. For
// each task i:
//
//   g_i^PC ← g_i
//   for j in a random permutation of the other tasks (drawn from `rng`):
//     if g_i^PC · g_j < 0:  g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j
//
// and the result is Σ_i g_i^PC (the paper's sum; divide by K for a mean). The projection
// uses the current g_i^PC and the ORIGINAL g_j, as in Algorithm 1 and the authors' code.
// Dot products accumulate in double. Zero-norm g_j never conflicts (the dot product is 0).
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "mtrank/core/rng.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::train {

struct PcGradStats {
  Index conflicts = 0;  // projections applied (pairs (i, j) with g_i^PC · g_j < 0)
  Index pairs = 0;      // pairs examined: K (K − 1)
};

/// Scratch reused across calls (no allocation once it has seen the largest P, K).
template <class T>
struct PcGradWorkspace {
  std::vector<T> gi;
  std::vector<double> sq_norm;
  std::vector<Index> order;
};

/// Writes Σ_i g_i^PC into `out` (size P; must not alias task_grads). Returns statistics.
template <class T>
PcGradStats pcgrad(MatrixView<const T> task_grads, std::span<T> out, Rng& rng, PcGradWorkspace<T>& ws);

template <class T>
PcGradStats pcgrad(MatrixView<const T> task_grads, std::span<T> out, Rng& rng) {
  PcGradWorkspace<T> ws;
  return pcgrad<T>(task_grads, out, rng, ws);
}

/// Same with an explicit order: orders[i] lists the tasks ≠ i in the order task i is projected
/// against them (for tests and reproducing other implementations).
template <class T>
PcGradStats pcgrad_ordered(MatrixView<const T> task_grads, std::span<T> out,
                           const std::vector<std::vector<Index>>& orders);

extern template PcGradStats pcgrad<float>(MatrixView<const float>, std::span<float>, Rng&, PcGradWorkspace<float>&);
extern template PcGradStats pcgrad<double>(MatrixView<const double>, std::span<double>, Rng&, PcGradWorkspace<double>&);
extern template PcGradStats pcgrad_ordered<float>(MatrixView<const float>, std::span<float>,
                                                  const std::vector<std::vector<Index>>&);
extern template PcGradStats pcgrad_ordered<double>(MatrixView<const double>, std::span<double>,
                                                   const std::vector<std::vector<Index>>&);

}  // namespace mtrank::train
