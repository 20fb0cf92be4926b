// Row-softmax kernel family (gates, attention weights), with temperature and optional mask.
//
//   f32_softmax (forward), for each row r in [0, rows), temperature t > 0:
//     keep[c] = mask == nullptr || mask[r * ld_mask + c] != 0
//     m       = max_{c: keep[c]} x[r * ld_x + c]
//     e[c]    = keep[c] ? exp((x[r * ld_x + c] - m) / t) : 0        (as exp((x - m) * (1 / t)))
//     y[r * ld_y + c] = e[c] / sum_c e[c]
//     a row with no kept entry gives y = 0 everywhere (never NaN)
//
//   f32_softmax_backward, for each row r:
//     s = sum_c dy[r * ld_dy + c] * y[r * ld_y + c]
//     dx[r * ld_dx + c] = y[r * ld_y + c] * (dy[r * ld_dy + c] - s) / t     (overwrites)
//     masked entries have y = 0 and therefore dx = 0: the backward needs no mask.
//
// Inputs are expected finite. y and x may alias (in place); dx and dy may alias.
// Numerics: the SIMD variants use the vectorised exp of src/kernels/<isa>/simd_math_*.hpp
// (<= 2 ulp) and multiply by 1 / sum; each y differs from the reference by <= ~8 ulp + 1e-9
// absolute (tests bound |simd - ref| <= 1e-6 * max(1, |ref|) and backward by 1e-5 relative).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

template <class T>
void softmax_ref(Index rows, Index n, const T* x, Index ld_x, T temperature, const std::uint8_t* mask, Index ld_mask,
                 T* y, Index ld_y) {
  const T inv_t = T(1) / temperature;
  for (Index r = 0; r < rows; ++r) {
    const T* xr = x + r * ld_x;
    T* yr = y + r * ld_y;
    const std::uint8_t* mr = mask ? mask + r * ld_mask : nullptr;
    T m = -std::numeric_limits<T>::infinity();
    bool any = false;
    for (Index c = 0; c < n; ++c)
      if (!mr || mr[c]) {
        any = true;
        m = xr[c] > m ? xr[c] : m;
      }
    if (!any) {
      for (Index c = 0; c < n; ++c) yr[c] = T(0);
      continue;
    }
    T sum = T(0);
    for (Index c = 0; c < n; ++c) {
      const T e = (!mr || mr[c]) ? std::exp((xr[c] - m) * inv_t) : T(0);
      yr[c] = e;
      sum += e;
    }
    const T inv = T(1) / sum;
    for (Index c = 0; c < n; ++c) yr[c] *= inv;
  }
}

template <class T>
void softmax_backward_ref(Index rows, Index n, const T* y, Index ld_y, const T* dy, Index ld_dy, T temperature, T* dx,
                          Index ld_dx) {
  const T inv_t = T(1) / temperature;
  for (Index r = 0; r < rows; ++r) {
    const T* yr = y + r * ld_y;
    const T* gr = dy + r * ld_dy;
    T* dr = dx + r * ld_dx;
    T s = T(0);
    for (Index c = 0; c < n; ++c) s += gr[c] * yr[c];
    for (Index c = 0; c < n; ++c) dr[c] = yr[c] * (gr[c] - s) * inv_t;
  }
}

/// One dispatch table for the softmax family (float).
struct SoftmaxKernels {
  Isa isa;
  void (*f32_softmax)(Index rows, Index n, const float* x, Index ld_x, float temperature, const std::uint8_t* mask,
                      Index ld_mask, float* y, Index ld_y);
  void (*f32_softmax_backward)(Index rows, Index n, const float* y, Index ld_y, const float* dy, Index ld_dy,
                               float temperature, float* dx, Index ld_dx);
};

const SoftmaxKernels& softmax_kernels(Isa isa);
const SoftmaxKernels& softmax_kernels();

}  // namespace mtrank::kernels
