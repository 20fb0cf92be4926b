// CRC32C of checkpoint bytes (io/crc32c.hpp) in GB/s, and what the checksum adds to loading a
// checkpoint's tensors from the page cache: SafetensorsFile::read_float of a 256 MiB F32 tensor,
// checked (the file carries checksums) and unchecked (the same bytes without them).
// Arguments: BM_Crc32c: ISA (0 ref, 1+ SSE4.2 path), bytes. BM_ReadTensor: checked (0/1).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <vector>

#include "bench_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/crc32c.hpp"
#include "mtrank/io/safetensors.hpp"

using namespace mtrank;

namespace {

void BM_Crc32c(benchmark::State& state) {
  Isa isa;
  if (!bench::isa_arg(state, 0, isa)) return;
  std::vector<unsigned char> v(static_cast<std::size_t>(state.range(1)));
  Rng rng(1);
  for (auto& b : v) b = static_cast<unsigned char>(rng.next_u64());
  for (auto _ : state) {
    const std::uint32_t c = isa == Isa::ref ? io::crc32c_ref(v.data(), v.size()) : io::crc32c_sse42(v.data(), v.size());
    benchmark::DoNotOptimize(c);
  }
  state.counters["GB/s"] = benchmark::Counter(double(v.size()) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Crc32c)->ArgsProduct({{0, 1}, {4096, 1 << 20, 64 << 20}})->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_ReadTensor(benchmark::State& state) {
  const bool checked = state.range(0) != 0;
  const Index n = Index(64) << 20;  // 256 MiB of F32
  Tensor t(Shape{n});
  for (Index i = 0; i < n; ++i) t[i] = static_cast<float>(i % 1000);
  const auto path = std::filesystem::temp_directory_path() / (checked ? "mtrank_bench_checked.safetensors" : "mtrank_bench_unchecked.safetensors");
  if (checked) {
    io::SafetensorsWriter w;
    w.add("t", t.view());
    w.save(path);
  } else {  // a header without the checksum key: what another writer produces
    const std::string header = "{\"t\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(n) + "],\"data_offsets\":[0," +
                               std::to_string(4 * n) + "]}}";
    std::string prefix(8, '\0');
    for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
    io::AtomicFileWriter w(path);
    w.write(prefix + header);
    w.write(t.data(), static_cast<std::size_t>(4 * n));
    w.commit();
  }
  const auto file = io::SafetensorsFile::load(path);
  if (file.checksummed() != checked) {
    state.SkipWithError("unexpected checksum state");
    return;
  }
  Tensor dst(Shape{n});
  for (auto _ : state) {
    file.read_float(file.at("t"), dst.data(), static_cast<std::size_t>(n));
    benchmark::ClobberMemory();
  }
  state.SetLabel(checked ? "checked" : "unchecked");
  state.counters["GB/s"] = benchmark::Counter(4.0 * double(n) * double(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  std::filesystem::remove(path);
}
BENCHMARK(BM_ReadTensor)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(5);

}  // namespace

BENCHMARK_MAIN();
