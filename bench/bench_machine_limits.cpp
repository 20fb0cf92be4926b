// Machine limits that the model benchmarks are compared against (docs/performance.md):
//   fma_avx512 / fma_avx2  single-core fp32 FMA peak: a register-blocked loop of independent
//                          vfmadd231ps chains (12 accumulators, enough to cover 4-cycle latency x
//                          2 FMA ports), FLOPs = 2 x lanes x FMAs.
//   gemm                   kernels::gemm (oneDNN sgemm) C = A B, N^3 with N = 2048 (1 thread).
//   triad                  STREAM triad a[i] = b[i] + s * c[i] over 3 arrays of 32 Mi floats
//                          (128 MiB each); bytes = 12 per element (STREAM convention: the
//                          write-allocate read is not counted).
//   gather                 random 128-byte rows (32 floats) from a 1M-row table (128 MiB) summed
//                          into a 32-float accumulator per group of 16 rows; rows/s and GB/s.
// Every measurement is repeated (--reps, default 5) and the best run is reported: on a shared
// machine the best run is the one least disturbed by other processes. Output: a table, or
// JSON with --json. --threads T runs the FMA loop and the triad on T threads (std::thread).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/gemm.hpp"

using namespace mtrank;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

constexpr long kFmaIters = 50'000'000;

__attribute__((target("avx512f"), noinline)) float fma_loop_avx512(long iters, float seed) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(seed + float(i));
  const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
  for (long n = 0; n < iters; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"), noinline)) float fma_loop_avx2(long iters, float seed) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(seed + float(i));
  const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
  for (long n = 0; n < iters; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  }
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  float r = 0;
  for (float v : out) r += v;
  return r;
}

volatile float g_sink = 0;

/// GFLOP/s of the FMA loop on `threads` threads (each runs the loop; FLOPs add up).
double fma_peak(bool avx512, int threads, long iters) {
  std::vector<float> r(static_cast<std::size_t>(threads));
  const double t0 = now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { r[t] = avx512 ? fma_loop_avx512(iters, 1.0f + float(t)) : fma_loop_avx2(iters, 1.0f + float(t)); });
  for (auto& th : pool) th.join();
  const double dt = now() - t0;
  for (float v : r) g_sink = g_sink + v;
  const double lanes = avx512 ? 16 : 8;
  return double(threads) * double(iters) * 12.0 * lanes * 2.0 / dt / 1e9;
}

double gemm_gflops(Index n) {
  std::vector<float> a(static_cast<std::size_t>(n * n)), b(a.size()), c(a.size());
  Rng rng(1);
  for (auto& v : a) v = float(rng.uniform(-1, 1));
  for (auto& v : b) v = float(rng.uniform(-1, 1));
  kernels::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);  // warm-up / JIT
  const double t0 = now();
  kernels::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  const double dt = now() - t0;
  g_sink = g_sink + c[0];
  return 2.0 * double(n) * double(n) * double(n) / dt / 1e9;
}

double triad_gbs(std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, int threads) {
  const long n = static_cast<long>(a.size());
  const float s = 3.0f;
  const double t0 = now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const long lo = n * t / threads, hi = n * (t + 1) / threads;
      float* pa = a.data();
      const float *pb = b.data(), *pc = c.data();
      for (long i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
    });
  for (auto& th : pool) th.join();
  const double dt = now() - t0;
  g_sink = g_sink + a[static_cast<std::size_t>(n / 2)];
  return 12.0 * double(n) / dt / 1e9;
}

/// Random 128-byte row gather: rows/s.
double gather_rows_per_s(const std::vector<float>& table, const std::vector<std::int32_t>& idx) {
  constexpr int kDim = 32;
  float acc[kDim] = {};
  const double t0 = now();
  for (std::size_t j = 0; j < idx.size(); ++j) {
    const float* r = table.data() + static_cast<std::size_t>(idx[j]) * kDim;
    for (int c = 0; c < kDim; ++c) acc[c] += r[c];
  }
  const double dt = now() - t0;
  float s = 0;
  for (float v : acc) s += v;
  g_sink = g_sink + s;
  return double(idx.size()) / dt;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  int reps = 5, threads = 1;
  Index gemm_n = 2048;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json") json = true;
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--threads" && i + 1 < argc) threads = std::max(1, std::atoi(argv[++i]));
    else if (a == "--gemm-n" && i + 1 < argc) gemm_n = std::max(64, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: %s [--json] [--reps R] [--threads T] [--gemm-n N]\n", argv[0]);
      return 2;
    }
  }
  const Isa isa = detected_isa();
  nlohmann::json out = {{"isa", isa_name(isa)}, {"threads", threads}, {"reps", reps}};
  auto best = [&](auto&& f) {
    double b = 0;
    for (int r = 0; r < reps; ++r) b = std::max(b, f());
    return b;
  };
  if (isa >= Isa::avx512) out["fma_avx512_gflops"] = best([&] { return fma_peak(true, threads, kFmaIters); });
  if (isa >= Isa::avx2) out["fma_avx2_gflops"] = best([&] { return fma_peak(false, threads, kFmaIters); });
  set_num_threads(1);
  out["gemm_n"] = gemm_n;
  out["gemm_gflops"] = best([&] { return gemm_gflops(gemm_n); });
  {
    const std::size_t n = std::size_t(32) << 20;
    std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
    out["triad_gbs"] = best([&] { return triad_gbs(a, b, c, threads); });
  }
  {
    const std::size_t rows = 1 << 20, dim = 32;
    std::vector<float> table(rows * dim);
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = float(i & 1023) * 1e-3f;
    std::vector<std::int32_t> idx(std::size_t(4) << 20);
    Rng rng(2);
    for (auto& v : idx) v = static_cast<std::int32_t>(rng.below(rows));
    const double rps = best([&] { return gather_rows_per_s(table, idx); });
    out["gather_rows_per_s"] = rps;
    out["gather_gbs"] = rps * 128.0 / 1e9;
  }
  if (json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("machine limits (best of %d, %d thread%s, ISA %s)\n", reps, threads, threads > 1 ? "s" : "",
                isa_name(isa));
    if (out.contains("fma_avx512_gflops"))
      std::printf("  fp32 FMA peak, AVX-512     %8.1f GFLOP/s\n", out["fma_avx512_gflops"].get<double>());
    if (out.contains("fma_avx2_gflops"))
      std::printf("  fp32 FMA peak, AVX2        %8.1f GFLOP/s\n", out["fma_avx2_gflops"].get<double>());
    std::printf("  sgemm %lld^3 (1 thread)    %8.1f GFLOP/s\n", static_cast<long long>(gemm_n),
                out["gemm_gflops"].get<double>());
    std::printf("  STREAM triad               %8.1f GB/s\n", out["triad_gbs"].get<double>());
    std::printf("  random 128-B row gather    %8.1f M rows/s (%.1f GB/s)\n", out["gather_rows_per_s"].get<double>() / 1e6,
                out["gather_gbs"].get<double>());
  }
  return 0;
}
