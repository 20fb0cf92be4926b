// bf16 inference: conversion rounding, bf16_linear_fused error against f32, weight-copy caching and
// the Linear / Mlp integration (a bf16 serving plan). Skips (with a warning) without AVX512_BF16.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "mtrank/core/cpu.hpp"
#include "mtrank/kernels/bf16.hpp"
#include "mtrank/nn/mlp.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

TEST_CASE("f32_to_bf16 rounds to nearest even and keeps NaN", "[kernels][bf16]") {
  REQUIRE(f32_to_bf16(1.0f) == 0x3f80);
  REQUIRE(bf16_to_f32(f32_to_bf16(1.0f + 1.0f / 256)) == 1.0f);         // tie -> even
  REQUIRE(bf16_to_f32(f32_to_bf16(1.0f + 3.0f / 256)) == 1.0f + 1.0f / 64);  // tie -> even (up)
  REQUIRE(bf16_to_f32(f32_to_bf16(1.0f + 1.5f / 256)) == 1.0f + 1.0f / 128);
  REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  REQUIRE(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity()))));
  // The array form (AVX512-BF16 when available) agrees with the scalar one on normal numbers.
  Rng rng(1);
  std::vector<float> v(1000);
  for (auto& x : v) x = static_cast<float>(rng.normal(0, 10));
  std::vector<std::uint16_t> out(v.size());
  f32_to_bf16(v.data(), out.data(), Index(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) REQUIRE(out[i] == f32_to_bf16(v[i]));
}

TEST_CASE("bf16_linear_fused is within 1e-2 of f32", "[kernels][bf16]") {
  if (!bf16_available()) {
    WARN("skipped: no AVX512_BF16 (or MTRANK_ISA caps below avx512)");
    const Index M = 1, K = 2, N = 1;
    std::vector<float> x(2), w(2), y(1);
    Bf16Weights wb;
    REQUIRE_THROWS_AS(bf16_linear_fused(M, K, N, x.data(), K, w.data(), wb, nullptr, FusedActivation::identity, y.data(), N), Error);
    return;
  }
  const Index M = GENERATE(1, 2, 5, 64);
  const Index K = GENERATE(1, 7, 33, 100, 512);
  const Index N = GENERATE(1, 3, 17, 256);
  Rng rng(static_cast<std::uint64_t>(M + 31 * K + 977 * N));
  std::vector<float> x(static_cast<std::size_t>(M * K)), w(static_cast<std::size_t>(N * K)), b(static_cast<std::size_t>(N));
  for (auto& v : x) v = static_cast<float>(rng.normal());  // unit-scale inputs
  for (auto& v : w) v = static_cast<float>(rng.normal(0, 1.0 / std::sqrt(double(K))));
  for (auto& v : b) v = static_cast<float>(rng.normal(0, 0.1));
  for (auto act : {FusedActivation::identity, FusedActivation::relu, FusedActivation::tanh}) {
    CAPTURE(M, K, N, fused_activation_name(act));
    std::vector<float> want(static_cast<std::size_t>(M * N)), got(want.size());
    f32_linear_fused_ref(M, K, N, x.data(), K, w.data(), b.data(), act, want.data(), N);
    Bf16Weights wb;
    bf16_linear_fused(M, K, N, x.data(), K, w.data(), wb, b.data(), act, got.data(), N);
    double num = 0, den = 0;
    for (Index m = 0; m < M; ++m)
      for (Index n = 0; n < N; ++n) {
        double terms = std::abs(b[n]);
        for (Index k = 0; k < K; ++k) terms += std::abs(double(x[m * K + k]) * w[n * K + k]);
        const double e = got[m * N + n] - want[m * N + n];
        // Each product has both factors rounded to 8 significant bits: rel. error <= 2 * 2^-8.
        REQUIRE(std::abs(e) <= 1e-2 * terms + 1e-6);
        num += e * e;
        den += double(want[m * N + n]) * want[m * N + n];
      }
    // Normwise relative error vs f32 (over >= 16 outputs: a single output can cancel to ~0, where
    // only the elementwise bound above is meaningful).
    if (M * N >= 16) REQUIRE(std::sqrt(num / den) <= 1e-2);
    REQUIRE(wb.copies() == 1);
  }
}

TEST_CASE("bf16 weight copies: reused, rebuilt after invalidate() or a new pointer", "[kernels][bf16]") {
  if (!bf16_available()) {
    WARN("skipped: no AVX512_BF16");
    return;
  }
  const Index M = 2, K = 16, N = 8;
  std::vector<float> x(M * K, 1.0f), w(N * K, 0.5f), y(M * N);
  Bf16Weights wb;
  bf16_linear_fused(M, K, N, x.data(), K, w.data(), wb, nullptr, FusedActivation::identity, y.data(), N);
  REQUIRE(y[0] == 8.0f);
  w.assign(w.size(), 0.25f);  // changed without invalidation: the stale copy is still used (contract)
  bf16_linear_fused(M, K, N, x.data(), K, w.data(), wb, nullptr, FusedActivation::identity, y.data(), N);
  REQUIRE(y[0] == 8.0f);
  Bf16Weights other;
  bf16_linear_fused(M, K, N, x.data(), K, w.data(), other, nullptr, FusedActivation::identity, y.data(), N);
  REQUIRE(y[0] == 4.0f);  // another object converts on its own
  other.invalidate();     // and invalidating it leaves wb's copy alone
  bf16_linear_fused(M, K, N, x.data(), K, w.data(), wb, nullptr, FusedActivation::identity, y.data(), N);
  REQUIRE(y[0] == 8.0f);
  wb.invalidate();
  bf16_linear_fused(M, K, N, x.data(), K, w.data(), wb, nullptr, FusedActivation::identity, y.data(), N);
  REQUIRE(y[0] == 4.0f);
  std::vector<float> w2(N * K, 1.0f);
  bf16_linear_fused(M, K, N, x.data(), K, w2.data(), wb, nullptr, FusedActivation::identity, y.data(), N);
  REQUIRE(y[0] == 16.0f);
  REQUIRE(wb.copies() == 1);
}

TEST_CASE("Mlp serving with bf16 weights stays close to f32, training and plain inference never use bf16",
          "[kernels][bf16][nn]") {
  if (!bf16_available()) {
    WARN("skipped: no AVX512_BF16");
    return;
  }
  ParameterArenaT<float> arena(7);
  nn::Mlp<float> mlp(arena, "mlp", {.in = 64, .layers = {128, 64, 1}, .activation = nn::ActivationKind::relu,
                                    .activate_last = false});
  Rng rng(2);
  constexpr Index B = kBf16MaxRows;  // bf16 weights serve batches of at most this many rows
  auto x = mtrank::testing::random_tensor<float>(Shape{B, 64}, rng);
  nn::Mlp<float>::Workspace ws;
  const auto y32 = mlp.forward(x.matrix(), ws);
  std::vector<float> f32(y32.data, y32.data + B);
  std::vector<float> b16;
  {
    const auto y = mlp.forward(x.matrix(), ws, Context::serving(ServingWeights::bf16));
    b16.assign(y.data, y.data + B);
    const auto yi = mlp.forward(x.matrix(), ws);  // plain inference reads the live f32 weights
    for (Index i = 0; i < B; ++i) REQUIRE(yi(i, 0) == f32[i]);
    Rng r(3);
    const auto yt = mlp.forward(x.matrix(), ws, Context::train(r));  // training: f32
    for (Index i = 0; i < B; ++i) REQUIRE(yt(i, 0) == f32[i]);
  }
  double num = 0, den = 0;
  for (Index i = 0; i < B; ++i) {
    num += (b16[i] - f32[i]) * (b16[i] - f32[i]);
    den += f32[i] * f32[i];
  }
  REQUIRE(std::sqrt(num / den) <= 2e-2);
  REQUIRE(b16 != f32);  // the bf16 path really ran
  const auto y_after = mlp.forward(x.matrix(), ws);  // plain inference after it: f32 bits
  for (Index i = 0; i < B; ++i) REQUIRE(y_after(i, 0) == f32[i]);
}
