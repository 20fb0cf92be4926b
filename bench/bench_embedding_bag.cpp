// Embedding-bag forward/backward: rows/s and GB/s (table bytes read) for random rows of a
// 1M-row table. Arguments: ISA (0 ref, 1 avx2, 2 avx512), dim (32 floats = 128-byte rows),
// pooling factor (rows per bag). 1024 bags per iteration; successive iterations walk through
// 2M random positions (256 MB of row reads at 128-byte rows) so that rows are not cache-hot from
// the previous iteration.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/embedding_bag.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
constexpr Index kTableRows = 1 << 20, kBags = 1024, kPositions = 1 << 21;

struct Setup {
  Tensor table;
  std::vector<Index> indices, offsets;
  std::vector<float> weights;
  Tensor out;
  Index per_batch = 0, batches = 0;
  Setup(Index dim, Index pooling) : table(Shape{kTableRows, dim}), out(Shape{kBags, dim}) {
    Rng rng(1);
    for (auto& v : table) v = static_cast<float>(rng.uniform(-1, 1));
    per_batch = kBags * pooling;
    batches = std::max<Index>(1, kPositions / per_batch);
    for (Index j = 0; j < per_batch * batches; ++j) indices.push_back(static_cast<Index>(rng.below(kTableRows)));
    for (Index b = 0; b <= kBags; ++b) offsets.push_back(b * pooling);
    weights.assign(indices.size(), 0.5f);
  }
  /// Position shift of iteration `it`: each iteration reads a different slice of `indices`.
  Index shift(Index it) const { return (it % batches) * per_batch; }
};

void set_counters(benchmark::State& state, Index rows, Index dim) {
  const double n = static_cast<double>(rows) * static_cast<double>(state.iterations());
  state.counters["rows/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(n * double(dim) * 4 / 1e9, benchmark::Counter::kIsRate);
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
}

void BM_EmbeddingBagForward(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const Index dim = state.range(1), pooling = state.range(2);
  const bool weighted = state.range(3) != 0;
  static Setup* cached = nullptr;
  static Index cached_dim = -1, cached_pool = -1;
  if (!cached || cached_dim != dim || cached_pool != pooling) {
    delete cached;
    cached = new Setup(dim, pooling);
    cached_dim = dim, cached_pool = pooling;
  }
  Setup& s = *cached;
  const EmbeddingBagKernels& k = embedding_bag_kernels(isa);
  Index it = 0;
  for (auto _ : state) {
    const Index sh = s.shift(it++);
    k.f32_embedding_bag(kBags, dim, s.table.data(), s.indices.data() + sh, s.offsets.data(),
                        weighted ? s.weights.data() + sh : nullptr, PoolingMode::sum, s.out.data(), dim);
    benchmark::DoNotOptimize(s.out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, s.per_batch, dim);
}

void BM_EmbeddingBagBackward(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  const Index dim = state.range(1), pooling = state.range(2);
  Setup s(dim, pooling);
  s.indices.resize(static_cast<std::size_t>(s.per_batch));  // one batch: the scatter target stays the same
  // Scatter into a dense gradient buffer (the SparseRowGrad lookup is measured by the nn layer).
  std::vector<float> grad(static_cast<std::size_t>(kTableRows * dim), 0.f);
  std::vector<float*> rows(s.indices.size());
  for (std::size_t j = 0; j < rows.size(); ++j) rows[j] = grad.data() + s.indices[j] * dim;
  Tensor dout(Shape{kBags, dim}, 0.01f);
  const EmbeddingBagKernels& k = embedding_bag_kernels(isa);
  for (auto _ : state) {
    k.f32_embedding_bag_backward(kBags, dim, dout.data(), dim, s.offsets.data(), nullptr, PoolingMode::sum, rows.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, s.per_batch, dim);
}
}  // namespace

BENCHMARK(BM_EmbeddingBagForward)
    ->ArgNames({"isa", "dim", "pool", "weighted"})
    ->ArgsProduct({{0, 1, 2}, {32}, {1, 20}, {0, 1}})
    ->ArgsProduct({{0, 1, 2}, {64, 128}, {20}, {0}})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EmbeddingBagBackward)
    ->ArgNames({"isa", "dim", "pool"})
    ->ArgsProduct({{0, 1, 2}, {32}, {20}})
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
