// The synthetic two-task regression data of Ma et al., KDD 2018 ("Modeling Task Relationships
// in Multi-task Learning with Multi-gate Mixture-of-Experts"), section 4.1:
//
//   1. u1, u2 ∈ R^d: two orthogonal unit vectors.
//   2. w1 = c·u1,  w2 = c·(p·u1 + sqrt(1 − p²)·u2)       (p = task correlation score, |p| <= 1)
//   3. x ∈ R^d with x_k ~ N(0, 1)
//   4. y_i = w_iᵀx + Σ_{j=1..m} sin(α_j·w_iᵀx + β_j) + ε_i,  i = 1, 2
//   5. α_j, β_j (j = 1..m) drawn once per seed; ε_i ~ N(0, 0.01)
//
// The Pearson correlation of the two labels grows with p (the paper's point is that it is a
// controllable task relatedness). u1, u2, α, β depend only on the seed, so datasets that differ
// only in p share them. See docs/data.md for the choice of α/β spread.
#pragma once
#include <cstdint>
#include <vector>

#include "mtrank/data/batch.hpp"

namespace mtrank::data {

struct MmoeSyntheticOptions {
  Index n = 10000;           // samples
  Index dim = 100;           // d
  double correlation = 0.5;  // p
  double scale = 1.0;        // c
  Index num_sines = 10;      // m
  double alpha_std = 0.1;    // α_j ~ N(0, alpha_std²)   (N(0, 0.01) per the paper's text)
  double beta_std = 0.1;     // β_j ~ N(0, beta_std²)
  double noise_std = 0.1;    // ε ~ N(0, noise_std²)     (N(0, 0.01))
  std::uint64_t seed = 2018; // draws u1, u2, α, β
  std::uint64_t sample_seed = 0;  // draws x and ε; 0 = derive from seed (use distinct values for train/test)
};

struct MmoeSynthetic {
  Dataset dataset;  // dense x0..x{d-1}; tasks y1, y2 (regression); no sparse fields
  std::vector<double> u1, u2, w1, w2, alpha, beta;
};

MmoeSynthetic make_mmoe_synthetic(const MmoeSyntheticOptions& options = {});

/// Pearson correlation of two columns of the labels.
double label_correlation(const Dataset& d, Index task_a = 0, Index task_b = 1);

}  // namespace mtrank::data
