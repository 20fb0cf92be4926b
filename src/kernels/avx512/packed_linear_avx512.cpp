// avx512 packed-weight linear kernels; meaning in include/mtrank/kernels/packed_linear.hpp.
// f32: the ISA-generic tiles of src/kernels/simd/packed_linear_simd.inl with 16-column panels
// (8 x 3 tile: 24 zmm accumulators, 3 weight vectors, 1 broadcast; three FMAs per broadcast, and
// few enough row pointers to stay in registers: measured 205 GFLOP/s at M = 256, 512 -> 256, 97%
// of the FMA peak, against 186-194 for a 14 x 2 tile whose row pointers spilled). bf16: the same tiling with
// vdpbf16ps (AVX512-BF16), two k values per instruction; only called when the CPU has it.
#include <array>
#include <type_traits>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/avx512/simd_ops_avx512.hpp"
#include "mtrank/kernels/packed_linear.hpp"

namespace mtrank::kernels {
namespace {
using avx512_detail::Ops;
constexpr int kMaxRows = 8, kMainPanels = 3, kSmallRows = 4, kSmallPanels = 4;
#include "kernels/simd/packed_linear_simd.inl"

// ---- bf16: panels of 16 columns x k pairs; x rows as bf16 pairs (one 32-bit broadcast each) ----

struct Bf16TileArgs {
  Index KP;                 // k pairs in this block
  const std::uint32_t* x;   // the tile's rows as bf16 pairs, k-major (x[kk * MR + i]), first pair of the block
  const std::uint16_t* w;   // first panel, first pair of the block
  Index pstride;            // bf16 elements between panels (KP_total * 32)
  Index ncols;
  const float* b;
  bool first, last, relu;
  float* y;
  Index ldy;
};


template <int MR, int NP>
void bf16_tile(const Bf16TileArgs& t) {
  __mmask16 mask[NP];
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) mask[j] = Ops::mask(t.ncols - j * 16);
  __m512 acc[MR][NP];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) {
      if (!t.first) acc[i][j] = _mm512_maskz_loadu_ps(mask[j], t.y + i * t.ldy + j * 16);
      else if (t.b) acc[i][j] = _mm512_maskz_loadu_ps(mask[j], t.b + j * 16);
      else acc[i][j] = _mm512_setzero_ps();
    }
  const std::uint16_t* w = t.w;
  for (Index kk = 0; kk < t.KP; ++kk, w += 32) {
    __m512bh wv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) wv[j] = (__m512bh)_mm512_loadu_si512(w + j * t.pstride);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(t.x[kk * MR + i]));
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], a, wv[j]);
    }
  }
  const bool relu = t.last && t.relu;
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) {
      __m512 v = acc[i][j];
      if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(t.y + i * t.ldy + j * 16, mask[j], v);
    }
}

using Bf16TileFn = void (*)(const Bf16TileArgs&);
template <int NP, std::size_t... I>
constexpr std::array<Bf16TileFn, sizeof...(I)> bf16_tiles_for_rows(std::index_sequence<I...>) {
  return {&bf16_tile<int(I) + 1, NP>...};
}
template <int MaxRows, std::size_t... P>
constexpr std::array<std::array<Bf16TileFn, MaxRows>, sizeof...(P)> bf16_tile_table(std::index_sequence<P...>) {
  return {bf16_tiles_for_rows<int(P) + 1>(std::make_index_sequence<MaxRows>{})...};
}
constexpr auto kBf16MainTiles = bf16_tile_table<kMaxRows>(std::make_index_sequence<kMainPanels>{});
constexpr auto kBf16SmallTiles = bf16_tile_table<kSmallRows>(std::make_index_sequence<kSmallPanels>{});

// The loop nest of packed_block (for_each_tile, packed_linear_simd.inl), K counted in pairs.
void bf16_packed_block(const PackedBlockArgs& a) {
  const Index KP = (a.K + 1) / 2;
  const Index pstride = KP * 32;
  auto* scratch = reinterpret_cast<std::uint32_t*>(a.scratch);  // pairs, k-major per row block
  for (Index m0 = 0; m0 < a.M; m0 += kMaxRows) {
    const Index mr = a.M - m0 < kMaxRows ? a.M - m0 : kMaxRows;
    std::uint32_t* xp = scratch + m0 * KP;
    const std::uint16_t* xrows = a.xb + m0 * a.ldxb;
    for (Index i = 0; i < mr; ++i)
      for (Index kk = 0; kk < KP; ++kk) std::memcpy(xp + kk * mr + i, xrows + i * a.ldxb + 2 * kk, 4);
  }
  // One row chunk: the scratch holds every row (bf16 serves small batches).
  constexpr Index kPairBlock = 256;
  for_each_tile(a.M, KP, kPairBlock, a.M, a.p0, a.p1, [&](Index m0, int mr, Index k0, Index kn, Index p, Index np) {
    const Index col = p * 16;
    Bf16TileArgs t{.KP = kn,
                   .x = scratch + m0 * KP + k0 * mr,
                   .w = static_cast<const std::uint16_t*>(a.w) + p * pstride + k0 * 32,
                   .pstride = pstride,
                   .ncols = a.N - col < np * 16 ? a.N - col : np * 16,
                   .b = a.b ? a.b + col : nullptr,
                   .first = k0 == 0,
                   .last = k0 + kn == KP,
                   .relu = a.relu,
                   .y = a.y + m0 * a.ldy + col,
                   .ldy = a.ldy};
    if (mr <= kSmallRows) kBf16SmallTiles[np - 1][mr - 1](t);
    else kBf16MainTiles[np - 1][mr - 1](t);
  });
}

}  // namespace

extern const PackedLinearKernels kPackedLinearAvx512;
const PackedLinearKernels kPackedLinearAvx512 = {"avx512", 16, f32_packed_block, bf16_packed_block, int8_packed_block};

}  // namespace mtrank::kernels
