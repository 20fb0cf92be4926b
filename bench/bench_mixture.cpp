// Gate mixture forward/backward: GB/s of expert outputs read (and gradients written).
// Arguments: ISA (0 ref, 1 avx2, 2 avx512), experts E, width h, direction (0 fwd, 1 bwd). Batch 512.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/kernels/mixture.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
constexpr Index kB = 512;

void BM_Mixture(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const Index E = state.range(1), h = state.range(2);
  const bool bwd = state.range(3) != 0;
  Rng rng(1);
  std::vector<std::vector<float>> xs(static_cast<std::size_t>(E), std::vector<float>(static_cast<std::size_t>(kB * h)));
  std::vector<std::vector<float>> dxs = xs;
  std::vector<const float*> xp;
  std::vector<float*> dxp;
  for (auto& x : xs) {
    for (auto& v : x) v = static_cast<float>(rng.normal());
    xp.push_back(x.data());
  }
  for (auto& d : dxs) dxp.push_back(d.data());
  std::vector<float> g(static_cast<std::size_t>(kB * E), 1.0f / float(E)), out(static_cast<std::size_t>(kB * h)),
      dout(out.size(), 0.1f), dg(g.size());
  const MixtureKernels& k = mixture_kernels(isa);
  for (auto _ : state) {
    if (bwd)
      k.f32_mixture_backward(kB, E, h, g.data(), E, xp.data(), h, dout.data(), h, dxp.data(), h, dg.data(), E);
    else
      k.f32_mixture(kB, E, h, g.data(), E, xp.data(), h, out.data(), h);
    benchmark::ClobberMemory();
  }
  // fwd reads E experts, writes out; bwd reads E experts + dout, reads and writes E expert grads.
  const double per = double(kB * h * 4) * (bwd ? double(3 * E + 1) : double(E + 1));
  state.counters["GB/s"] = benchmark::Counter(per * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_Mixture)
    ->ArgNames({"isa", "E", "h", "bwd"})
    ->ArgsProduct({{0, 1, 2}, {4, 8}, {64, 256}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
