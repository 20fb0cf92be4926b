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
};

/// The table for a given ISA (falls back to the best lower ISA when a variant is absent).
const ActivationKernels& activation_kernels(Isa isa);
/// The table for active_isa(), chosen once.
const ActivationKernels& activation_kernels();

}  // namespace mtrank::kernels
