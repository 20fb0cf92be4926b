// AVX-512 mixture and softmax kernels; meaning in include/mtrank/kernels/{mixture,softmax}.hpp.
#include "kernels/avx512/simd_math_avx512.hpp"  // first: sets the diagnostic pragma

#include <immintrin.h>

#include <cstdint>

#include "mtrank/kernels/mixture.hpp"
#include "mtrank/kernels/softmax.hpp"

namespace mtrank::kernels {
namespace {
using namespace avx512_detail;
constexpr Index kLanes = 16;

void f32_mixture_avx512(Index batch, Index experts, Index h, const float* g, Index ld_g, const float* const* x,
                        Index ld_x, float* out, Index ld_out) {
  for (Index b = 0; b < batch; ++b) {
    float* o = out + b * ld_out;
    const float* gb = g + b * ld_g;
    for (Index c = 0; c < h; c += kLanes) {
      const __mmask16 m = tail_mask16(h - c);
      __m512 acc = _mm512_setzero_ps();
      for (Index e = 0; e < experts; ++e)
        acc = _mm512_fmadd_ps(_mm512_set1_ps(gb[e]), _mm512_maskz_loadu_ps(m, x[e] + b * ld_x + c), acc);
      _mm512_mask_storeu_ps(o + c, m, acc);
    }
  }
}

void f32_mixture_backward_avx512(Index batch, Index experts, Index h, const float* g, Index ld_g,
                                 const float* const* x, Index ld_x, const float* dout, Index ld_dout, float* const* dx,
                                 Index ld_dx, float* dg, Index ld_dg) {
  for (Index b = 0; b < batch; ++b) {
    const float* d = dout + b * ld_dout;
    for (Index e = 0; e < experts; ++e) {
      float* de = dx && dx[e] ? dx[e] + b * ld_dx : nullptr;
      const float* xe = x[e] + b * ld_x;
      const __m512 w = _mm512_set1_ps(g[b * ld_g + e]);
      __m512 acc = _mm512_setzero_ps();
      for (Index c = 0; c < h; c += kLanes) {
        const __mmask16 m = tail_mask16(h - c);
        const __m512 dv = _mm512_maskz_loadu_ps(m, d + c);
        if (de) _mm512_mask_storeu_ps(de + c, m, _mm512_fmadd_ps(w, dv, _mm512_maskz_loadu_ps(m, de + c)));
        if (dg) acc = _mm512_fmadd_ps(dv, _mm512_maskz_loadu_ps(m, xe + c), acc);
      }
      if (dg) dg[b * ld_dg + e] = hsum512(acc);
    }
  }
}

// Lanes of columns [c, c + 16) that exist (tail) and are kept by the mask.
inline __mmask16 keep_mask(const std::uint8_t* mr, Index c, Index n) {
  const __mmask16 t = tail_mask16(n - c);
  if (!mr) return t;
  const __m128i bytes = _mm_maskz_loadu_epi8(t, mr + c);
  return _mm_test_epi8_mask(bytes, bytes);
}

void f32_softmax_avx512(Index rows, Index n, const float* x, Index ld_x, float temperature, const std::uint8_t* mask,
                        Index ld_mask, float* y, Index ld_y) {
  const __m512 inv_t = _mm512_set1_ps(1.0f / temperature);
  const __m512 ninf = _mm512_set1_ps(-__builtin_inff());
  for (Index r = 0; r < rows; ++r) {
    const float* xr = x + r * ld_x;
    float* yr = y + r * ld_y;
    const std::uint8_t* mr = mask ? mask + r * ld_mask : nullptr;
    __m512 vm = ninf;
    __mmask16 any = 0;
    for (Index c = 0; c < n; c += kLanes) {
      const __mmask16 k = keep_mask(mr, c, n);
      vm = _mm512_mask_max_ps(vm, k, vm, _mm512_maskz_loadu_ps(k, xr + c));
      any |= k;
    }
    if (!any) {
      for (Index c = 0; c < n; c += kLanes) _mm512_mask_storeu_ps(yr + c, tail_mask16(n - c), _mm512_setzero_ps());
      continue;
    }
    const __m512 m = _mm512_set1_ps(hmax512(vm));
    __m512 vsum = _mm512_setzero_ps();
    for (Index c = 0; c < n; c += kLanes) {
      const __mmask16 t = tail_mask16(n - c);
      const __mmask16 k = keep_mask(mr, c, n);
      const __m512 z = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), m), inv_t);
      const __m512 e = _mm512_maskz_mov_ps(k, exp512(z));
      _mm512_mask_storeu_ps(yr + c, t, e);
      vsum = _mm512_add_ps(vsum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / hsum512(vsum));
    for (Index c = 0; c < n; c += kLanes) {
      const __mmask16 t = tail_mask16(n - c);
      _mm512_mask_storeu_ps(yr + c, t, _mm512_mul_ps(_mm512_maskz_loadu_ps(t, yr + c), inv));
    }
  }
}

void f32_softmax_backward_avx512(Index rows, Index n, const float* y, Index ld_y, const float* dy, Index ld_dy,
                                 float temperature, float* dx, Index ld_dx) {
  const __m512 inv_t = _mm512_set1_ps(1.0f / temperature);
  for (Index r = 0; r < rows; ++r) {
    const float* yr = y + r * ld_y;
    const float* gr = dy + r * ld_dy;
    float* dr = dx + r * ld_dx;
    __m512 acc = _mm512_setzero_ps();
    for (Index c = 0; c < n; c += kLanes) {
      const __mmask16 t = tail_mask16(n - c);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(t, gr + c), _mm512_maskz_loadu_ps(t, yr + c), acc);
    }
    const __m512 s = _mm512_set1_ps(hsum512(acc));
    for (Index c = 0; c < n; c += kLanes) {
      const __mmask16 t = tail_mask16(n - c);
      const __m512 yv = _mm512_maskz_loadu_ps(t, yr + c);
      const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(t, gr + c), s);
      _mm512_mask_storeu_ps(dr + c, t, _mm512_mul_ps(_mm512_mul_ps(yv, d), inv_t));
    }
  }
}
}  // namespace

extern const MixtureKernels kMixtureAvx512;
const MixtureKernels kMixtureAvx512 = {Isa::avx512, f32_mixture_avx512, f32_mixture_backward_avx512};
extern const SoftmaxKernels kSoftmaxAvx512;
const SoftmaxKernels kSoftmaxAvx512 = {Isa::avx512, f32_softmax_avx512, f32_softmax_backward_avx512};

}  // namespace mtrank::kernels
