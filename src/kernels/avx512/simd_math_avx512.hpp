// Internal: vectorised float math for AVX-512 translation units only.
//
// Every function here is `static inline` (internal linkage) so that no copy compiled with
// AVX-512 flags can be merged by the linker into code that runs on an older CPU.
//
// Accuracy (measured against double-precision libm over >10^6 points, see tests/kernels):
//   exp512:     Cephes expf range reduction + degree-6 polynomial, scaled by scalef;
//               relative error <= 2 ulp on [-87.3, 88.7]; exact 0 below -103.9, +inf above 88.73.
//   erfc-based Phi: Numerical Recipes erfcc (fractional error < 1.2e-7 in exact arithmetic).
#pragma once
// GCC 12 reports a false -Wmaybe-uninitialized inside its own AVX-512 intrinsics
// (_mm512_undefined_ps); silence it for the ISA translation units that include this header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace mtrank::kernels::avx512_detail {

static inline __m512 exp512(__m512 x) {
  const __m512 hi = _mm512_set1_ps(88.7228f), lo = _mm512_set1_ps(-103.97f);
  // min/max with the constant first keep NaN (the second operand is returned on NaN).
  x = _mm512_max_ps(lo, _mm512_min_ps(hi, x));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  // scalef handles overflow (-> inf) and gradual underflow (-> denormal / 0) exactly.
  return _mm512_scalef_ps(y, fx);
}

/// 1 / (1 + exp(-x)).
static inline __m512 sigmoid512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

/// tanh: odd polynomial (Cephes tanhf) for |x| < 0.625, 1 - 2 / (exp(2|x|) + 1) otherwise.
static inline __m512 tanh512(__m512 x) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 ax = _mm512_andnot_ps(sign, x);
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(-5.70498872745e-3f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(2.06390887954e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-5.37397155531e-2f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.33314422036e-1f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(-3.33332819422e-1f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
  const __m512 e = exp512(_mm512_add_ps(ax, ax));
  __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.0f),
                             _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
  big = _mm512_or_ps(big, _mm512_and_ps(sign, x));  // copysign (big >= 0)
  const __mmask16 is_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(is_small, big, small);
}

/// Phi(x) = (1 + erf(x / sqrt 2)) / 2 through erfc(|x| / sqrt 2) (no cancellation for x < 0).
static inline __m512 phi_cdf512(__m512 x) {
  // |x| > 20: Phi is exactly 0 or 1 and phi exactly 0 in float; clamping keeps x*x finite
  // (constant first so that NaN propagates).
  x = _mm512_max_ps(_mm512_set1_ps(-20.0f), _mm512_min_ps(_mm512_set1_ps(20.0f), x));
  const __m512 sign = _mm512_set1_ps(-0.0f);
  const __m512 z = _mm512_mul_ps(_mm512_andnot_ps(sign, x), _mm512_set1_ps(0.70710678118654752f));
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
  __m512 p = _mm512_set1_ps(0.17087277f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.82215223f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.48851587f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.13520398f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.27886807f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.18628806f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.09678418f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.37409196f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.00002368f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.26551223f));
  // exp(p - x^2/2) with the argument carried as hi + lo: x^2 = xx + xe exactly (fma), and the
  // rounding error of p - xx/2 recovered by TwoSum; exp(hi + lo) = exp(hi) (1 + lo).
  const __m512 xx = _mm512_mul_ps(x, x);
  const __m512 xe = _mm512_fmsub_ps(x, x, xx);
  const __m512 b = _mm512_mul_ps(xx, _mm512_set1_ps(-0.5f));
  const __m512 hi = _mm512_add_ps(p, b);
  const __m512 bb = _mm512_sub_ps(hi, p);
  const __m512 err = _mm512_add_ps(_mm512_sub_ps(p, _mm512_sub_ps(hi, bb)), _mm512_sub_ps(b, bb));
  const __m512 lo = _mm512_fnmadd_ps(xe, _mm512_set1_ps(0.5f), err);
  const __m512 eh = exp512(hi);
  const __m512 half_erfc = _mm512_mul_ps(_mm512_mul_ps(t, _mm512_fmadd_ps(eh, lo, eh)), _mm512_set1_ps(0.5f));
  const __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(neg, _mm512_sub_ps(_mm512_set1_ps(1.0f), half_erfc), half_erfc);
}

/// Standard normal density phi(x) = exp(-x^2/2) / sqrt(2 pi).
static inline __m512 phi_pdf512(__m512 x) {
  // |x| > 20: Phi is exactly 0 or 1 and phi exactly 0 in float; clamping keeps x*x finite
  // (constant first so that NaN propagates).
  x = _mm512_max_ps(_mm512_set1_ps(-20.0f), _mm512_min_ps(_mm512_set1_ps(20.0f), x));
  const __m512 xx = _mm512_mul_ps(x, x);
  const __m512 xe = _mm512_fmsub_ps(x, x, xx);  // x^2 = xx + xe exactly
  const __m512 e = exp512(_mm512_mul_ps(xx, _mm512_set1_ps(-0.5f)));
  const __m512 ec = _mm512_fnmadd_ps(_mm512_mul_ps(e, xe), _mm512_set1_ps(0.5f), e);  // e (1 - xe/2)
  return _mm512_mul_ps(ec, _mm512_set1_ps(0.39894228040143267794f));
}

static inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }
static inline float hmax512(__m512 v) { return _mm512_reduce_max_ps(v); }

/// Mask with the low n lanes set (0 <= n <= 16).
static inline __mmask16 tail_mask16(long n) {
  return static_cast<__mmask16>(n >= 16 ? 0xFFFFu : ((1u << n) - 1u));
}

}  // namespace mtrank::kernels::avx512_detail
