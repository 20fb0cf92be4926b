// Scalar optimiser-row kernels (meaning: include/mtrank/kernels/optimizer_rows.hpp). The float
// arithmetic follows the order of torch.optim's single-tensor code (mul_ then add_, sqrt / bias
// correction + eps, addcdiv), one rounding per operation.
#include <cmath>

#include "mtrank/kernels/optimizer_rows.hpp"

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")  // no fused multiply-add even under -march=native

namespace mtrank::kernels {

void sgd_row_ref(float* w, float* buf, const float* g, Index n, const SgdRowArgs& a) {
  for (Index i = 0; i < n; ++i) {
    float d = g[i];
    if (a.weight_decay != 0.0f) d = d + a.weight_decay * w[i];
    if (a.momentum != 0.0f) {
      const float b = a.first ? d : buf[i] * a.momentum + a.one_minus_dampening * d;
      buf[i] = b;
      d = a.nesterov ? d + a.momentum * b : b;
    }
    w[i] = w[i] + a.neg_lr * d;
  }
}

void adam_row_ref(float* w, float* m, float* v, const float* g, Index n, const AdamRowArgs& a) {
  for (Index i = 0; i < n; ++i) {
    float gi = g[i];
    if (a.weight_decay != 0.0f) {
      if (a.decoupled) w[i] = w[i] * a.decay;
      else gi = gi + a.weight_decay * w[i];
    }
    const float mi = m[i] * a.beta1 + a.one_minus_beta1 * gi;
    const float vi = v[i] * a.beta2 + a.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / a.bc2_sqrt + a.eps;
    w[i] = w[i] + a.neg_step_size * (mi / denom);
  }
}

void adagrad_row_ref(float* w, float* sum, const float* g, Index n, const AdagradRowArgs& a) {
  for (Index i = 0; i < n; ++i) {
    float gi = g[i];
    if (a.weight_decay != 0.0f) gi = gi + a.weight_decay * w[i];
    const float s = sum[i] + gi * gi;
    sum[i] = s;
    w[i] = w[i] + a.neg_clr * (gi / (std::sqrt(s) + a.eps));
  }
}

void ftrl_row_ref(float* w, float* z, float* nacc, const float* g, Index n, const FtrlRowArgs& a) {
  for (Index i = 0; i < n; ++i) {
    const double gi = g[i], n_old = nacc[i], n_new = n_old + gi * gi;
    const double sigma = (std::sqrt(n_new) - std::sqrt(n_old)) / a.alpha;
    const double zi = double(z[i]) + gi - sigma * double(w[i]);
    z[i] = static_cast<float>(zi);
    nacc[i] = static_cast<float>(n_new);
    // Recompute from the stored (rounded) state so that w is a pure function of (z, n).
    const double zs = z[i], ns = nacc[i];
    if (std::abs(zs) <= a.l1) {
      w[i] = 0.0f;
    } else {
      const double sgn = zs > 0 ? 1.0 : -1.0;
      w[i] = static_cast<float>(-(zs - sgn * a.l1) / ((a.beta + std::sqrt(ns)) / a.alpha + a.l2));
    }
  }
}

extern const OptimizerRowKernels kOptimizerRowsRef;
const OptimizerRowKernels kOptimizerRowsRef = {Isa::ref, sgd_row_ref, adam_row_ref, adagrad_row_ref, ftrl_row_ref};

}  // namespace mtrank::kernels

#pragma GCC pop_options
