// Optimiser row updates: GB/s of state moved (SGD+momentum: w, buf read+write, g read = 5·4 B per
// element; Adam: w, m, v read+write + g = 7·4 B; Adagrad: w, sum rw + g = 5·4 B) for sparse
// updates of 64-float embedding rows. Arguments: ISA (0 ref, 1 avx2, 2 avx512), optimiser
// (0 sgd, 1 adam, 2 adagrad), rows touched per call (from a 1M-row table: random rows, memory
// bound; or 1024 consecutive rows: cache resident).
#include <benchmark/benchmark.h>

#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/kernels/optimizer_rows.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
constexpr Index kDim = 64;

void BM_OptimizerRows(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const int opt = static_cast<int>(state.range(1));
  const Index table_rows = state.range(2), touched = 4096;
  std::vector<float> w(static_cast<std::size_t>(table_rows * kDim), 0.1f), m(w.size(), 0.01f), v(w.size(), 0.01f),
      g(static_cast<std::size_t>(touched * kDim), 0.01f);
  Rng rng(3);
  std::vector<Index> rows(static_cast<std::size_t>(touched));
  for (Index i = 0; i < touched; ++i) rows[i] = table_rows > touched ? static_cast<Index>(rng.uniform() * double(table_rows)) % table_rows : i % table_rows;
  const OptimizerRowKernels& k = optimizer_row_kernels(isa);
  const SgdRowArgs sa{-0.01f, 0.9f, 1.0f, 0.0f, false, false};
  const AdamRowArgs aa{0.9f, 0.999f, 0.1f, 0.001f, -0.001f, 0.1f, 1e-8f, 0.0f, 1.0f, false};
  const AdagradRowArgs ga{-0.01f, 0.0f, 1e-10f};
  for (auto _ : state) {
    for (Index t = 0; t < touched; ++t) {
      const Index off = rows[t] * kDim;
      const float* gr = g.data() + t * kDim;
      if (opt == 0) k.f32_sgd_row(w.data() + off, m.data() + off, gr, kDim, sa);
      else if (opt == 1) k.f32_adam_row(w.data() + off, m.data() + off, v.data() + off, gr, kDim, aa);
      else k.f32_adagrad_row(w.data() + off, v.data() + off, gr, kDim, ga);
    }
    benchmark::ClobberMemory();
  }
  const double bytes = double(touched * kDim * 4) * (opt == 1 ? 7.0 : 5.0);
  state.counters["GB/s"] = benchmark::Counter(bytes * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["rows/s"] = benchmark::Counter(double(touched) * double(state.iterations()), benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_OptimizerRows)
    ->ArgNames({"isa", "opt", "table"})
    ->ArgsProduct({{0, 1, 2}, {0, 1, 2}, {1024, 1 << 20}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
