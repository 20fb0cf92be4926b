// Packed-weight linear layers: dispatch, packing, the threaded driver and the weight cache
// (meaning: include/mtrank/kernels/packed_linear.hpp). The ISA files only hold tile loops.
#include "mtrank/kernels/packed_linear.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "kernels/isa_tables.hpp"
#include "mtrank/core/error.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/bf16.hpp"

namespace mtrank::kernels {

extern const PackedLinearKernels kPackedLinearRef, kPackedLinearAvx2, kPackedLinearAvx512;

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::f32: return "f32";
    case WeightFormat::bf16: return "bf16";
    case WeightFormat::int8: return "int8";
  }
  return "?";
}

const PackedLinearKernels& packed_linear_kernels(Isa isa) {
  return pick_table(isa, kPackedLinearRef, MTRANK_AVX2_TABLE(kPackedLinearAvx2), MTRANK_AVX512_TABLE(kPackedLinearAvx512));
}

const PackedLinearKernels& packed_linear_kernels() {
  static const PackedLinearKernels& table = packed_linear_kernels(active_isa());
  return table;
}

bool packed_bf16_supported(const PackedLinearKernels& k) {
  if (!k.bf16_block) return false;
  if (&k == &kPackedLinearRef) return true;  // scalar emulation runs anywhere
  return cpu_features().avx512_bf16;
}

// ---- packing ----

PackedMatrix::PackedMatrix(const float* w, Index N, Index K, Index ldw, WeightFormat format,
                           const PackedLinearKernels& kernels)
    : N_(N), K_(K), format_(format), kernels_(&kernels) {
  require(N > 0 && K > 0, "PackedMatrix: expected N > 0 and K > 0, got N=", N, " K=", K);
  require(ldw >= K, "PackedMatrix: row stride ", ldw, " < K ", K);
  require(w != nullptr, "PackedMatrix: null weights");
  if (format == WeightFormat::f32) {
    const Index P = kernels.panel;
    const Index panels = (N + P - 1) / P;
    bytes_ = sizeof(float) * static_cast<std::size_t>(panels * K * P);
    data_.reset(detail::aligned_alloc_bytes(bytes_));
    auto* d = static_cast<float*>(data_.get());
    for (Index p = 0; p < panels; ++p)
      for (Index k = 0; k < K; ++k)
        for (Index j = 0; j < P; ++j) {
          const Index n = p * P + j;
          d[(p * K + k) * P + j] = n < N ? w[n * ldw + k] : 0.0f;
        }
  } else if (format == WeightFormat::int8) {
    const Index P = kernels.panel;
    const Index panels = (N + P - 1) / P;
    const std::size_t qbytes = (static_cast<std::size_t>(panels * K * P) + 63) / 64 * 64;
    bytes_ = qbytes + sizeof(float) * static_cast<std::size_t>(panels * P);
    data_.reset(detail::aligned_alloc_bytes(bytes_));
    auto* q = static_cast<signed char*>(data_.get());
    auto* scale = reinterpret_cast<float*>(static_cast<char*>(data_.get()) + qbytes);
    scales_ = scale;
    for (Index n = 0; n < panels * P; ++n) {
      float amax = 0.0f;
      if (n < N)
        for (Index k = 0; k < K; ++k) {
          const float v = w[n * ldw + k];
          if (!std::isfinite(v)) fail("PackedMatrix: weight [", n, ", ", k, "] is ", v, "; int8 weights need finite values");
          amax = std::max(amax, std::abs(v));
        }
      scale[n] = n < N ? (amax > 0.0f ? amax / 127.0f : 1.0f) : 0.0f;
    }
    for (Index p = 0; p < panels; ++p)
      for (Index k = 0; k < K; ++k)
        for (Index j = 0; j < P; ++j) {
          const Index n = p * P + j;
          const float v = n < N ? std::nearbyint(w[n * ldw + k] / scale[n]) : 0.0f;
          q[(p * K + k) * P + j] = static_cast<signed char>(std::clamp(v, -127.0f, 127.0f));
        }
  } else {
    require(packed_bf16_supported(kernels), "PackedMatrix: bf16 weights need AVX512_BF16 (kernel table '",
            kernels.isa, "' cannot run them)");
    constexpr Index P = 16;
    const Index panels = (N + P - 1) / P, KP = (K + 1) / 2;
    bytes_ = sizeof(std::uint16_t) * static_cast<std::size_t>(panels * KP * P * 2);
    data_.reset(detail::aligned_alloc_bytes(bytes_));
    auto* d = static_cast<std::uint16_t*>(data_.get());
    for (Index p = 0; p < panels; ++p)
      for (Index kk = 0; kk < KP; ++kk)
        for (Index j = 0; j < P; ++j)
          for (Index t = 0; t < 2; ++t) {
            const Index n = p * P + j, k = 2 * kk + t;
            d[((p * KP + kk) * P + j) * 2 + t] = n < N && k < K ? f32_to_bf16(w[n * ldw + k]) : std::uint16_t(0);
          }
  }
}

// ---- driver ----

namespace {

// The activations the tiles do not apply in registers (all but ReLU), per row of the block.
void apply_activation(FusedActivation act, float* y, Index ldy, Index rows, Index c0, Index c1) {
  if (act == FusedActivation::identity || act == FusedActivation::relu || c1 <= c0) return;
  for (Index r = 0; r < rows; ++r) apply_fused_activation(act, y + r * ldy + c0, c1 - c0);
}

// Below this many multiply-adds one thread does the whole call (a fork/join costs a few us).
constexpr double kMinParallelMacs = 1 << 19;
// Row chunks are multiples of this (any tile height divides the work the same way: the split
// never changes a result).
constexpr Index kRowGrain = 16;

}  // namespace

void packed_linear(Index M, const float* x, Index ldx, const PackedMatrix& w, const float* b, FusedActivation act,
                   float* y, Index ldy) {
  require(!w.empty(), "packed_linear: the weights are not packed");
  const Index K = w.cols(), N = w.rows();
  if (M < 0) fail("packed_linear: expected M >= 0, got ", M);
  if (ldx < K) fail("packed_linear: ldx ", ldx, " < K ", K);
  if (ldy < N) fail("packed_linear: ldy ", ldy, " < N ", N);
  if (M == 0) return;
  const PackedLinearKernels& k = *w.kernels();
  const bool bf16 = w.format() == WeightFormat::bf16;
  PackedBlockArgs base{.M = M, .K = K, .N = N, .x = x, .ldx = ldx, .w = w.data(), .b = b, .scale = w.scales(),
                       .relu = act == FusedActivation::relu, .y = y, .ldy = ldy};
  if (bf16) {
    // x rounded to bf16 once per call, rows padded to an even length (the odd tail pairs with 0).
    thread_local std::vector<std::uint16_t> xbuf;
    const Index ldxb = 2 * ((K + 1) / 2);
    const std::size_t need = static_cast<std::size_t>(M * ldxb);
    if (xbuf.size() < need) xbuf.resize(need);
    for (Index r = 0; r < M; ++r) {
      std::uint16_t* row = xbuf.data() + r * ldxb;
      f32_to_bf16(x + r * ldx, row, K);
      if (ldxb != K) row[K] = 0;
    }
    base.xb = xbuf.data();
    base.ldxb = ldxb;
  }
  auto block = bf16 ? k.bf16_block : w.format() == WeightFormat::int8 ? k.int8_block : k.f32_block;
  // bf16: x row blocks are re-laid out per thread (PackedBlockArgs::scratch); grown, never shrunk.
  auto scratch = [K, bf16](Index rows) -> float* {
    if (!bf16) return nullptr;
    thread_local std::vector<float> buf;
    const std::size_t need = static_cast<std::size_t>(rows * K);
    if (buf.size() < need) buf.resize(need);
    return buf.data();
  };
  const Index panel = bf16 ? 16 : k.panel;
  const Index panels = (N + panel - 1) / panel;

  int threads = num_threads();
  if (threads > 1 && (omp_in_parallel() || double(M) * double(N) * double(K) < kMinParallelMacs)) threads = 1;
  if (threads == 1) {
    base.p0 = 0, base.p1 = panels;
    base.scratch = scratch(M);
    block(base);
    apply_activation(act, y, ldy, M, 0, N);
    return;
  }
  // Split rows when there are enough of them, column panels otherwise (batch 1 .. a few rows).
  const bool by_rows = M >= kRowGrain * threads;
  const Index units = by_rows ? (M + kRowGrain - 1) / kRowGrain : panels;
  threads = static_cast<int>(std::min<Index>(threads, units));
  apply_thread_setting();
#pragma omp parallel num_threads(threads)
  {
    const Index t = omp_get_thread_num(), nt = omp_get_num_threads();
    const Index u0 = units * t / nt, u1 = units * (t + 1) / nt;
    PackedBlockArgs a = base;
    Index r0 = 0, r1 = M, c0 = 0, c1 = N;
    if (by_rows) {
      r0 = std::min(M, u0 * kRowGrain), r1 = std::min(M, u1 * kRowGrain);
      a.M = r1 - r0;
      a.x = x + r0 * ldx;
      if (bf16) a.xb = base.xb + r0 * base.ldxb;
      a.y = y + r0 * ldy;
      a.p0 = 0, a.p1 = panels;
    } else {
      a.p0 = u0, a.p1 = u1;
      c0 = std::min(N, u0 * panel), c1 = std::min(N, u1 * panel);
    }
    if (a.M > 0 && a.p1 > a.p0) {
      a.scratch = scratch(a.M);
      block(a);
      apply_activation(act, a.y, ldy, r1 - r0, c0, c1);
    }
  }
}

// ---- cache ----

namespace {
std::atomic<bool> g_packed_inference{true};
}  // namespace

void set_packed_inference(bool on) { g_packed_inference.store(on); }
bool packed_inference() { return g_packed_inference.load(std::memory_order_relaxed); }

WeightFormat inference_format(Index M, ServingWeights w) {
  switch (w) {
    case ServingWeights::f32: return WeightFormat::f32;
    case ServingWeights::int8: return WeightFormat::int8;
    case ServingWeights::bf16: {
      // bf16_available() (not only packed_bf16_supported): the scalar table's bf16 emulation is a
      // test oracle, not a serving path, so MTRANK_ISA=ref / avx2 serve such a plan in f32.
      static const bool bf16_ok = bf16_available() && packed_bf16_supported(packed_linear_kernels());
      return M <= kBf16MaxRows && bf16_ok ? WeightFormat::bf16 : WeightFormat::f32;
    }
  }
  return WeightFormat::f32;
}

struct PackedWeightCache::Impl {
  mutable std::shared_mutex mutex;
  const float* src = nullptr;
  Index N = 0, K = 0;
  std::uint64_t version = 0;
  // Shared with the serving passes running on them: dropping a copy here never frees it under a
  // reader (see the header).
  std::vector<std::shared_ptr<const PackedMatrix>> copies;

  std::shared_ptr<const PackedMatrix> find(const float* w, Index n, Index k, std::uint64_t v, WeightFormat f,
                                           const PackedLinearKernels* table) const {
    if (src != w || N != n || K != k || version != v) return nullptr;
    for (const auto& c : copies)
      if (c->format() == f && c->kernels() == table) return c;
    return nullptr;
  }
};

PackedWeightCache::PackedWeightCache() : impl_(std::make_unique<Impl>()) {}
PackedWeightCache::~PackedWeightCache() = default;

std::size_t PackedWeightCache::copies() const {
  std::shared_lock lock(impl_->mutex);
  return impl_->copies.size();
}

std::shared_ptr<const PackedMatrix> PackedWeightCache::get(const float* w, Index N, Index K, WeightFormat format,
                                                           std::uint64_t version) {
  const PackedLinearKernels* table = &packed_linear_kernels();
  Impl& im = *impl_;
  {
    std::shared_lock lock(im.mutex);
    if (auto p = im.find(w, N, K, version, format, table)) return p;
  }
  std::unique_lock lock(im.mutex);
  if (auto p = im.find(w, N, K, version, format, table)) return p;
  if (im.src != w || im.N != N || im.K != K || im.version != version) {
    im.copies.clear();  // passes still running on an old copy hold their own reference
    im.src = w, im.N = N, im.K = K, im.version = version;
  }
  auto p = std::make_shared<const PackedMatrix>(w, N, K, K, format, *table);
  im.copies.push_back(p);
  return p;
}

}  // namespace mtrank::kernels
