// Gate-mixture kernel family: the weighted sum of expert outputs used by MMoE / PLE / SNR.
//
// Experts are passed as an array of E pointers, each to a row-major [B, h] matrix with the
// common leading dimension ld_x (so expert outputs can live in separate workspaces or be
// column blocks of one wide matrix). Gates g are [B, E] with leading dimension ld_g.
//
//   f32_mixture (forward, overwrites out):
//     for b in [0, B), c in [0, h):
//       out[b * ld_out + c] = sum_{e = 0..E-1, in order} g[b * ld_g + e] * x[e][b * ld_x + c]
//
//   f32_mixture_backward:
//     for b in [0, B), e in [0, E):
//       if dx != nullptr and dx[e] != nullptr:
//         dx[e][b * ld_dx + c] += g[b * ld_g + e] * dout[b * ld_dout + c]     for c in [0, h)  (accumulates)
//       if dg != nullptr:
//         dg[b * ld_dg + e] = sum_c dout[b * ld_dout + c] * x[e][b * ld_x + c]                  (overwrites)
//
// Numerics: the SIMD forward keeps the e order and uses fused multiply-adds; the dot products
// of the backward are summed in a different (lane-split) order than the reference, so
// |simd - ref| <= 4 * h * 2^-24 * sum_c |dout_c x_c| (tests use this bound).
#pragma once
#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

template <class T>
void mixture_ref(Index batch, Index experts, Index h, const T* g, Index ld_g, const T* const* x, Index ld_x, T* out,
                 Index ld_out) {
  for (Index b = 0; b < batch; ++b) {
    T* o = out + b * ld_out;
    for (Index c = 0; c < h; ++c) o[c] = T(0);
    for (Index e = 0; e < experts; ++e) {
      const T w = g[b * ld_g + e];
      const T* xe = x[e] + b * ld_x;
      for (Index c = 0; c < h; ++c) o[c] += w * xe[c];
    }
  }
}

template <class T>
void mixture_backward_ref(Index batch, Index experts, Index h, const T* g, Index ld_g, const T* const* x, Index ld_x,
                          const T* dout, Index ld_dout, T* const* dx, Index ld_dx, T* dg, Index ld_dg) {
  for (Index b = 0; b < batch; ++b) {
    const T* d = dout + b * ld_dout;
    for (Index e = 0; e < experts; ++e) {
      if (dx && dx[e]) {
        const T w = g[b * ld_g + e];
        T* de = dx[e] + b * ld_dx;
        for (Index c = 0; c < h; ++c) de[c] += w * d[c];
      }
      if (dg) {
        const T* xe = x[e] + b * ld_x;
        T acc = T(0);
        for (Index c = 0; c < h; ++c) acc += d[c] * xe[c];
        dg[b * ld_dg + e] = acc;
      }
    }
  }
}

/// One dispatch table for the mixture family (float).
struct MixtureKernels {
  Isa isa;
  void (*f32_mixture)(Index batch, Index experts, Index h, const float* g, Index ld_g, const float* const* x,
                      Index ld_x, float* out, Index ld_out);
  void (*f32_mixture_backward)(Index batch, Index experts, Index h, const float* g, Index ld_g,
                               const float* const* x, Index ld_x, const float* dout, Index ld_dout,
                               float* const* dx, Index ld_dx, float* dg, Index ld_dg);
};

const MixtureKernels& mixture_kernels(Isa isa);
const MixtureKernels& mixture_kernels();

}  // namespace mtrank::kernels
