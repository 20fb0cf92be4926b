// AVX-512 activation kernels (see include/mtrank/kernels/activation.hpp for the math and
// src/kernels/avx512/simd_math_avx512.hpp for the approximations and their error).
// Tails use masked loads/stores, so every n (including 0 and 1) takes the same code path.
#include "kernels/avx512/simd_math_avx512.hpp"  // first: sets the diagnostic pragma

#include <immintrin.h>

#include "mtrank/kernels/activation.hpp"

namespace mtrank::kernels {
namespace {
using namespace avx512_detail;

// Applies f to x[0:n) -> y.
template <class F>
inline void unary(const float* x, float* y, Index n, F f) {
  Index i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask16(n - i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}
// Applies f(a, b) elementwise -> out.
template <class F>
inline void binary(const float* a, const float* b, float* out, Index n, F f) {
  Index i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, f(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
  if (i < n) {
    const __mmask16 m = tail_mask16(n - i);
    _mm512_mask_storeu_ps(out + i, m, f(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i)));
  }
}

void relu_fwd(const float* x, float* y, Index n) {
  // max(x, 0) with x first: -0 and NaN give +0 like the reference (x > 0 ? x : 0).
  unary(x, y, n, [](__m512 v) { return _mm512_max_ps(v, _mm512_setzero_ps()); });
}
void relu_bwd(const float* x, const float* dy, float* dx, Index n) {
  binary(x, dy, dx, n, [](__m512 xv, __m512 g) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(xv, _mm512_setzero_ps(), _CMP_GT_OQ), g);
  });
}
void sigmoid_fwd(const float* x, float* y, Index n) { unary(x, y, n, sigmoid512); }
void sigmoid_bwd(const float* y, const float* dy, float* dx, Index n) {
  binary(y, dy, dx, n, [](__m512 yv, __m512 g) {
    return _mm512_mul_ps(_mm512_mul_ps(g, yv), _mm512_sub_ps(_mm512_set1_ps(1.0f), yv));
  });
}
void tanh_fwd(const float* x, float* y, Index n) { unary(x, y, n, tanh512); }
void tanh_bwd(const float* y, const float* dy, float* dx, Index n) {
  binary(y, dy, dx, n, [](__m512 yv, __m512 g) {
    return _mm512_mul_ps(g, _mm512_fnmadd_ps(yv, yv, _mm512_set1_ps(1.0f)));
  });
}
void gelu_fwd(const float* x, float* y, Index n) {
  unary(x, y, n, [](__m512 v) { return _mm512_mul_ps(v, phi_cdf512(v)); });
}
void gelu_bwd(const float* x, const float* dy, float* dx, Index n) {
  binary(x, dy, dx, n, [](__m512 xv, __m512 g) {
    return _mm512_mul_ps(g, _mm512_fmadd_ps(xv, phi_pdf512(xv), phi_cdf512(xv)));
  });
}
}  // namespace

extern const ActivationKernels kActivationAvx512;
const ActivationKernels kActivationAvx512 = {
    Isa::avx512, relu_fwd, relu_bwd, sigmoid_fwd, sigmoid_bwd, tanh_fwd, tanh_bwd, gelu_fwd, gelu_bwd,
};

}  // namespace mtrank::kernels
