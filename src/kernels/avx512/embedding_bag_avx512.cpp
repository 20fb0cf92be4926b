// AVX-512 embedding-bag kernels; meaning in include/mtrank/kernels/embedding_bag.hpp.
//
// Columns are processed in blocks of up to 8 zmm accumulators (128 floats) that stay in
// registers for the whole bag; the last vector of a block is masked, so any dim works.
// Table rows kEmbeddingPrefetchDistance positions ahead are prefetched (every cache line).
#include "kernels/avx512/simd_math_avx512.hpp"  // first: sets the diagnostic pragma

#include <immintrin.h>

#include "mtrank/kernels/embedding_bag.hpp"

namespace mtrank::kernels {
namespace {
using namespace avx512_detail;

constexpr Index kLanes = 16, kMaxVec = 8;

inline void prefetch_row(const float* table, Index dim, Index row) {
  const char* p = reinterpret_cast<const char*>(table + row * dim);
  const Index bytes = dim * Index(sizeof(float));
  const Index lines = bytes > 512 ? 512 : bytes;  // the hardware prefetcher follows longer rows
  for (Index off = 0; off < lines; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
  _mm_prefetch(p + lines - 1, _MM_HINT_T0);  // the last line when the row is not 64-byte aligned
}

template <int NV, bool kWeighted>
inline void bag_block(const float* table, Index dim, Index c0, Index width, const Index* indices,
                      const float* weights, Index begin, Index end, Index pf_end, bool prefetch, float scale,
                      float* out) {
  __mmask16 m[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) m[v] = tail_mask16(width - v * kLanes);
  __m512 acc[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) acc[v] = _mm512_setzero_ps();
  for (Index j = begin; j < end; ++j) {
    if (prefetch && j + kEmbeddingPrefetchDistance < pf_end)
      prefetch_row(table, dim, indices[j + kEmbeddingPrefetchDistance]);
    const float* r = table + indices[j] * dim + c0;
    if constexpr (kWeighted) {
      const __m512 w = _mm512_set1_ps(weights[j]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m[v], r + v * kLanes), acc[v]);
    } else {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] = _mm512_add_ps(acc[v], _mm512_maskz_loadu_ps(m[v], r + v * kLanes));
    }
  }
  const __m512 s = _mm512_set1_ps(scale);
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(out + c0 + v * kLanes, m[v], _mm512_mul_ps(acc[v], s));
}

template <bool kWeighted>
void bag_dispatch(int nv, const float* table, Index dim, Index c0, Index width, const Index* indices,
                  const float* weights, Index begin, Index end, Index pf_end, bool prefetch, float scale, float* out) {
  switch (nv) {
#define MTRANK_BAG_CASE(N) \
  case N: return bag_block<N, kWeighted>(table, dim, c0, width, indices, weights, begin, end, pf_end, prefetch, scale, out);
    MTRANK_BAG_CASE(1) MTRANK_BAG_CASE(2) MTRANK_BAG_CASE(3) MTRANK_BAG_CASE(4)
    MTRANK_BAG_CASE(5) MTRANK_BAG_CASE(6) MTRANK_BAG_CASE(7) MTRANK_BAG_CASE(8)
#undef MTRANK_BAG_CASE
  }
}

void f32_embedding_bag_avx512(Index batch, Index dim, const float* table, const Index* indices, const Index* offsets,
                              const float* weights, PoolingMode mode, float* out, Index ld_out) {
  if (batch <= 0 || dim <= 0) return;
  const Index pf_end = offsets[batch];
  for (Index b = 0; b < batch; ++b) {
    const Index begin = offsets[b], end = offsets[b + 1];
    // Multiplying by 1 keeps the sum mode exact, so one code path serves both modes.
    const float scale = mode == PoolingMode::mean && end > begin ? 1.0f / static_cast<float>(end - begin) : 1.0f;
    float* o = out + b * ld_out;
    for (Index c0 = 0; c0 < dim; c0 += kMaxVec * kLanes) {
      const Index width = dim - c0 < kMaxVec * kLanes ? dim - c0 : kMaxVec * kLanes;
      const int nv = static_cast<int>((width + kLanes - 1) / kLanes);
      if (weights)
        bag_dispatch<true>(nv, table, dim, c0, width, indices, weights, begin, end, pf_end, c0 == 0, scale, o);
      else
        bag_dispatch<false>(nv, table, dim, c0, width, indices, weights, begin, end, pf_end, c0 == 0, scale, o);
    }
  }
}

void f32_embedding_bag_backward_avx512(Index batch, Index dim, const float* dout, Index ld_dout, const Index* offsets,
                                       const float* weights, PoolingMode mode, float* const* grad_rows) {
  for (Index b = 0; b < batch; ++b) {
    const float* d = dout + b * ld_dout;
    const Index begin = offsets[b], end = offsets[b + 1];
    const float scale = mode == PoolingMode::mean && end > begin ? 1.0f / static_cast<float>(end - begin) : 1.0f;
    for (Index j = begin; j < end; ++j) {
      const __m512 s = _mm512_set1_ps(weights ? weights[j] * scale : scale);
      float* g = grad_rows[j];
      Index c = 0;
      for (; c + kLanes <= dim; c += kLanes)
        _mm512_storeu_ps(g + c, _mm512_fmadd_ps(s, _mm512_loadu_ps(d + c), _mm512_loadu_ps(g + c)));
      if (c < dim) {
        const __mmask16 m = tail_mask16(dim - c);
        _mm512_mask_storeu_ps(g + c, m,
                              _mm512_fmadd_ps(s, _mm512_maskz_loadu_ps(m, d + c), _mm512_maskz_loadu_ps(m, g + c)));
      }
    }
  }
}

void f32_embedding_bag_weight_grad_avx512(Index batch, Index dim, const float* dout, Index ld_dout, const float* table,
                                          const Index* indices, const Index* offsets, PoolingMode mode, float* dweights) {
  if (batch <= 0) return;
  const Index pf_end = offsets[batch];
  for (Index b = 0; b < batch; ++b) {
    const float* d = dout + b * ld_dout;
    const Index begin = offsets[b], end = offsets[b + 1];
    const float scale = mode == PoolingMode::mean && end > begin ? 1.0f / static_cast<float>(end - begin) : 1.0f;
    for (Index j = begin; j < end; ++j) {
      if (j + kEmbeddingPrefetchDistance < pf_end) prefetch_row(table, dim, indices[j + kEmbeddingPrefetchDistance]);
      const float* r = table + indices[j] * dim;
      __m512 acc = _mm512_setzero_ps();
      Index c = 0;
      for (; c + kLanes <= dim; c += kLanes) acc = _mm512_fmadd_ps(_mm512_loadu_ps(d + c), _mm512_loadu_ps(r + c), acc);
      if (c < dim) {
        const __mmask16 m = tail_mask16(dim - c);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, d + c), _mm512_maskz_loadu_ps(m, r + c), acc);
      }
      dweights[j] = scale * hsum512(acc);
    }
  }
}
}  // namespace

extern const EmbeddingBagKernels kEmbeddingBagAvx512;
const EmbeddingBagKernels kEmbeddingBagAvx512 = {
    Isa::avx512,
    f32_embedding_bag_avx512,
    f32_embedding_bag_backward_avx512,
    f32_embedding_bag_weight_grad_avx512,
};

}  // namespace mtrank::kernels
