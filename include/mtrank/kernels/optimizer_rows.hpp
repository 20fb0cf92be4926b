// Optimiser row-update kernel family: the per-element rules of mtrank/train/optimizer.hpp on
// one contiguous row of n elements (a touched embedding row, or a whole dense parameter), in
// place. The per-step constants are precomputed by the caller (train/optimizer.cpp) so every
// variant sees the same float values.
//
//   f32_sgd_row(w, buf, g, n, a), for i in [0, n):
//     d = g[i];  if a.weight_decay != 0: d = d + a.weight_decay * w[i]
//     if a.momentum != 0:                                   (buf may be nullptr otherwise)
//       b = a.first ? d : buf[i] * a.momentum + a.one_minus_dampening * d;  buf[i] = b
//       d = a.nesterov ? d + a.momentum * b : b
//     w[i] = w[i] + a.neg_lr * d
//
//   f32_adam_row(w, m, v, g, n, a), for i in [0, n):
//     gi = g[i]
//     if a.weight_decay != 0:  a.decoupled ? w[i] = w[i] * a.decay : gi = gi + a.weight_decay * w[i]
//     m[i] = m[i] * a.beta1 + a.one_minus_beta1 * gi
//     v[i] = v[i] * a.beta2 + a.one_minus_beta2 * gi * gi          ((omb2 * gi) * gi)
//     w[i] = w[i] + a.neg_step_size * (m[i] / (sqrt(v[i]) / a.bc2_sqrt + a.eps))
//
//   f32_adagrad_row(w, sum, g, n, a), for i in [0, n):
//     gi = g[i];  if a.weight_decay != 0: gi = gi + a.weight_decay * w[i]
//     sum[i] = sum[i] + gi * gi
//     w[i] = w[i] + a.neg_clr * (gi / (sqrt(sum[i]) + a.eps))
//
//   f32_ftrl_row(w, z, nacc, g, n, a), in double, for i in [0, n):
//     n_new = nacc[i] + g^2;  sigma = (sqrt(n_new) - sqrt(nacc[i])) / alpha
//     z[i] = float(z[i] + g - sigma * w[i]);  nacc[i] = float(n_new)
//     w[i] = |z[i]| <= l1 ? 0 : float(-(z[i] - sign(z[i]) l1) / ((beta + sqrt(nacc[i])) / alpha + l2))
//
// Every expression above is evaluated left to right with one IEEE rounding per operation and NO
// fused multiply-add (the translation units are compiled with fp-contract=off); +, *, /, sqrt
// are correctly rounded in SSE/AVX as in scalar code, so the AVX2 and AVX-512 variants give
// results BIT-IDENTICAL to the reference (tests check equality). Resuming from a checkpoint
// therefore gives the same bits on any ISA, not only on the same one.
#pragma once
#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

struct SgdRowArgs {
  float neg_lr, momentum, one_minus_dampening, weight_decay;
  bool nesterov;
  bool first;  // fresh momentum buffer: b = d
};
struct AdamRowArgs {
  float beta1, beta2, one_minus_beta1, one_minus_beta2;
  float neg_step_size;  // -lr / (1 - beta1^t)
  float bc2_sqrt;       // sqrt(1 - beta2^t)
  float eps, weight_decay;
  float decay;  // 1 - lr * weight_decay (AdamW)
  bool decoupled;
};
struct AdagradRowArgs {
  float neg_clr, weight_decay, eps;
};
struct FtrlRowArgs {
  double alpha, beta, l1, l2;
};

void sgd_row_ref(float* w, float* buf, const float* g, Index n, const SgdRowArgs& a);
void adam_row_ref(float* w, float* m, float* v, const float* g, Index n, const AdamRowArgs& a);
void adagrad_row_ref(float* w, float* sum, const float* g, Index n, const AdagradRowArgs& a);
void ftrl_row_ref(float* w, float* z, float* nacc, const float* g, Index n, const FtrlRowArgs& a);

/// One dispatch table for the optimiser-row family (float).
struct OptimizerRowKernels {
  Isa isa;
  void (*f32_sgd_row)(float* w, float* buf, const float* g, Index n, const SgdRowArgs& a);
  void (*f32_adam_row)(float* w, float* m, float* v, const float* g, Index n, const AdamRowArgs& a);
  void (*f32_adagrad_row)(float* w, float* sum, const float* g, Index n, const AdagradRowArgs& a);
  void (*f32_ftrl_row)(float* w, float* z, float* nacc, const float* g, Index n, const FtrlRowArgs& a);
};

const OptimizerRowKernels& optimizer_row_kernels(Isa isa);
const OptimizerRowKernels& optimizer_row_kernels();

}  // namespace mtrank::kernels
