// Co-action micro-MLP forward / backward: GFLOP/s of the micro-MLPs (2·Σ in_l·out_l per position
// and order; x2 for the backward) and positions/s. Arguments: ISA (0 ref, 1 avx2, 2 avx512), L,
// orders, direction (0 fwd, 1 bwd). B = 256, d = 16, layers {8, 4} (CAN's official shape), tanh,
// every sequence full.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/kernels/co_action.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
constexpr Index kB = 256, kD = 16;
const Index kWidths[] = {8, 4};

void BM_CoAction(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const Index L = state.range(1), C = state.range(2);
  const bool bwd = state.range(3) != 0;
  CoActionArgs a;
  a.batch = kB, a.seq_len = L, a.in = kD, a.n_layers = 2, a.widths = kWidths, a.orders = C;
  const CoActionLayout lay = co_action_layout(a);
  Rng rng(1);
  auto vec = [&](Index n, double s) {
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& e : v) e = static_cast<float>(s * rng.normal());
    return v;
  };
  auto p = vec(kB * lay.param_width, 0.3), x = vec(kB * L * kD, 0.5), dy = vec(kB * lay.out_features, 1);
  std::vector<float> y(dy.size()), dp(p.size()), dx(x.size()), scratch(static_cast<std::size_t>(co_action_scratch_size(a)));
  const CoActionKernels& k = co_action_kernels(isa);
  for (auto _ : state) {
    if (bwd)
      k.f32_co_action_backward(a, p.data(), x.data(), nullptr, dy.data(), dp.data(), dx.data(), scratch.data());
    else
      k.f32_co_action_forward(a, p.data(), x.data(), nullptr, y.data(), scratch.data());
    benchmark::ClobberMemory();
  }
  const double per = 2.0 * double(kD * 8 + 8 * 4) * double(C) * (bwd ? 3.0 : 1.0);  // bwd recomputes the forward
  const double n = double(kB * L) * double(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(per * n / 1e9, benchmark::Counter::kIsRate);
  state.counters["positions/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_CoAction)
    ->ArgNames({"isa", "L", "orders", "bwd"})
    ->ArgsProduct({{0, 1, 2}, {1, 50}, {1, 2}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
