// AVX2 activation kernels (see include/mtrank/kernels/activation.hpp for the math and
// src/kernels/avx2/simd_math_avx2.hpp for the approximations and their error).
// Tails use vmaskmov loads/stores (masked lanes never touch memory).
#include <immintrin.h>

#include <algorithm>

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

// Per-column kernels: rows x cols with row strides; full 8-column chunks, then one masked chunk
// (vmaskmov: masked lanes read as 0 and are never written).
template <bool Tail>
inline __m256 ld8(const float* q, __m256i m) {
  if constexpr (Tail) return _mm256_maskload_ps(q, m);
  else return _mm256_loadu_ps(q);
}
template <bool Tail>
inline void st8(float* q, __m256i m, __m256 v) {
  if constexpr (Tail) _mm256_maskstore_ps(q, m, v);
  else _mm256_storeu_ps(q, v);
}

template <bool Tail>
inline void prelu_fwd_chunk(const float* xr, const float* a, float* yr, Index j, __m256i m) {
  const __m256 v = ld8<Tail>(xr + j, m);
  // !(x > 0) (unordered: NaN takes the a x branch like the reference, and stays NaN).
  const __m256 neg = _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NGT_UQ);
  st8<Tail>(yr + j, m, _mm256_blendv_ps(v, _mm256_mul_ps(v, ld8<Tail>(a + j, m)), neg));
}

void prelu_fwd(const float* x, Index ldx, const float* a, float* y, Index ldy, Index rows, Index cols) {
  const __m256i none = _mm256_setzero_si256();
  for (Index r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    Index j = 0;
    for (; j + 8 <= cols; j += 8) prelu_fwd_chunk<false>(xr, a, yr, j, none);
    if (j < cols) prelu_fwd_chunk<true>(xr, a, yr, j, tail_mask8(cols - j));
  }
}

// Rows in blocks of kRowBlock (x, dy, dx of one block stay in L1 while the column chunks sweep
// it); the da partial sum of a chunk lives in a register for the whole block.
constexpr Index kRowBlock = 32;

template <bool Tail>
inline void prelu_bwd_chunk(const float* x, Index ldx, const float* dy, Index lddy, const float* a, float* dx,
                            Index lddx, float* da, Index r0, Index r1, Index j, __m256i m) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 av = ld8<Tail>(a + j, m);
  __m256 acc = zero;
  for (Index r = r0; r < r1; ++r) {
    const __m256 v = ld8<Tail>(x + r * ldx + j, m);
    const __m256 g = ld8<Tail>(dy + r * lddy + j, m);
    const __m256 neg = _mm256_cmp_ps(v, zero, _CMP_NGT_UQ);
    st8<Tail>(dx + r * lddx + j, m, _mm256_blendv_ps(g, _mm256_mul_ps(g, av), neg));
    acc = _mm256_add_ps(acc, _mm256_and_ps(neg, _mm256_mul_ps(g, v)));  // acc += g x where x <= 0
  }
  st8<Tail>(da + j, m, _mm256_add_ps(ld8<Tail>(da + j, m), acc));
}

void prelu_bwd(const float* x, Index ldx, const float* dy, Index lddy, const float* a, float* dx, Index lddx,
               float* da, Index rows, Index cols) {
  const __m256i none = _mm256_setzero_si256();
  for (Index r0 = 0; r0 < rows; r0 += kRowBlock) {
    const Index r1 = std::min(rows, r0 + kRowBlock);
    Index j = 0;
    for (; j + 8 <= cols; j += 8) prelu_bwd_chunk<false>(x, ldx, dy, lddy, a, dx, lddx, da, r0, r1, j, none);
    if (j < cols) prelu_bwd_chunk<true>(x, ldx, dy, lddy, a, dx, lddx, da, r0, r1, j, tail_mask8(cols - j));
  }
}

template <bool Tail>
inline void dice_fwd_chunk(const float* xr, const float* mean, const float* inv_std, const float* alpha, float* yr,
                           float* pr, Index j, __m256i m) {
  const __m256 v = ld8<Tail>(xr + j, m);
  const __m256 p = sigmoid256(_mm256_mul_ps(_mm256_sub_ps(v, ld8<Tail>(mean + j, m)), ld8<Tail>(inv_std + j, m)));
  const __m256 al = ld8<Tail>(alpha + j, m);
  if (pr) st8<Tail>(pr + j, m, p);
  st8<Tail>(yr + j, m, _mm256_mul_ps(v, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), al), p, al)));
}

void dice_fwd(const float* x, Index ldx, const float* mean, const float* inv_std, const float* alpha, float* y,
              Index ldy, float* p, Index rows, Index cols) {
  const __m256i none = _mm256_setzero_si256();
  for (Index r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    float* pr = p ? p + r * cols : nullptr;
    Index j = 0;
    for (; j + 8 <= cols; j += 8) dice_fwd_chunk<false>(xr, mean, inv_std, alpha, yr, pr, j, none);
    if (j < cols) dice_fwd_chunk<true>(xr, mean, inv_std, alpha, yr, pr, j, tail_mask8(cols - j));
  }
}
}  // namespace

extern const ActivationKernels kActivationAvx2;
const ActivationKernels kActivationAvx2 = {
    Isa::avx2, relu_fwd, relu_bwd, sigmoid_fwd, sigmoid_bwd, tanh_fwd, tanh_bwd, gelu_fwd, gelu_bwd,
    prelu_fwd, prelu_bwd, dice_fwd,
};

}  // namespace mtrank::kernels
