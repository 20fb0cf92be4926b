// Row softmax forward/backward: rows/s and GB/s. Arguments: ISA (0 ref, 1 avx2, 2 avx512),
// row length n, masked (0/1), direction (0 fwd, 1 bwd). 512 rows.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/kernels/softmax.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
constexpr Index kRows = 512;

void BM_Softmax(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const Index n = state.range(1);
  const bool masked = state.range(2) != 0, bwd = state.range(3) != 0;
  Rng rng(1);
  std::vector<float> x(static_cast<std::size_t>(kRows * n)), y(x.size()), dy(x.size()), dx(x.size());
  for (auto& v : x) v = static_cast<float>(rng.normal(0, 3));
  for (auto& v : dy) v = static_cast<float>(rng.normal());
  std::vector<std::uint8_t> mask(x.size());
  for (auto& m : mask) m = rng.bernoulli(0.8) ? 1 : 0;
  const SoftmaxKernels& k = softmax_kernels(isa);
  k.f32_softmax(kRows, n, x.data(), n, 1.0f, masked ? mask.data() : nullptr, n, y.data(), n);
  for (auto _ : state) {
    if (bwd)
      k.f32_softmax_backward(kRows, n, y.data(), n, dy.data(), n, 1.0f, dx.data(), n);
    else
      k.f32_softmax(kRows, n, x.data(), n, 1.0f, masked ? mask.data() : nullptr, n, y.data(), n);
    benchmark::ClobberMemory();
  }
  const double it = double(state.iterations());
  state.counters["rows/s"] = benchmark::Counter(double(kRows) * it, benchmark::Counter::kIsRate);
  state.counters["GB/s"] =
      benchmark::Counter(double(kRows * n) * (bwd ? 12.0 : 8.0) * it / 1e9, benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_Softmax)
    ->ArgNames({"isa", "n", "masked", "bwd"})
    ->ArgsProduct({{0, 1, 2}, {8, 64, 1000}, {0, 1}, {0}})
    ->ArgsProduct({{0, 1, 2}, {8, 64, 1000}, {0}, {1}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
