// AVX-512 activation kernels (see include/mtrank/kernels/activation.hpp for the math and
// src/kernels/avx512/simd_math_avx512.hpp for the approximations and their error).
// Tails use masked loads/stores, so every n (including 0 and 1) takes the same code path.
#include "kernels/avx512/simd_math_avx512.hpp"  // first: sets the diagnostic pragma

#include <immintrin.h>

#include <algorithm>

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

// Per-column kernels: rows x cols with row strides; full 16-column chunks, then one masked chunk.
// The column tail uses zero-filled masked loads (masked lanes never touch memory).
void prelu_fwd(const float* x, Index ldx, const float* a, float* y, Index ldy, Index rows, Index cols) {
  const __m512 zero = _mm512_setzero_ps();
  for (Index r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    Index j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m512 v = _mm512_loadu_ps(xr + j);
      // !(x > 0) (unordered: NaN takes the a x branch like the reference, and stays NaN).
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_NGT_UQ);
      _mm512_storeu_ps(yr + j, _mm512_mask_mul_ps(v, neg, v, _mm512_loadu_ps(a + j)));
    }
    if (j < cols) {
      const __mmask16 m = tail_mask16(cols - j);
      const __m512 v = _mm512_maskz_loadu_ps(m, xr + j);
      const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_NGT_UQ);
      _mm512_mask_storeu_ps(yr + j, m, _mm512_mask_mul_ps(v, neg, v, _mm512_maskz_loadu_ps(m, a + j)));
    }
  }
}

// Rows in blocks of kRowBlock (x, dy, dx of one block stay in L1 while the column chunks sweep
// it); the da partial sum of a chunk lives in a register for the whole block.
constexpr Index kRowBlock = 32;

template <bool Tail>
inline void prelu_bwd_chunk(const float* x, Index ldx, const float* dy, Index lddy, const float* a, float* dx,
                            Index lddx, float* da, Index r0, Index r1, Index j, __mmask16 m) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512 av = Tail ? _mm512_maskz_loadu_ps(m, a + j) : _mm512_loadu_ps(a + j);
  __m512 acc = zero;
  for (Index r = r0; r < r1; ++r) {
    const __m512 v = Tail ? _mm512_maskz_loadu_ps(m, x + r * ldx + j) : _mm512_loadu_ps(x + r * ldx + j);
    const __m512 g = Tail ? _mm512_maskz_loadu_ps(m, dy + r * lddy + j) : _mm512_loadu_ps(dy + r * lddy + j);
    const __mmask16 neg = _mm512_cmp_ps_mask(v, zero, _CMP_NGT_UQ);
    const __m512 d = _mm512_mask_mul_ps(g, neg, g, av);
    acc = _mm512_mask3_fmadd_ps(g, v, acc, neg);  // acc += g x where x <= 0
    if (Tail)
      _mm512_mask_storeu_ps(dx + r * lddx + j, m, d);
    else
      _mm512_storeu_ps(dx + r * lddx + j, d);
  }
  if (Tail)
    _mm512_mask_storeu_ps(da + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, da + j), acc));
  else
    _mm512_storeu_ps(da + j, _mm512_add_ps(_mm512_loadu_ps(da + j), acc));
}

void prelu_bwd(const float* x, Index ldx, const float* dy, Index lddy, const float* a, float* dx, Index lddx,
               float* da, Index rows, Index cols) {
  for (Index r0 = 0; r0 < rows; r0 += kRowBlock) {
    const Index r1 = std::min(rows, r0 + kRowBlock);
    Index j = 0;
    for (; j + 16 <= cols; j += 16) prelu_bwd_chunk<false>(x, ldx, dy, lddy, a, dx, lddx, da, r0, r1, j, 0);
    if (j < cols) prelu_bwd_chunk<true>(x, ldx, dy, lddy, a, dx, lddx, da, r0, r1, j, tail_mask16(cols - j));
  }
}

template <bool Tail>
inline void dice_fwd_chunk(const float* xr, const float* mean, const float* inv_std, const float* alpha, float* yr,
                           float* pr, Index j, __mmask16 m) {
  auto ld = [m](const float* q) { return Tail ? _mm512_maskz_loadu_ps(m, q) : _mm512_loadu_ps(q); };
  auto st = [m](float* q, __m512 v) {
    if (Tail)
      _mm512_mask_storeu_ps(q, m, v);
    else
      _mm512_storeu_ps(q, v);
  };
  const __m512 v = ld(xr + j);
  const __m512 p = sigmoid512(_mm512_mul_ps(_mm512_sub_ps(v, ld(mean + j)), ld(inv_std + j)));
  const __m512 al = ld(alpha + j);
  if (pr) st(pr + j, p);
  st(yr + j, _mm512_mul_ps(v, _mm512_fmadd_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), al), p, al)));
}

void dice_fwd(const float* x, Index ldx, const float* mean, const float* inv_std, const float* alpha, float* y,
              Index ldy, float* p, Index rows, Index cols) {
  for (Index r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    float* pr = p ? p + r * cols : nullptr;
    Index j = 0;
    for (; j + 16 <= cols; j += 16) dice_fwd_chunk<false>(xr, mean, inv_std, alpha, yr, pr, j, 0);
    if (j < cols) dice_fwd_chunk<true>(xr, mean, inv_std, alpha, yr, pr, j, tail_mask16(cols - j));
  }
}
}  // namespace

extern const ActivationKernels kActivationAvx512;
const ActivationKernels kActivationAvx512 = {
    Isa::avx512, relu_fwd, relu_bwd, sigmoid_fwd, sigmoid_bwd, tanh_fwd, tanh_bwd, gelu_fwd, gelu_bwd,
    prelu_fwd, prelu_bwd, dice_fwd,
};

}  // namespace mtrank::kernels
