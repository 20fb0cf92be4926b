// Internal: vectorised float math for AVX2 translation units only.
//
// Every function here is `static inline` (internal linkage) so that no copy compiled with
// AVX2 flags can be merged by the linker into code that runs on an older CPU.
//
// exp256: Cephes expf (range reduction by ln 2 in two parts + degree-6 polynomial) with 2^n
// built from exponent bits, valid on [-87.3365, 88.3763]: relative error <= 2 ulp there;
// below it returns 0 (absolute error < 1.2e-38: denormal results are flushed), above it +inf.
#pragma once
#include <immintrin.h>

namespace mtrank::kernels::avx2_detail {

static inline __m256 exp256(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f), lo = _mm256_set1_ps(-87.3365447505531f);
  const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ), over = _mm256_cmp_ps(x, hi, _CMP_GT_OQ);
  x = _mm256_max_ps(lo, _mm256_min_ps(hi, x));  // constant first: NaN propagates
  const __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i n = _mm256_cvtps_epi32(fx);
  const __m256i pow2n = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(pow2n));
  y = _mm256_andnot_ps(under, y);  // exact 0 below the normal range
  return _mm256_blendv_ps(y, _mm256_set1_ps(__builtin_inff()), over);
}

static inline __m256 sigmoid256(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

static inline __m256 tanh256(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  const __m256 e = exp256(_mm256_add_ps(ax, ax));
  __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                             _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
  big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
  const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm256_blendv_ps(big, small, is_small);
}

static inline __m256 phi_cdf256(__m256 x) {
  // |x| > 20: Phi is exactly 0 or 1 and phi exactly 0 in float; clamping keeps x*x finite
  // (constant first so that NaN propagates).
  x = _mm256_max_ps(_mm256_set1_ps(-20.0f), _mm256_min_ps(_mm256_set1_ps(20.0f), x));
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 z = _mm256_mul_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(0.70710678118654752f));
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
  __m256 p = _mm256_set1_ps(0.17087277f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
  // exp(p - x^2/2) with the argument carried as hi + lo: x^2 = xx + xe exactly (fma), and the
  // rounding error of p - xx/2 recovered by TwoSum; exp(hi + lo) = exp(hi) (1 + lo).
  const __m256 xx = _mm256_mul_ps(x, x);
  const __m256 xe = _mm256_fmsub_ps(x, x, xx);
  const __m256 b = _mm256_mul_ps(xx, _mm256_set1_ps(-0.5f));
  const __m256 hi = _mm256_add_ps(p, b);
  const __m256 bb = _mm256_sub_ps(hi, p);
  const __m256 err = _mm256_add_ps(_mm256_sub_ps(p, _mm256_sub_ps(hi, bb)), _mm256_sub_ps(b, bb));
  const __m256 lo = _mm256_fnmadd_ps(xe, _mm256_set1_ps(0.5f), err);
  const __m256 eh = exp256(hi);
  const __m256 half_erfc = _mm256_mul_ps(_mm256_mul_ps(t, _mm256_fmadd_ps(eh, lo, eh)), _mm256_set1_ps(0.5f));
  const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  return _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), half_erfc), half_erfc, neg);
}

static inline __m256 phi_pdf256(__m256 x) {
  // |x| > 20: Phi is exactly 0 or 1 and phi exactly 0 in float; clamping keeps x*x finite
  // (constant first so that NaN propagates).
  x = _mm256_max_ps(_mm256_set1_ps(-20.0f), _mm256_min_ps(_mm256_set1_ps(20.0f), x));
  const __m256 xx = _mm256_mul_ps(x, x);
  const __m256 xe = _mm256_fmsub_ps(x, x, xx);  // x^2 = xx + xe exactly
  const __m256 e = exp256(_mm256_mul_ps(xx, _mm256_set1_ps(-0.5f)));
  const __m256 ec = _mm256_fnmadd_ps(_mm256_mul_ps(e, xe), _mm256_set1_ps(0.5f), e);  // e (1 - xe/2)
  return _mm256_mul_ps(ec, _mm256_set1_ps(0.39894228040143267794f));
}

static inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline float hmax256(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/// Lane mask (all-ones lanes) for the low n lanes, 0 <= n <= 8, for maskload/maskstore.
static inline __m256i tail_mask8(long n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), idx);
}

}  // namespace mtrank::kernels::avx2_detail
