// Internal: the AVX2 vector-operation set that the ISA-generic kernel bodies in
// src/kernels/simd/*.inl are written against (the AVX-512 twin is simd_ops_avx512.hpp).
//
// Everything is in an anonymous namespace (internal linkage): no copy compiled with AVX2
// flags can be merged by the linker into code that runs on an older CPU.
#pragma once
#include <immintrin.h>

#include "kernels/avx2/simd_math_avx2.hpp"

namespace mtrank::kernels::avx2_detail {
namespace {

struct Ops {
  using V = __m256;
  using Mask = __m256i;
  using DV = __m256d;
  static constexpr long W = 8;
  static constexpr long DW = 4;
  static constexpr int kRankNV = 2;  // 16 ymm registers

  static Mask mask(long n) { return tail_mask8(n); }  // lanes [0, n); none for n <= 0
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  // vmaskmov never touches masked-off memory and zeroes those lanes.
  static V load(const float* p, Mask m) { return _mm256_maskload_ps(p, m); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store(float* p, V v, Mask m) { _mm256_maskstore_ps(p, m, v); }
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V sqrt(V a) { return _mm256_sqrt_ps(a); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  /// W int8 values widened to float.
  static V load_i8(const signed char* p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)))); }
  static V select_pos(V x, V pos, V other) {
    return _mm256_blendv_ps(other, pos, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
  }
  static float hsum(V v) { return hsum256(v); }
  static V sigmoid(V x) { return sigmoid256(x); }
  static V tanh(V x) { return tanh256(x); }
  static V exp(V x) { return exp256(x); }

  static DV dload(const float* p, long n) { return _mm256_cvtps_pd(_mm_maskload_ps(p, mask4(n))); }
  static void dstore(float* p, DV v, long n) { _mm_maskstore_ps(p, mask4(n), _mm256_cvtpd_ps(v)); }
  static DV dset1(double x) { return _mm256_set1_pd(x); }
  static DV dadd(DV a, DV b) { return _mm256_add_pd(a, b); }
  static DV dsub(DV a, DV b) { return _mm256_sub_pd(a, b); }
  static DV dmul(DV a, DV b) { return _mm256_mul_pd(a, b); }
  static DV ddiv(DV a, DV b) { return _mm256_div_pd(a, b); }
  static DV dsqrt(DV a) { return _mm256_sqrt_pd(a); }
  static DV dabs(DV a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static DV dselect_le(DV a, DV b, DV x, DV y) { return _mm256_blendv_pd(y, x, _mm256_cmp_pd(a, b, _CMP_LE_OQ)); }
  static DV dselect_pos(DV a, DV x, DV y) {
    return _mm256_blendv_pd(y, x, _mm256_cmp_pd(a, _mm256_setzero_pd(), _CMP_GT_OQ));
  }

 private:
  static __m128i mask4(long n) { return _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(n)), _mm_setr_epi32(0, 1, 2, 3)); }
};

}  // namespace
}  // namespace mtrank::kernels::avx2_detail
