// bf16 inference for linear layers: weights converted once to bfloat16, inputs converted per call,
// products accumulated in f32, f32 output (oneDNN bf16 matmul, AVX512-BF16 vdpbf16ps kernels).
//
//   f32_to_bf16(v):  the upper 16 bits of v rounded to nearest even (NaN stays a quiet NaN)
//   bf16_linear_fused: y[m, n] = act(sum_k bf16(x[m, k]) * Wb[n, k] + b[n])   (f32 accumulation)
//
// Opt-in and inference only: set_bf16_inference(true) makes nn::Linear / nn::Mlp use it for
// forward passes with ctx.training == false (never in training, never for double). Converted
// weights live in a Bf16Weights held by each Linear and are rebuilt lazily when the weight pointer
// changes or when the bf16 epoch changes; set_bf16_inference(true) and invalidate_bf16_weights()
// bump the epoch. Contract: weights must not be modified while bf16 inference is on without
// calling invalidate_bf16_weights() afterwards (a serving model's weights are immutable after load;
// do not call it concurrently with forward passes). Error vs f32: see docs/onednn.md.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>

#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/linear_fused.hpp"

namespace mtrank::kernels {

/// The CPU has AVX512_BF16 (with OS support) and MTRANK_ISA does not cap below avx512.
bool bf16_available();
/// Turns bf16 inference on or off (process-wide). Turning it on throws mtrank::Error when
/// bf16_available() is false, and invalidates every converted weight copy.
void set_bf16_inference(bool on);
bool bf16_inference();
/// Marks every converted weight copy stale (call after changing weights while bf16 is on).
void invalidate_bf16_weights();
std::uint64_t bf16_epoch();

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
/// kernels). Converted on first use, rebuilt when the source pointer / shape or the bf16 epoch
/// changes. Safe to use from many threads at once (a shared lock on the lookup).
class Bf16Weights {
 public:
  Bf16Weights();
  ~Bf16Weights();
  Bf16Weights(const Bf16Weights&) = delete;
  Bf16Weights& operator=(const Bf16Weights&) = delete;
  /// Number of converted copies held (tests).
  std::size_t copies() const;
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
