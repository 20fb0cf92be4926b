// bf16 inference for linear layers: weights converted once to bfloat16, inputs converted per call,
// products accumulated in f32, f32 output (oneDNN bf16 matmul, AVX512-BF16 vdpbf16ps kernels).
//
//   f32_to_bf16(v):  the upper 16 bits of v rounded to nearest even (NaN stays a quiet NaN)
//   bf16_linear_fused: y[m, n] = act(sum_k bf16(x[m, k]) * Wb[n, k] + b[n])   (f32 accumulation)
//
// bf16_linear_fused is the oneDNN path, kept as a kernel (bench_linear compares it with the
// packed bf16 tiles). Serving passes of nn::Linear / nn::Mlp do not call it: with a model whose
// serving plan is ServingWeights::bf16 they run kernels::packed_linear on bf16 weights packed once
// (kernels/packed_linear.hpp). Converted weights live in the caller's Bf16Weights and are rebuilt
// lazily when the weight pointer or shape changes, or after Bf16Weights::invalidate() (call it
// after changing W in place; nothing process-wide marks copies stale). Error vs f32: see
// docs/onednn.md.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>

#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/linear_fused.hpp"

namespace mtrank::kernels {

/// The CPU has AVX512_BF16 (with OS support) and MTRANK_ISA does not cap below avx512: the
/// condition for bf16 serving weights (models::Model::set_serving_weights checks it).
bool bf16_available();

inline std::uint16_t f32_to_bf16(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_to_f32(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
void f32_to_bf16(const float* src, std::uint16_t* dst, Index n);

/// bf16 copies of one f32 weight matrix W [N, K], each in the blocked layout a oneDNN bf16 matmul
/// primitive asked for (usually one layout per weight; a few when batch sizes pick different
/// kernels). Converted on first use, rebuilt when the source pointer / shape changes or after
/// invalidate(). Safe to use from many threads at once (a shared lock on the lookup); a call
/// running on a copy keeps it alive (oneDNN memory handles are reference counted), so
/// invalidate() never frees memory under a concurrent reader.
class Bf16Weights {
 public:
  Bf16Weights();
  ~Bf16Weights();
  Bf16Weights(const Bf16Weights&) = delete;
  Bf16Weights& operator=(const Bf16Weights&) = delete;
  /// Number of converted copies held (tests).
  std::size_t copies() const;
  /// Marks these copies stale: the next call converts W again (after W was changed in place).
  void invalidate();
  struct Impl;

 private:
  friend Impl& bf16_impl(Bf16Weights&);
  std::unique_ptr<Impl> impl_;
};

/// y = act(x W^T + b) with W rounded to bf16 (copy held in `wb`), x rounded to bf16 per call
/// (per-thread buffer), f32 accumulation and output. W [N, K] f32 (PyTorch layout).
/// Requires bf16_available().
void bf16_linear_fused(Index M, Index K, Index N, const float* x, Index ldx, const float* w, Bf16Weights& wb,
                       const float* b, FusedActivation act, float* y, Index ldy);

}  // namespace mtrank::kernels
