// Fused DIN attention forward / backward: GFLOP/s of the attention MLP (the decomposed first
// layer 2·d·h1 + second 2·h1·h2 + score 2·h2 per behaviour, x2 for the backward's two products
// per layer) and behaviours/s. Arguments: ISA (0 ref, 1 avx2, 2 avx512), L, direction (0 fwd,
// 1 bwd). Shapes of din_L50 / din_L200: B = 256, d = 64, h1 = 80, h2 = 40, PReLU, every
// sequence full.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/kernels/din_attention.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
constexpr Index kB = 256, kD = 64, kH1 = 80, kH2 = 40;

void BM_DinAttention(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const Index L = state.range(1);
  const bool bwd = state.range(2) != 0;
  Rng rng(1);
  auto vec = [&](Index n, double s) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& e : v) e = static_cast<float>(s * rng.normal());
    return v;
  };
  auto w1 = vec(kH1 * 4 * kD, 0.1), b1 = vec(kH1, 0.1), a1 = vec(kH1, 0.1), w2 = vec(kH2 * kH1, 0.1),
       b2 = vec(kH2, 0.1), a2 = vec(kH2, 0.1), w3 = vec(kH2, 0.1), b3 = vec(1, 0.1);
  auto q = vec(kB * kD, 1), k = vec(kB * L * kD, 1), dy = vec(kB * kD, 1);
  std::vector<Index> count(static_cast<std::size_t>(kB), L);
  DinAttentionArgs a;
  a.batch = kB, a.padded_len = L, a.dim = kD, a.h1 = kH1, a.h2 = kH2;
  DinAttentionWeights<float> w;
  w.w1 = w1.data(), w.b1 = b1.data(), w.act1 = a1.data(), w.w2 = w2.data(), w.b2 = b2.data(), w.act2 = a2.data(),
  w.w3 = w3.data(), w.b3 = b3.data();
  std::vector<float> gw1(w1.size()), gb1(b1.size()), ga1(a1.size()), gw2(w2.size()), gb2(b2.size()), ga2(a2.size()),
      gw3(w3.size()), gb3(1);
  DinAttentionGrads<float> g{gw1.data(), gb1.data(), ga1.data(), gw2.data(), gb2.data(), ga2.data(), gw3.data(), gb3.data()};
  std::vector<float> pooled(static_cast<std::size_t>(kB * kD)), wts(static_cast<std::size_t>(kB * L)),
      saved(static_cast<std::size_t>(kB * L * (kH1 + kH2))), dq(pooled.size()), dk(k.size()),
      scratch(static_cast<std::size_t>(din_attention_scratch_size(a)));
  const DinAttentionKernels& kt = din_attention_kernels(isa);
  kt.f32_din_attention_forward(a, w, q.data(), k.data(), nullptr, count.data(), pooled.data(), wts.data(), saved.data(),
                               scratch.data());
  for (auto _ : state) {
    if (bwd)
      kt.f32_din_attention_backward(a, w, q.data(), k.data(), nullptr, count.data(), wts.data(), saved.data(), dy.data(),
                                    dq.data(), dk.data(), g, scratch.data());
    else
      kt.f32_din_attention_forward(a, w, q.data(), k.data(), nullptr, count.data(), pooled.data(), wts.data(),
                                   saved.data(), scratch.data());
    benchmark::ClobberMemory();
  }
  const double per_behaviour = 2.0 * double(kD * kH1 + kH1 * kH2 + kH2) * (bwd ? 2.0 : 1.0);
  const double n = double(kB * L) * double(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(per_behaviour * n / 1e9, benchmark::Counter::kIsRate);
  state.counters["behaviours/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_DinAttention)
    ->ArgNames({"isa", "L", "bwd"})
    ->ArgsProduct({{0, 1, 2}, {50, 200}, {0, 1}})
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
