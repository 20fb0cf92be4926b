// AVX2 embedding-bag kernels; meaning in include/mtrank/kernels/embedding_bag.hpp.
//
// Columns are processed in blocks of up to 8 ymm accumulators (64 floats) that stay in
// registers for the whole bag; the last vector of a block uses vmaskmov, so any dim works.
// Table rows kEmbeddingPrefetchDistance positions ahead are prefetched (every cache line).
#include <immintrin.h>

#include "kernels/avx2/simd_math_avx2.hpp"
#include "mtrank/kernels/embedding_bag.hpp"

namespace mtrank::kernels {
namespace {
using namespace avx2_detail;

constexpr Index kLanes = 8, kMaxVec = 8;

inline void prefetch_row(const float* table, Index dim, Index row) {
  const char* p = reinterpret_cast<const char*>(table + row * dim);
  const Index bytes = dim * Index(sizeof(float));
  const Index lines = bytes > 512 ? 512 : bytes;
  for (Index off = 0; off < lines; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
  _mm_prefetch(p + lines - 1, _MM_HINT_T0);
}

template <int NV, bool kWeighted>
inline void bag_block(const float* table, Index dim, Index c0, Index width, const Index* indices,
                      const float* weights, Index begin, Index end, Index pf_end, bool prefetch, float scale,
                      float* out) {
  // Only the last vector can be partial; full vectors use plain loads.
  const bool partial = width < NV * kLanes;
  const __m256i mlast = tail_mask8(width - (NV - 1) * kLanes);
  __m256 acc[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
  for (Index j = begin; j < end; ++j) {
    if (prefetch && j + kEmbeddingPrefetchDistance < pf_end)
      prefetch_row(table, dim, indices[j + kEmbeddingPrefetchDistance]);
    const float* r = table + indices[j] * dim + c0;
    __m256 x[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV - 1; ++v) x[v] = _mm256_loadu_ps(r + v * kLanes);
    x[NV - 1] = partial ? _mm256_maskload_ps(r + (NV - 1) * kLanes, mlast) : _mm256_loadu_ps(r + (NV - 1) * kLanes);
    if constexpr (kWeighted) {
      const __m256 w = _mm256_set1_ps(weights[j]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] = _mm256_fmadd_ps(w, x[v], acc[v]);
    } else {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[v] = _mm256_add_ps(acc[v], x[v]);
    }
  }
  const __m256 s = _mm256_set1_ps(scale);
#pragma GCC unroll 8
  for (int v = 0; v < NV - 1; ++v) _mm256_storeu_ps(out + c0 + v * kLanes, _mm256_mul_ps(acc[v], s));
  if (partial)
    _mm256_maskstore_ps(out + c0 + (NV - 1) * kLanes, mlast, _mm256_mul_ps(acc[NV - 1], s));
  else
    _mm256_storeu_ps(out + c0 + (NV - 1) * kLanes, _mm256_mul_ps(acc[NV - 1], s));
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

void f32_embedding_bag_avx2(Index batch, Index dim, const float* table, const Index* indices, const Index* offsets,
                            const float* weights, PoolingMode mode, float* out, Index ld_out) {
  if (batch <= 0 || dim <= 0) return;
  const Index pf_end = offsets[batch];
  for (Index b = 0; b < batch; ++b) {
    const Index begin = offsets[b], end = offsets[b + 1];
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

void f32_embedding_bag_backward_avx2(Index batch, Index dim, const float* dout, Index ld_dout, const Index* offsets,
                                     const float* weights, PoolingMode mode, float* const* grad_rows) {
  for (Index b = 0; b < batch; ++b) {
    const float* d = dout + b * ld_dout;
    const Index begin = offsets[b], end = offsets[b + 1];
    const float scale = mode == PoolingMode::mean && end > begin ? 1.0f / static_cast<float>(end - begin) : 1.0f;
    for (Index j = begin; j < end; ++j) {
      const __m256 s = _mm256_set1_ps(weights ? weights[j] * scale : scale);
      float* g = grad_rows[j];
      Index c = 0;
      for (; c + kLanes <= dim; c += kLanes)
        _mm256_storeu_ps(g + c, _mm256_fmadd_ps(s, _mm256_loadu_ps(d + c), _mm256_loadu_ps(g + c)));
      if (c < dim) {
        const __m256i m = tail_mask8(dim - c);
        _mm256_maskstore_ps(g + c, m, _mm256_fmadd_ps(s, _mm256_maskload_ps(d + c, m), _mm256_maskload_ps(g + c, m)));
      }
    }
  }
}

void f32_embedding_bag_weight_grad_avx2(Index batch, Index dim, const float* dout, Index ld_dout, const float* table,
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
      __m256 acc = _mm256_setzero_ps();
      Index c = 0;
      for (; c + kLanes <= dim; c += kLanes) acc = _mm256_fmadd_ps(_mm256_loadu_ps(d + c), _mm256_loadu_ps(r + c), acc);
      if (c < dim) {
        const __m256i m = tail_mask8(dim - c);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(d + c, m), _mm256_maskload_ps(r + c, m), acc);
      }
      dweights[j] = scale * hsum256(acc);
    }
  }
}
}  // namespace

extern const EmbeddingBagKernels kEmbeddingBagAvx2;
const EmbeddingBagKernels kEmbeddingBagAvx2 = {
    Isa::avx2,
    f32_embedding_bag_avx2,
    f32_embedding_bag_backward_avx2,
    f32_embedding_bag_weight_grad_avx2,
};

}  // namespace mtrank::kernels
