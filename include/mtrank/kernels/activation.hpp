// Elementwise activation kernels, forward and backward.
//
//   relu_fwd:     y[i] = max(x[i], 0)
//   relu_bwd:     dx[i] = x[i] > 0 ? dy[i] : 0                 (x = pre-activation)
//   sigmoid_fwd:  y[i] = 1 / (1 + exp(-x[i]))
//   sigmoid_bwd:  dx[i] = dy[i] * y[i] * (1 - y[i])            (y = output)
//   tanh_fwd:     y[i] = tanh(x[i])
//   tanh_bwd:     dx[i] = dy[i] * (1 - y[i]^2)                 (y = output)
//   gelu_fwd:     y[i] = x[i] * Phi(x[i]), Phi(x) = (1 + erf(x / sqrt 2)) / 2   (exact, as torch)
//   gelu_bwd:     dx[i] = dy[i] * (Phi(x[i]) + x[i] * phi(x[i]))               (x = pre-activation)
//
// Per-column (rows x cols matrices with row strides ld*, parameters indexed by column j):
//   prelu_fwd:    y[r,j] = x[r,j] > 0 ? x[r,j] : a[j] x[r,j]
//   prelu_bwd:    dx[r,j] = x[r,j] > 0 ? dy[r,j] : a[j] dy[r,j];
//                 da[j] += sum over rows with x[r,j] <= 0 of dy[r,j] x[r,j]   (accumulates)
//   dice_fwd:     p[r,j] = sigmoid((x[r,j] - mean[j]) inv_std[j]);
//                 y[r,j] = x[r,j] (alpha[j] + (1 - alpha[j]) p[r,j]);
//                 p is stored (contiguous, ld = cols) only when the pointer is non-null.
//
// The table for `float` has ref, AVX2 and AVX-512 variants; double (gradient checks) uses the
// templated _ref functions directly.
#pragma once
#include <algorithm>
#include <cmath>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

template <class T>
inline void relu_fwd_ref(const T* x, T* y, Index n) {
  for (Index i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}
template <class T>
inline void relu_bwd_ref(const T* x, const T* dy, T* dx, Index n) {
  for (Index i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dy[i] : T(0);
}
template <class T>
inline T sigmoid_scalar(T x) {
  // Stable for large |x|: never exponentiates a large positive number.
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  T e = std::exp(x);
  return e / (T(1) + e);
}
template <class T>
inline void sigmoid_fwd_ref(const T* x, T* y, Index n) {
  for (Index i = 0; i < n; ++i) y[i] = sigmoid_scalar(x[i]);
}
template <class T>
inline void sigmoid_bwd_ref(const T* y, const T* dy, T* dx, Index n) {
  for (Index i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
}
template <class T>
inline void tanh_fwd_ref(const T* x, T* y, Index n) {
  for (Index i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}
template <class T>
inline void tanh_bwd_ref(const T* y, const T* dy, T* dx, Index n) {
  for (Index i = 0; i < n; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}
template <class T>
inline void gelu_fwd_ref(const T* x, T* y, Index n) {
  constexpr double kInvSqrt2 = 0.70710678118654752440;
  for (Index i = 0; i < n; ++i) {
    double v = x[i];
    y[i] = static_cast<T>(0.5 * v * std::erfc(-v * kInvSqrt2));  // erfc: no cancellation for v < 0
  }
}
template <class T>
inline void gelu_bwd_ref(const T* x, const T* dy, T* dx, Index n) {
  constexpr double kInvSqrt2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794;
  for (Index i = 0; i < n; ++i) {
    double v = x[i];
    double cdf = 0.5 * std::erfc(-v * kInvSqrt2);
    double pdf = kInvSqrt2Pi * std::exp(-0.5 * v * v);
    dx[i] = static_cast<T>(dy[i] * (cdf + v * pdf));
  }
}

template <class T>
inline void prelu_fwd_ref(const T* x, Index ldx, const T* a, T* y, Index ldy, Index rows, Index cols) {
  for (Index r = 0; r < rows; ++r) {
    const T* xr = x + r * ldx;
    T* yr = y + r * ldy;
    for (Index j = 0; j < cols; ++j) yr[j] = xr[j] > T(0) ? xr[j] : a[j] * xr[j];
  }
}
template <class T>
inline void prelu_bwd_ref(const T* x, Index ldx, const T* dy, Index lddy, const T* a, T* dx, Index lddx, T* da,
                          Index rows, Index cols) {
  for (Index r = 0; r < rows; ++r) {
    const T* xr = x + r * ldx;
    const T* gr = dy + r * lddy;
    T* dxr = dx + r * lddx;
    for (Index j = 0; j < cols; ++j) {
      if (xr[j] > T(0)) {
        dxr[j] = gr[j];
      } else {
        dxr[j] = a[j] * gr[j];
        da[j] += gr[j] * xr[j];
      }
    }
  }
}
template <class T>
inline void dice_fwd_ref(const T* x, Index ldx, const T* mean, const T* inv_std, const T* alpha, T* y, Index ldy,
                         T* p, Index rows, Index cols) {
  for (Index r = 0; r < rows; ++r) {
    const T* xr = x + r * ldx;
    T* yr = y + r * ldy;
    for (Index j = 0; j < cols; ++j) {
      const T pv = sigmoid_scalar<T>((xr[j] - mean[j]) * inv_std[j]);
      if (p) p[r * cols + j] = pv;
      yr[j] = xr[j] * (alpha[j] + (T(1) - alpha[j]) * pv);
    }
  }
}

/// One dispatch table for the activation family (float).
struct ActivationKernels {
  Isa isa;
  void (*relu_fwd)(const float* x, float* y, Index n);
  void (*relu_bwd)(const float* x, const float* dy, float* dx, Index n);
  void (*sigmoid_fwd)(const float* x, float* y, Index n);
  void (*sigmoid_bwd)(const float* y, const float* dy, float* dx, Index n);
  void (*tanh_fwd)(const float* x, float* y, Index n);
  void (*tanh_bwd)(const float* y, const float* dy, float* dx, Index n);
  void (*gelu_fwd)(const float* x, float* y, Index n);
  void (*gelu_bwd)(const float* x, const float* dy, float* dx, Index n);
  void (*prelu_fwd)(const float* x, Index ldx, const float* a, float* y, Index ldy, Index rows, Index cols);
  void (*prelu_bwd)(const float* x, Index ldx, const float* dy, Index lddy, const float* a, float* dx, Index lddx,
                    float* da, Index rows, Index cols);
  void (*dice_fwd)(const float* x, Index ldx, const float* mean, const float* inv_std, const float* alpha, float* y,
                   Index ldy, float* p, Index rows, Index cols);
};

/// The table for a given ISA (falls back to the best lower ISA when a variant is absent).
const ActivationKernels& activation_kernels(Isa isa);
/// The table for active_isa(), chosen once.
const ActivationKernels& activation_kernels();

}  // namespace mtrank::kernels
