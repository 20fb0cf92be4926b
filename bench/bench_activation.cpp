// Activation kernels: GB/s (bytes read + written) on 64K floats (fits in L2).
// Arguments: ISA (0 ref, 1 avx2, 2 avx512), function (0 relu, 1 sigmoid, 2 tanh, 3 gelu), direction (0 fwd, 1 bwd).
// BM_PerColumn: PReLU fwd/bwd and Dice fwd on rows x cols matrices (cols 80 and 200, as DIN's
// attention and top MLPs; rows = 64K / cols). Bytes: prelu fwd x, y; prelu bwd x, dy, dx; dice
// fwd (inference, no p) x, y. Per-column parameters are not counted.
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/kernels/activation.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
constexpr Index kN = 1 << 16;
const char* kNames[] = {"relu", "sigmoid", "tanh", "gelu"};

void BM_Activation(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const int fn = static_cast<int>(state.range(1));
  const bool bwd = state.range(2) != 0;
  state.SetLabel(std::string(isa_name(isa)) + " " + kNames[fn] + (bwd ? " bwd" : " fwd"));
  const ActivationKernels& k = activation_kernels(isa);
  std::vector<float> x(kN), dy(kN), y(kN);
  Rng rng(1);
  for (auto& v : x) v = static_cast<float>(rng.normal(0, 2));
  for (auto& v : dy) v = static_cast<float>(rng.normal());
  using U = void (*)(const float*, float*, Index);
  using Bi = void (*)(const float*, const float*, float*, Index);
  const U fwd[] = {k.relu_fwd, k.sigmoid_fwd, k.tanh_fwd, k.gelu_fwd};
  const Bi back[] = {k.relu_bwd, k.sigmoid_bwd, k.tanh_bwd, k.gelu_bwd};
  for (auto _ : state) {
    if (bwd)
      back[fn](x.data(), dy.data(), y.data(), kN);
    else
      fwd[fn](x.data(), y.data(), kN);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double bytes = double(kN) * 4 * (bwd ? 3 : 2) * double(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["elem/s"] = benchmark::Counter(double(kN) * double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_PerColumn(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const int fn = static_cast<int>(state.range(1));  // 0 prelu fwd, 1 prelu bwd, 2 dice fwd
  const Index cols = state.range(2), rows = kN / cols, n = rows * cols;
  const char* names[] = {"prelu fwd", "prelu bwd", "dice fwd"};
  state.SetLabel(std::string(isa_name(isa)) + " " + names[fn] + " cols=" + std::to_string(cols));
  const ActivationKernels& k = activation_kernels(isa);
  std::vector<float> x(n), dy(n), y(n), a(cols, 0.25f), da(cols), mean(cols, 0.1f), inv_std(cols, 1.3f);
  Rng rng(1);
  for (auto& v : x) v = static_cast<float>(rng.normal(0, 2));
  for (auto& v : dy) v = static_cast<float>(rng.normal());
  for (auto _ : state) {
    if (fn == 0)
      k.prelu_fwd(x.data(), cols, a.data(), y.data(), cols, rows, cols);
    else if (fn == 1)
      k.prelu_bwd(x.data(), cols, dy.data(), cols, a.data(), y.data(), cols, da.data(), rows, cols);
    else
      k.dice_fwd(x.data(), cols, mean.data(), inv_std.data(), a.data(), y.data(), cols, nullptr, rows, cols);
    benchmark::DoNotOptimize(y.data());
    benchmark::DoNotOptimize(da.data());
    benchmark::ClobberMemory();
  }
  const double bytes = double(n) * 4 * (fn == 1 ? 3 : 2) * double(state.iterations());
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["elem/s"] = benchmark::Counter(double(n) * double(state.iterations()), benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_PerColumn)->ArgNames({"isa", "fn", "cols"})->ArgsProduct({{0, 1, 2}, {0, 1, 2}, {80, 200}});
BENCHMARK(BM_Activation)->ArgNames({"isa", "fn", "bwd"})->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3}, {0, 1}});

BENCHMARK_MAIN();
