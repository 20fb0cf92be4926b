// f32 -> bf16 conversion with AVX512-BF16 (vcvtneps2bf16: round to nearest even, NaN -> quiet NaN,
// denormal inputs treated as zero). Only called when cpu_features().avx512_bf16 is set.
#include <immintrin.h>

#include <cstdint>

namespace mtrank::kernels {

void f32_to_bf16_avx512bf16(const float* src, std::uint16_t* dst, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, (__m512i)v);
  }
  for (; i < n; i += 16) {
    const std::int64_t left = n - i;
    const __mmask16 m = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)v);
  }
}

}  // namespace mtrank::kernels
