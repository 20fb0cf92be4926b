// AVX2 mixture and softmax kernels; meaning in include/mtrank/kernels/{mixture,softmax}.hpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/avx2/simd_math_avx2.hpp"
#include "mtrank/kernels/mixture.hpp"
#include "mtrank/kernels/softmax.hpp"

namespace mtrank::kernels {
namespace {
using namespace avx2_detail;
constexpr Index kLanes = 8;

// Loads lanes [c, c + 8) of p, zero beyond n (vmaskmov never touches masked-off memory).
inline __m256 load_tail(const float* p, Index c, Index n) {
  return c + kLanes <= n ? _mm256_loadu_ps(p + c) : _mm256_maskload_ps(p + c, tail_mask8(n - c));
}
inline void store_tail(float* p, Index c, Index n, __m256 v) {
  if (c + kLanes <= n)
    _mm256_storeu_ps(p + c, v);
  else
    _mm256_maskstore_ps(p + c, tail_mask8(n - c), v);
}

void f32_mixture_avx2(Index batch, Index experts, Index h, const float* g, Index ld_g, const float* const* x,
                      Index ld_x, float* out, Index ld_out) {
  for (Index b = 0; b < batch; ++b) {
    float* o = out + b * ld_out;
    const float* gb = g + b * ld_g;
    for (Index c = 0; c < h; c += kLanes) {
      __m256 acc = _mm256_setzero_ps();
      for (Index e = 0; e < experts; ++e)
        acc = _mm256_fmadd_ps(_mm256_set1_ps(gb[e]), load_tail(x[e] + b * ld_x, c, h), acc);
      store_tail(o, c, h, acc);
    }
  }
}

void f32_mixture_backward_avx2(Index batch, Index experts, Index h, const float* g, Index ld_g, const float* const* x,
                               Index ld_x, const float* dout, Index ld_dout, float* const* dx, Index ld_dx, float* dg,
                               Index ld_dg) {
  for (Index b = 0; b < batch; ++b) {
    const float* d = dout + b * ld_dout;
    for (Index e = 0; e < experts; ++e) {
      float* de = dx && dx[e] ? dx[e] + b * ld_dx : nullptr;
      const float* xe = x[e] + b * ld_x;
      const __m256 w = _mm256_set1_ps(g[b * ld_g + e]);
      __m256 acc = _mm256_setzero_ps();
      for (Index c = 0; c < h; c += kLanes) {
        const __m256 dv = load_tail(d, c, h);
        if (de) store_tail(de, c, h, _mm256_fmadd_ps(w, dv, load_tail(de, c, h)));
        if (dg) acc = _mm256_fmadd_ps(dv, load_tail(xe, c, h), acc);
      }
      if (dg) dg[b * ld_dg + e] = hsum256(acc);
    }
  }
}

// All-ones lanes for columns [c, c + 8) that exist and are kept by the mask.
inline __m256 keep_mask(const std::uint8_t* mr, Index c, Index n) {
  const __m256i tail = tail_mask8(n - c);
  if (!mr) return _mm256_castsi256_ps(tail);
  std::uint8_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const Index len = n - c < kLanes ? n - c : kLanes;
  for (Index i = 0; i < len; ++i) buf[i] = mr[c + i];
  __m128i b8;
  __builtin_memcpy(&b8, buf, 8);  // fixed size: compiled to one 8-byte load, no libc call
  const __m256i v = _mm256_cvtepu8_epi32(b8);
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(v, _mm256_setzero_si256()));
}

void f32_softmax_avx2(Index rows, Index n, const float* x, Index ld_x, float temperature, const std::uint8_t* mask,
                      Index ld_mask, float* y, Index ld_y) {
  const __m256 inv_t = _mm256_set1_ps(1.0f / temperature);
  const __m256 ninf = _mm256_set1_ps(-__builtin_inff());
  for (Index r = 0; r < rows; ++r) {
    const float* xr = x + r * ld_x;
    float* yr = y + r * ld_y;
    const std::uint8_t* mr = mask ? mask + r * ld_mask : nullptr;
    __m256 vm = ninf;
    int any = 0;
    for (Index c = 0; c < n; c += kLanes) {
      const __m256 k = keep_mask(mr, c, n);
      vm = _mm256_max_ps(vm, _mm256_blendv_ps(ninf, load_tail(xr, c, n), k));
      any |= _mm256_movemask_ps(k);
    }
    if (!any) {
      for (Index c = 0; c < n; c += kLanes) store_tail(yr, c, n, _mm256_setzero_ps());
      continue;
    }
    const __m256 m = _mm256_set1_ps(hmax256(vm));
    __m256 vsum = _mm256_setzero_ps();
    for (Index c = 0; c < n; c += kLanes) {
      const __m256 k = keep_mask(mr, c, n);
      const __m256 z = _mm256_mul_ps(_mm256_sub_ps(_mm256_and_ps(load_tail(xr, c, n), k), m), inv_t);
      const __m256 e = _mm256_and_ps(exp256(z), k);
      store_tail(yr, c, n, e);
      vsum = _mm256_add_ps(vsum, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum256(vsum));
    for (Index c = 0; c < n; c += kLanes) store_tail(yr, c, n, _mm256_mul_ps(load_tail(yr, c, n), inv));
  }
}

void f32_softmax_backward_avx2(Index rows, Index n, const float* y, Index ld_y, const float* dy, Index ld_dy,
                               float temperature, float* dx, Index ld_dx) {
  const __m256 inv_t = _mm256_set1_ps(1.0f / temperature);
  for (Index r = 0; r < rows; ++r) {
    const float* yr = y + r * ld_y;
    const float* gr = dy + r * ld_dy;
    float* dr = dx + r * ld_dx;
    __m256 acc = _mm256_setzero_ps();
    for (Index c = 0; c < n; c += kLanes) acc = _mm256_fmadd_ps(load_tail(gr, c, n), load_tail(yr, c, n), acc);
    const __m256 s = _mm256_set1_ps(hsum256(acc));
    for (Index c = 0; c < n; c += kLanes) {
      const __m256 yv = load_tail(yr, c, n);
      const __m256 d = _mm256_sub_ps(load_tail(gr, c, n), s);
      store_tail(dr, c, n, _mm256_mul_ps(_mm256_mul_ps(yv, d), inv_t));
    }
  }
}
}  // namespace

extern const MixtureKernels kMixtureAvx2;
const MixtureKernels kMixtureAvx2 = {Isa::avx2, f32_mixture_avx2, f32_mixture_backward_avx2};
extern const SoftmaxKernels kSoftmaxAvx2;
const SoftmaxKernels kSoftmaxAvx2 = {Isa::avx2, f32_softmax_avx2, f32_softmax_backward_avx2};

}  // namespace mtrank::kernels
