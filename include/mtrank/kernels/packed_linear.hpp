// Linear layers on pre-packed weights (inference): mtrank's own GEMM for y = act(x W^T + b).
//
//   y[m, n] = act(sum_k x[m, k] * W[n, k] + b[n])      m < M, n < N, W [N, K] (PyTorch layout)
//
// Why: in inference the weights do not change between calls, so they can be rearranged once into
// the order the register-blocked micro-kernel reads them (column panels, k-major), instead of
// every call re-packing them (what a BLAS sgemm does internally). The kernels keep a tile of
// outputs in registers over the whole K, add the bias and apply ReLU before the single store, and
// never allocate: the serving path stays allocation-free.
//
// Weight formats (PackedMatrix::format):
//   f32   panels of `panel` columns (the vector width of the ISA: 16 on AVX-512, 8 on AVX2, 16 for
//         the scalar reference): data[p][k][j] = W[p * panel + j][k], zero beyond N.
//   bf16  (AVX512-BF16 only) panels of 16 columns holding k in pairs:
//         data[p][kk][j][t] = bf16(W[p * 16 + j][2 kk + t]), zero beyond N and K. x is rounded to
//         bf16 per call; products are summed in f32 (vdpbf16ps), output f32. Error: see
//         docs/kernels.md (bounded by a test against the f32 result).
//   int8  weight-only quantisation (every ISA): f32 panel layout with int8 values,
//         q[j][k] = round(W[j][k] / s_j), s_j = max_k |W[j][k]| / 127 (per output column, 1 for an
//         all-zero row); y = s_j * sum_k x[k] q[j][k] + b[j] with x and the sums in f32. A quarter
//         of the f32 weight bytes: small batches, which stream all weights per call, read 4x less
//         (an MMoE's 5 MB of experts drop to 1.3 MB and fit in L2). Error per output
//         <= s_j / 2 * sum_k |x[k]| (tested).
//
// Each ISA has its own f32 panel width, so a PackedMatrix is packed for one kernel table and must
// be used with that table (checked). The activations other than ReLU are applied per row right
// after a row block is finished (the activation kernels of kernels/activation.hpp), while it is in
// L1. Threads: num_threads() split the output tiles (rows, or column panels for small M); the
// result does not depend on the thread count (every output element is summed in the same order).
#pragma once
#include <cstdint>
#include <memory>

#include "mtrank/core/context.hpp"
#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/linear_fused.hpp"

namespace mtrank::kernels {

enum class WeightFormat { f32, bf16, int8 };
const char* weight_format_name(WeightFormat f);

/// Arguments of one tile-range call: rows [0, M) of x, column panels [p0, p1).
struct PackedBlockArgs {
  Index M = 0, K = 0, N = 0;
  const float* x = nullptr;  // f32 rows (f32 format)
  Index ldx = 0;
  const std::uint16_t* xb = nullptr;  // bf16 rows of 2 * ceil(K / 2) values, odd tail zero (bf16 format)
  Index ldxb = 0;                     // in bf16 elements
  const void* w = nullptr;            // PackedMatrix::data()
  Index p0 = 0, p1 = 0;
  const float* b = nullptr;      // [N] or nullptr
  const float* scale = nullptr;  // int8: per-column scales [panels * panel]
  bool relu = false;
  float* y = nullptr;
  Index ldy = 0;
  // bf16 only: per-thread scratch of at least M * K floats, where the bf16 pairs of x are copied
  // k-major per row block (x[block][kk][row]) so that a tile reads one stream of 32-bit pairs.
  float* scratch = nullptr;
};
inline constexpr Index kPackedScratchRows = 16;  // the tallest tile of any ISA

struct PackedLinearKernels {
  const char* isa;
  Index panel;  // f32 panel width (columns)
  void (*f32_block)(const PackedBlockArgs& a);
  void (*bf16_block)(const PackedBlockArgs& a);  // nullptr when the ISA has no bf16 dot products
  void (*int8_block)(const PackedBlockArgs& a);  // int8 weights in the f32 panel layout
};

/// The table for the active ISA (MTRANK_ISA cap), and for a given level (tests).
const PackedLinearKernels& packed_linear_kernels();
const PackedLinearKernels& packed_linear_kernels(Isa isa);
/// bf16 blocks need AVX512-BF16 in the CPU (with OS support) and the avx512 table.
bool packed_bf16_supported(const PackedLinearKernels& k);

/// W [N, K] packed for one kernel table. Movable, not copyable.
class PackedMatrix {
 public:
  PackedMatrix() = default;
  /// Packs W (row stride ldw >= K) for `kernels` in `format`. Throws when bf16 is asked of a
  /// table without bf16 blocks.
  PackedMatrix(const float* w, Index N, Index K, Index ldw, WeightFormat format,
               const PackedLinearKernels& kernels = packed_linear_kernels());
  Index rows() const { return N_; }  // N (outputs)
  Index cols() const { return K_; }  // K (inputs)
  WeightFormat format() const { return format_; }
  const PackedLinearKernels* kernels() const { return kernels_; }
  const void* data() const { return data_.get(); }
  /// int8: the per-column scales (zero-padded to whole panels); nullptr otherwise.
  const float* scales() const { return scales_; }
  std::size_t bytes() const { return bytes_; }
  bool empty() const { return !data_; }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  Index N_ = 0, K_ = 0;
  WeightFormat format_ = WeightFormat::f32;
  const PackedLinearKernels* kernels_ = nullptr;
  std::unique_ptr<void, Free> data_;
  const float* scales_ = nullptr;  // inside data_ (int8)
  std::size_t bytes_ = 0;
};

/// y = act(x W^T + b) with W packed (its kernel table is used). x [M, K] row stride ldx,
/// y [M, N] row stride ldy (may be a column block of a wider matrix), b [N] or nullptr.
/// bf16 format: x is rounded to bf16 into a per-thread buffer (grown, never shrunk).
void packed_linear(Index M, const float* x, Index ldx, const PackedMatrix& w, const float* b, FusedActivation act,
                   float* y, Index ldy);

/// The weight-format copies one float Linear keeps for its serving passes. A copy is keyed on the
/// weight pointer, the shape, the format, the kernel table and the weights version of the arena
/// that owns W (ParameterArena::weights_version(): moved by every optimiser step on that arena,
/// every io::load_arena into it and mark_weights_changed()). Nothing process-wide is involved, so
/// changing one model's weights never touches another model's copies.
///
/// Lifetime: get() hands out shared ownership. When the version (or pointer or shape) moves, the
/// cache drops its references to the old copies and packs new ones, but a serving pass still
/// running on an old copy keeps it alive until its packed_linear call returns: replacing copies
/// cannot free memory under a concurrent reader. (Results computed while the weights themselves
/// are being rewritten are still meaningless: a served model's weights must not change while
/// that model serves; other models may load or train freely.) Safe to use from many threads at
/// once: a shared lock on the lookup, an exclusive one only to pack. The cost of the shared
/// ownership on the hit path is one atomic increment and decrement per Linear call.
class PackedWeightCache {
 public:
  PackedWeightCache();
  ~PackedWeightCache();
  PackedWeightCache(const PackedWeightCache&) = delete;
  PackedWeightCache& operator=(const PackedWeightCache&) = delete;
  /// The packed copy of W [N, K] (contiguous) in `format` for the active kernel table, for the
  /// weights at `version` (the owning arena's weights_version()); packs on a miss.
  std::shared_ptr<const PackedMatrix> get(const float* w, Index N, Index K, WeightFormat format,
                                          std::uint64_t version);
  /// Number of packed copies held (tests).
  std::size_t copies() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Inference forward passes of float Linear layers use packed weights (default on). Off routes
/// them through f32_linear_fused (sgemm), as in training: a process-wide diagnostic switch (it
/// selects no format; the format is each model's serving plan, Context::weights).
void set_packed_inference(bool on);
bool packed_inference();
/// With ServingWeights::bf16, batches up to this many rows use bf16 weights: there the
/// weight bytes dominate and bf16 halves them. This CPU family's vdpbf16ps does 32 multiply-adds
/// per 2 cycles against 2 x 16 per cycle for f32 FMA (bench_machine_limits: 105.9 vs 211.7
/// GFLOP/s), so compute-bound batches stay on f32 weights. Measured on the MMoE benchmark
/// (5.3 MB of f32 weights, read from L3): batch 4 runs 31.9k samples/s in bf16 against 22.4k in
/// f32, batch 8 33.7k against 45.2k (bench_models --mode infer_bf16 / infer).
inline constexpr Index kBf16MaxRows = 4;

/// The packed format a serving pass of M rows uses under a model's serving plan `w`
/// (Context::weights): f32 -> f32; int8 -> int8 for every M; bf16 -> bf16 for M <= kBf16MaxRows
/// when bf16_available() (kernels/bf16.hpp), f32 otherwise. A pure function: several models in
/// one process (or one model under two contexts) may use different formats at the same time;
/// each Linear keeps one packed copy per format it was asked for.
WeightFormat inference_format(Index M, ServingWeights w);

}  // namespace mtrank::kernels
