// AVX2 activation kernels (see include/mtrank/kernels/activation.hpp for the math and
// src/kernels/avx2/simd_math_avx2.hpp for the approximations and their error).
// Tails use vmaskmov loads/stores (masked lanes never touch memory).
#include <immintrin.h>

#include "kernels/avx2/simd_math_avx2.hpp"
#include "mtrank/kernels/activation.hpp"

namespace mtrank::kernels {
namespace {
using namespace avx2_detail;

template <class F>
inline void unary(const float* x, float* y, Index n, F f) {
  Index i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    const __m256i m = tail_mask8(n - i);
    _mm256_maskstore_ps(y + i, m, f(_mm256_maskload_ps(x + i, m)));
  }
}
template <class F>
inline void binary(const float* a, const float* b, float* out, Index n, F f) {
  Index i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, f(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
  if (i < n) {
    const __m256i m = tail_mask8(n - i);
    _mm256_maskstore_ps(out + i, m, f(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m)));
  }
}

void relu_fwd(const float* x, float* y, Index n) {
  unary(x, y, n, [](__m256 v) { return _mm256_max_ps(v, _mm256_setzero_ps()); });
}
void relu_bwd(const float* x, const float* dy, float* dx, Index n) {
  binary(x, dy, dx, n, [](__m256 xv, __m256 g) {
    return _mm256_and_ps(_mm256_cmp_ps(xv, _mm256_setzero_ps(), _CMP_GT_OQ), g);
  });
}
void sigmoid_fwd(const float* x, float* y, Index n) { unary(x, y, n, sigmoid256); }
void sigmoid_bwd(const float* y, const float* dy, float* dx, Index n) {
  binary(y, dy, dx, n, [](__m256 yv, __m256 g) {
    return _mm256_mul_ps(_mm256_mul_ps(g, yv), _mm256_sub_ps(_mm256_set1_ps(1.0f), yv));
  });
}
void tanh_fwd(const float* x, float* y, Index n) { unary(x, y, n, tanh256); }
void tanh_bwd(const float* y, const float* dy, float* dx, Index n) {
  binary(y, dy, dx, n, [](__m256 yv, __m256 g) {
    return _mm256_mul_ps(g, _mm256_fnmadd_ps(yv, yv, _mm256_set1_ps(1.0f)));
  });
}
void gelu_fwd(const float* x, float* y, Index n) {
  unary(x, y, n, [](__m256 v) { return _mm256_mul_ps(v, phi_cdf256(v)); });
}
void gelu_bwd(const float* x, const float* dy, float* dx, Index n) {
  binary(x, dy, dx, n, [](__m256 xv, __m256 g) {
    return _mm256_mul_ps(g, _mm256_fmadd_ps(xv, phi_pdf256(xv), phi_cdf256(xv)));
  });
}
}  // namespace

extern const ActivationKernels kActivationAvx2;
const ActivationKernels kActivationAvx2 = {
    Isa::avx2, relu_fwd, relu_bwd, sigmoid_fwd, sigmoid_bwd, tanh_fwd, tanh_bwd, gelu_fwd, gelu_bwd,
};

}  // namespace mtrank::kernels
