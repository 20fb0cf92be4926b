// Linear layer kernels: GFLOP/s (2 M K N per call) of the fused forward and the backward.
// BM_LinearForward args: impl (1 onednn_matmul, 2 sgemm_epilogue, 3 bf16 onednn, 4 packed f32,
// 5 packed bf16, 6 packed int8: kernels/packed_linear.hpp, weights packed once outside the loop),
// act (0 identity,
// 1 relu, 4 gelu_erf), M (batch), K (in), N (out).
// BM_LinearBackward args: impl (1 onednn_matmul, 2 sgemm), M, K, N (dW + db + dx: 4 M K N flops).
// Rates are per CPU second of the benchmark thread (mtrank::num_threads() = 1 unless
// MTRANK_BENCH_THREADS is set).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <vector>

#include "mtrank/core/rng.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/bf16.hpp"
#include "mtrank/kernels/linear_fused.hpp"
#include "mtrank/kernels/packed_linear.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {

std::vector<float> randn(Index n, Rng& rng) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.normal());
  return v;
}

void set_threads() {
  static const int t = [] {
    const char* e = std::getenv("MTRANK_BENCH_THREADS");
    int n = e ? std::atoi(e) : 1;
    mtrank::set_num_threads(n > 0 ? n : 1);
    return n;
  }();
  (void)t;
}

void BM_LinearForward(benchmark::State& state) {
  set_threads();
  const int impl = static_cast<int>(state.range(0));
  const auto act = static_cast<FusedActivation>(state.range(1));
  const Index M = state.range(2), K = state.range(3), N = state.range(4);
  Rng rng(1);
  auto x = randn(M * K, rng), w = randn(N * K, rng), b = randn(N, rng);
  std::vector<float> y(static_cast<std::size_t>(M * N));
  const char* names[] = {"auto", "onednn", "sgemm+epi", "bf16", "packed f32", "packed bf16", "packed int8"};
  state.SetLabel(std::string(names[impl]) + " " + fused_activation_name(act));
  Bf16Weights wb;
  if ((impl == 3 && !bf16_available()) || (impl == 5 && !packed_bf16_supported(packed_linear_kernels()))) {
    state.SkipWithError("no AVX512_BF16");
    return;
  }
  PackedMatrix packed;
  const WeightFormat formats[] = {WeightFormat::f32, WeightFormat::bf16, WeightFormat::int8};
  if (impl >= 4) packed = PackedMatrix(w.data(), N, K, K, formats[impl - 4]);
  for (auto _ : state) {
    if (impl >= 4)
      packed_linear(M, x.data(), K, packed, b.data(), act, y.data(), N);
    else if (impl == 3)
      bf16_linear_fused(M, K, N, x.data(), K, w.data(), wb, b.data(), act, y.data(), N);
    else
      f32_linear_fused(M, K, N, x.data(), K, w.data(), b.data(), act, y.data(), N, static_cast<LinearImpl>(impl));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(M) * double(K) * double(N) * double(state.iterations()) / 1e9,
                                                 benchmark::Counter::kIsRate);
}

void BM_LinearBackward(benchmark::State& state) {
  set_threads();
  const auto impl = static_cast<LinearImpl>(state.range(0));
  const Index M = state.range(1), K = state.range(2), N = state.range(3);
  Rng rng(2);
  auto x = randn(M * K, rng), w = randn(N * K, rng), dy = randn(M * N, rng);
  std::vector<float> dw(static_cast<std::size_t>(N * K)), db(static_cast<std::size_t>(N)),
      dx(static_cast<std::size_t>(M * K));
  state.SetLabel(impl == LinearImpl::onednn_matmul ? "onednn" : "sgemm");
  for (auto _ : state) {
    f32_linear_backward(M, K, N, dy.data(), N, x.data(), K, w.data(), dw.data(), db.data(), dx.data(), K, impl);
    benchmark::DoNotOptimize(dx.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(4.0 * double(M) * double(K) * double(N) * double(state.iterations()) / 1e9,
                                                 benchmark::Counter::kIsRate);
}

void shapes(benchmark::internal::Benchmark* b, std::vector<std::int64_t> impls, std::vector<std::int64_t> acts) {
  const std::vector<std::pair<std::int64_t, std::int64_t>> kn = {{512, 256}, {256, 128}, {128, 64}, {64, 1}};
  for (auto impl : impls)
    for (auto act : acts)
      for (std::int64_t m : {1, 4, 32, 256, 1024})
        for (auto [k, n] : kn) b->Args({impl, act, m, k, n});
}

}  // namespace

BENCHMARK(BM_LinearForward)
    ->ArgNames({"impl", "act", "M", "K", "N"})
    ->Apply([](auto* b) { shapes(b, {1, 2, 3, 4, 5, 6}, {1}); });
BENCHMARK(BM_LinearForward)
    ->Name("BM_LinearForwardGelu")
    ->ArgNames({"impl", "act", "M", "K", "N"})
    ->Apply([](auto* b) { shapes(b, {1, 2}, {4}); });
BENCHMARK(BM_LinearBackward)->ArgNames({"impl", "M", "K", "N"})->Apply([](auto* b) {
  for (std::int64_t impl : {1, 2})
    for (std::int64_t m : {1, 32, 256, 1024})
      for (auto [k, n] : std::vector<std::pair<std::int64_t, std::int64_t>>{{512, 256}, {256, 128}, {128, 64}, {64, 1}})
        b->Args({impl, m, k, n});
});

BENCHMARK_MAIN();
