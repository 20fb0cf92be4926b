// Internal: the AVX-512 vector-operation set that the ISA-generic kernel bodies in
// src/kernels/simd/*.inl are written against (the AVX2 twin is simd_ops_avx2.hpp).
//
// Everything is in an anonymous namespace (internal linkage): no copy compiled with AVX-512
// flags can be merged by the linker into code that runs on an older CPU.
#pragma once
#include "kernels/avx512/simd_math_avx512.hpp"  // first: sets the diagnostic pragma

#include <immintrin.h>

namespace mtrank::kernels::avx512_detail {
namespace {

struct Ops {
  using V = __m512;
  using Mask = __mmask16;
  using DV = __m512d;
  static constexpr long W = 16;   // float lanes
  static constexpr long DW = 8;   // double lanes
  static constexpr int kRankNV = 4;  // vectors kept in registers by rank updates (32 zmm)

  static Mask mask(long n) { return n <= 0 ? Mask(0) : tail_mask16(n); }  // lanes [0, n)
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V sqrt(V a) { return _mm512_sqrt_ps(a); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }  // a * b + c
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  /// W int8 values widened to float.
  static V load_i8(const signed char* p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))); }
  /// x > 0 ? pos : other
  static V select_pos(V x, V pos, V other) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), other, pos);
  }
  static float hsum(V v) { return hsum512(v); }
  static V sigmoid(V x) { return sigmoid512(x); }
  static V tanh(V x) { return tanh512(x); }
  static V exp(V x) { return exp512(x); }

  static DV dload(const float* p, long n) { return _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mask8(n), p)); }
  static void dstore(float* p, DV v, long n) { _mm256_mask_storeu_ps(p, mask8(n), _mm512_cvtpd_ps(v)); }
  static DV dset1(double x) { return _mm512_set1_pd(x); }
  static DV dadd(DV a, DV b) { return _mm512_add_pd(a, b); }
  static DV dsub(DV a, DV b) { return _mm512_sub_pd(a, b); }
  static DV dmul(DV a, DV b) { return _mm512_mul_pd(a, b); }
  static DV ddiv(DV a, DV b) { return _mm512_div_pd(a, b); }
  static DV dsqrt(DV a) { return _mm512_sqrt_pd(a); }
  static DV dabs(DV a) { return _mm512_abs_pd(a); }
  /// a <= b ? x : y (false for NaN)
  static DV dselect_le(DV a, DV b, DV x, DV y) { return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, b, _CMP_LE_OQ), y, x); }
  /// a > 0 ? x : y
  static DV dselect_pos(DV a, DV x, DV y) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a, _mm512_setzero_pd(), _CMP_GT_OQ), y, x);
  }

 private:
  static __mmask8 mask8(long n) { return static_cast<__mmask8>(n >= 8 ? 0xFFu : ((1u << n) - 1u)); }
};

}  // namespace
}  // namespace mtrank::kernels::avx512_detail
