// ISA-generic f32 body of the packed-weight linear kernels (meaning: include/mtrank/kernels/
// packed_linear.hpp). Included by src/kernels/{avx2,avx512}/packed_linear_*.cpp inside an anonymous
// namespace after `struct Ops` (simd_ops_<isa>.hpp) and these tile constants:
//   kMaxRows     rows of the main tile (x rows kept as broadcasts)
//   kMainPanels  column panels (vectors) of the main tile: kMaxRows * kMainPanels accumulators
//   kSmallRows   row blocks up to this size use kSmallPanels panels instead (more independent
//   kSmallPanels accumulator chains and weight streams when M is small: batch 1 is a GEMV)
// The panel width is Ops::W. Every output element is summed over k in increasing order from the
// bias (or 0), so the result does not depend on how rows and panels are split into tiles.

struct TileArgs {
  Index K;             // k values in this block
  const float* x;      // first row, first k of the block
  Index ldx;
  const void* w;       // first panel of the tile, first k of the block (float or int8)
  Index pstride;       // elements between panels (K_total * W)
  const float* scale;  // int8: the tile's per-column scales
  Index ncols;         // valid columns in the tile (<= NP * W)
  const float* b;      // bias of the tile's first column, or nullptr (first k block only)
  bool first, last, relu;
  float* y;            // first row, first column of the tile
  Index ldy;
};

inline typename Ops::V load_w(const float* p) { return Ops::load(p); }
inline typename Ops::V load_w(const signed char* p) { return Ops::load_i8(p); }

// WT = float (f32 weights) or signed char (int8 weights: y = scale * sum_k x w_q + b, the scale
// and the bias applied once after the last K block; earlier blocks leave unscaled sums in y).
template <int MR, int NP, class WT>
void f32_tile(const TileArgs& t) {
  constexpr bool kInt8 = std::is_same_v<WT, signed char>;
  using V = typename Ops::V;
  typename Ops::Mask mask[NP];
#pragma GCC unroll 8
  for (int j = 0; j < NP; ++j) mask[j] = Ops::mask(t.ncols - j * Ops::W);
  V acc[MR][NP];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) {
      if (!t.first) acc[i][j] = Ops::load(t.y + i * t.ldy + j * Ops::W, mask[j]);
      else if (t.b && !kInt8) acc[i][j] = Ops::load(t.b + j * Ops::W, mask[j]);
      else acc[i][j] = Ops::zero();
    }
  const float* x = t.x;
  const WT* w = static_cast<const WT*>(t.w);
  for (Index k = 0; k < t.K; ++k, w += Ops::W) {
    V wv[NP];
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) wv[j] = load_w(w + j * t.pstride);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const V a = Ops::set1(x[i * t.ldx + k]);
#pragma GCC unroll 8
      for (int j = 0; j < NP; ++j) acc[i][j] = Ops::fma(a, wv[j], acc[i][j]);
    }
  }
  const bool relu = t.last && t.relu;
  V scale[NP], bias[NP];
  if constexpr (kInt8) {
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) {
      scale[j] = Ops::load(t.scale + j * Ops::W, mask[j]);
      bias[j] = t.b ? Ops::load(t.b + j * Ops::W, mask[j]) : Ops::zero();
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int j = 0; j < NP; ++j) {
      V v = acc[i][j];
      if constexpr (kInt8) {
        if (t.last) v = Ops::fma(v, scale[j], bias[j]);
      }
      if (relu) v = Ops::max(v, Ops::zero());
      Ops::store(t.y + i * t.ldy + j * Ops::W, v, mask[j]);
    }
}

using TileFn = void (*)(const TileArgs&);

template <class WT, int NP, std::size_t... I>
constexpr std::array<TileFn, sizeof...(I)> tiles_for_rows(std::index_sequence<I...>) {
  return {&f32_tile<int(I) + 1, NP, WT>...};
}
template <class WT, int MaxRows, std::size_t... P>
constexpr std::array<std::array<TileFn, MaxRows>, sizeof...(P)> tile_table(std::index_sequence<P...>) {
  return {tiles_for_rows<WT, int(P) + 1>(std::make_index_sequence<MaxRows>{})...};
}

// [np - 1][mr - 1]: the main tiles (any row count up to kMaxRows), and the wide tiles for small
// row blocks (only those are instantiated: a 14 x 4 tile would not fit the register file).
template <class WT>
constexpr auto kMainTiles = tile_table<WT, kMaxRows>(std::make_index_sequence<kMainPanels>{});
template <class WT>
constexpr auto kSmallTiles = tile_table<WT, kSmallRows>(std::make_index_sequence<kSmallPanels>{});

// Loop order (BLIS-like, with the roles of the operands chosen for inference): per chunk of rows
// (kRowChunk: their x slice stays in L2), per K block, a chunk of kKBlock k values x kMainPanels
// weight panels (32 KiB on AVX-512) stays in L1 while the chunk's row blocks stream past it,
// each tile broadcasting x straight from its rows (no copy of x: re-laying it out cost 10-15% at
// M = 1024, more than the strided broadcasts).
constexpr Index kKBlock = 512;

// Panels for the next tile of a row: full groups of np_max, except that a remainder of
// np_max + 1 is split evenly (16 panels with np_max = 3 go 3,3,3,3,2,2 rather than ...,3,1: a
// one-panel tile has one FMA per broadcast and ran the last 1/16 of a 512 -> 256 layer at about
// half speed, 7.5% of the MMoE serving profile).
inline Index next_panels(Index remaining, Index np_max) {
  if (remaining <= np_max) return remaining;
  return remaining == np_max + 1 ? (remaining + 1) / 2 : np_max;
}
constexpr Index kRowChunk = 16 * kMaxRows;

// The loop nest shared by every packed block (f32/int8 here, bf16 in the AVX-512 file): per chunk
// of row_chunk rows, per block of k units (k values, or k pairs for bf16; blocks of at most
// k_block, split evenly), per group of panels (next_panels), per row block of kMaxRows rows:
// fn(m0, mr, k0, kn, p, np). Panels narrow to kSmallPanels-wide groups when M <= kSmallRows.
template <class Fn>
void for_each_tile(Index M, Index K, Index k_block, Index row_chunk, Index p0, Index p1, Fn&& fn) {
  const Index np_max = M <= kSmallRows ? kSmallPanels : kMainPanels;
  const Index kblocks = (K + k_block - 1) / k_block;
  const Index kc = (K + kblocks - 1) / kblocks;
  for (Index c0 = 0; c0 < M; c0 += row_chunk) {
    const Index c1 = M - c0 < row_chunk ? M : c0 + row_chunk;
    for (Index k0 = 0; k0 < K; k0 += kc) {
      const Index kn = K - k0 < kc ? K - k0 : kc;
      for (Index p = p0, np = 0; p < p1; p += np) {
        np = next_panels(p1 - p, np_max);
        for (Index m0 = c0; m0 < c1; m0 += kMaxRows) fn(m0, int(c1 - m0 < kMaxRows ? c1 - m0 : kMaxRows), k0, kn, p, np);
      }
    }
  }
}

template <class WT>
void packed_block(const PackedBlockArgs& a) {
  const Index W = Ops::W;
  const Index pstride = a.K * W;
  for_each_tile(a.M, a.K, kKBlock, kRowChunk, a.p0, a.p1, [&](Index m0, int mr, Index k0, Index kn, Index p, Index np) {
    const Index col = p * W;
    TileArgs t{.K = kn,
               .x = a.x + m0 * a.ldx + k0,
               .ldx = a.ldx,
               .w = static_cast<const WT*>(a.w) + p * pstride + k0 * W,
               .pstride = pstride,
               .scale = a.scale ? a.scale + col : nullptr,
               .ncols = a.N - col < np * W ? a.N - col : np * W,
               .b = a.b ? a.b + col : nullptr,
               .first = k0 == 0,
               .last = k0 + kn == a.K,
               .relu = a.relu,
               .y = a.y + m0 * a.ldy + col,
               .ldy = a.ldy};
    if (mr <= kSmallRows) kSmallTiles<WT>[np - 1][mr - 1](t);
    else kMainTiles<WT>[np - 1][mr - 1](t);
  });
}

void f32_packed_block(const PackedBlockArgs& a) { packed_block<float>(a); }
void int8_packed_block(const PackedBlockArgs& a) { packed_block<signed char>(a); }
