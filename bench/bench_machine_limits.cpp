// Machine limits that the model benchmarks are compared against (docs/performance.md):
//   bf16_dot               single-core vdpbf16ps rate (AVX512-BF16 CPUs), 64 FLOPs per instruction
//   fma_avx512 / fma_avx2  single-core fp32 FMA peak: a register-blocked loop of independent
//                          vfmadd231ps chains (12 accumulators, enough to cover 4-cycle latency x
//                          2 FMA ports), FLOPs = 2 x lanes x FMAs.
//   gemm                   kernels::gemm (oneDNN sgemm) C = A B, N^3 with N = 2048 (1 thread).
//   triad                  STREAM triad a[i] = b[i] + s * c[i] over 3 arrays of 32 Mi floats
//                          (128 MiB each); bytes = 12 per element (STREAM convention: the
//                          write-allocate read is not counted).
//   read_6mib              read bandwidth of a 6 MiB buffer (larger than L2, inside L3), summed
//                          repeatedly: the bound for batch-1 inference, which streams every
//                          weight once per sample (mmoe: 5.3 MB of weights).
//   gather                 random 128-byte rows (32 floats) from a 1M-row table (128 MiB) summed
//                          into a 32-float accumulator per group of 16 rows; rows/s and GB/s.
// Every measurement is repeated (--reps, default 5) and the best run is reported: on a shared
// machine the best run is the one least disturbed by other processes. Each rate is given per
// wall-clock second and per CPU second of the process (divided by the thread count; keys
// ending in _cpu): on a machine shared with other jobs the CPU-time rate is the one that
// compares with CPU-time model rates. Output: a table, or JSON with --json. --threads T runs the FMA loop and the triad on T threads (std::thread).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
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
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

/// Work per wall second and per CPU second (CPU time divided by the number of threads).
struct Rate {
  double wall = 0, cpu = 0;
};
struct Stopwatch {
  int threads = 1;
  double w0 = now(), c0 = cpu_now();
  Rate rate(double work) const {
    const double w = now() - w0, c = (cpu_now() - c0) / double(threads);
    return {work / w, work / std::max(c, 1e-9)};
  }
};

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

// vdpbf16ps: 16 lanes x 2 products per instruction (64 FLOPs), 12 independent accumulators.
__attribute__((target("avx512f,avx512bf16"), noinline)) float bf16_dot_loop(long iters, float seed) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(seed + float(i));
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
  const __m512bh y = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
  for (long n = 0; n < iters; ++n) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbf16_ps(a[i], x, y);
  }
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}

volatile float g_sink = 0;

/// GFLOP/s of the FMA loop on `threads` threads (each runs the loop; FLOPs add up).
Rate fma_peak(bool avx512, int threads, long iters) {
  std::vector<float> r(static_cast<std::size_t>(threads));
  const Stopwatch sw{threads};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { r[t] = avx512 ? fma_loop_avx512(iters, 1.0f + float(t)) : fma_loop_avx2(iters, 1.0f + float(t)); });
  for (auto& th : pool) th.join();
  const double lanes = avx512 ? 16 : 8;
  const Rate rt = sw.rate(double(threads) * double(iters) * 12.0 * lanes * 2.0 / 1e9);
  for (float v : r) g_sink = g_sink + v;
  return rt;
}

/// GFLOP/s of vdpbf16ps on one thread (2 FLOPs per bf16 product pair element: 64 per instruction).
Rate bf16_dot_peak(long iters) {
  const Stopwatch sw{1};
  const float r = bf16_dot_loop(iters, 1.0f);
  const Rate rt = sw.rate(double(iters) * 12.0 * 64.0 / 1e9);
  g_sink = g_sink + r;
  return rt;
}

Rate gemm_gflops(Index n) {
  std::vector<float> a(static_cast<std::size_t>(n * n)), b(a.size()), c(a.size());
  Rng rng(1);
  for (auto& v : a) v = float(rng.uniform(-1, 1));
  for (auto& v : b) v = float(rng.uniform(-1, 1));
  kernels::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);  // warm-up / JIT
  const Stopwatch sw;
  kernels::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  const Rate rt = sw.rate(2.0 * double(n) * double(n) * double(n) / 1e9);
  g_sink = g_sink + c[0];
  return rt;
}

__attribute__((target("avx2,fma"))) void triad_range(float* a, const float* b, const float* c, float s, long lo,
                                                    long hi) {
  for (long i = lo; i < hi; ++i) a[i] = b[i] + s * c[i];
}

Rate triad_gbs(std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, int threads) {
  const long n = static_cast<long>(a.size());
  const float s = 3.0f;
  const Stopwatch sw{threads};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      triad_range(a.data(), b.data(), c.data(), s, n * t / threads, n * (t + 1) / threads);
    });
  for (auto& th : pool) th.join();
  const Rate rt = sw.rate(12.0 * double(n) / 1e9);
  g_sink = g_sink + a[static_cast<std::size_t>(n / 2)];
  return rt;
}

/// Read bandwidth of `buf` (summed `passes` times), GB/s.
__attribute__((target("avx2,fma"))) Rate read_gbs(const std::vector<float>& buf, int passes) {
  const long n = static_cast<long>(buf.size());
  const float* p = buf.data();
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const Stopwatch sw;
  for (int r = 0; r < passes; ++r)
    for (long i = 0; i + 32 <= n; i += 32)
      for (int c = 0; c < 4; ++c) acc[c] = _mm256_add_ps(acc[c], _mm256_loadu_ps(p + i + 8 * c));
  const Rate rt = sw.rate(double(passes) * double(n) * 4.0 / 1e9);
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (float v : out) g_sink = g_sink + v;
  return rt;
}

/// Random 128-byte row gather: rows/s. Rows are summed into an accumulator (AVX2 loads) with
/// a software prefetch 16 rows ahead, as the embedding-bag kernels do.
__attribute__((target("avx2,fma"))) Rate gather_rows_per_s(const std::vector<float>& table,
                                                          const std::vector<std::int32_t>& idx) {
  constexpr long kDim = 32, kAhead = 16;
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const long n = static_cast<long>(idx.size());
  const float* t = table.data();
  const Stopwatch sw;
  for (long j = 0; j < n; ++j) {
    if (j + kAhead < n) {
      const float* p = t + static_cast<std::size_t>(idx[j + kAhead]) * kDim;
      _mm_prefetch(reinterpret_cast<const char*>(p), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(p + 16), _MM_HINT_T0);
    }
    const float* r = t + static_cast<std::size_t>(idx[j]) * kDim;
    for (int c = 0; c < 4; ++c) acc[c] = _mm256_add_ps(acc[c], _mm256_loadu_ps(r + 8 * c));
  }
  const Rate rt = sw.rate(double(n));
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (float v : out) g_sink = g_sink + v;
  return rt;
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
  // Best of `reps` runs, for the wall and the CPU-time rate separately.
  auto best = [&](const char* key, auto&& f) {
    Rate b;
    for (int r = 0; r < reps; ++r) {
      const Rate x = f();
      b.wall = std::max(b.wall, x.wall);
      b.cpu = std::max(b.cpu, x.cpu);
    }
    out[key] = b.wall;
    out[std::string(key) + "_cpu"] = b.cpu;
    return b;
  };
  if (isa >= Isa::avx512) best("fma_avx512_gflops", [&] { return fma_peak(true, threads, kFmaIters); });
  if (isa >= Isa::avx2) best("fma_avx2_gflops", [&] { return fma_peak(false, threads, kFmaIters); });
  if (isa >= Isa::avx512 && cpu_features().avx512_bf16 && threads == 1)
    best("bf16_dot_gflops", [&] { return bf16_dot_peak(kFmaIters / 2); });
  set_num_threads(1);
  out["gemm_n"] = gemm_n;
  best("gemm_gflops", [&] { return gemm_gflops(gemm_n); });
  {
    const std::size_t n = std::size_t(32) << 20;
    std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
    best("triad_gbs", [&] { return triad_gbs(a, b, c, threads); });
  }
  {
    std::vector<float> buf((std::size_t(6) << 20) / sizeof(float), 1.0f);
    read_gbs(buf, 1);
    best("read_6mib_gbs", [&] { return read_gbs(buf, 50); });
  }
  {
    const std::size_t rows = 1 << 20, dim = 32;
    std::vector<float> table(rows * dim);
    for (std::size_t i = 0; i < table.size(); ++i) table[i] = float(i & 1023) * 1e-3f;
    std::vector<std::int32_t> idx(std::size_t(4) << 20);
    Rng rng(2);
    for (auto& v : idx) v = static_cast<std::int32_t>(rng.below(rows));
    const Rate rps = best("gather_rows_per_s", [&] { return gather_rows_per_s(table, idx); });
    out["gather_gbs"] = rps.wall * 128.0 / 1e9;
    out["gather_gbs_cpu"] = rps.cpu * 128.0 / 1e9;
  }
  if (json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("machine limits (best of %d, %d thread%s, ISA %s)\n", reps, threads, threads > 1 ? "s" : "",
                isa_name(isa));
    auto line = [&](const char* what, const char* key, const char* unit, double scale) {
      if (!out.contains(key)) return;
      std::printf("  %-28s %9.1f %-9s (per CPU second: %9.1f)\n", what, out[key].get<double>() / scale, unit,
                  out[std::string(key) + "_cpu"].get<double>() / scale);
    };
    line("fp32 FMA peak, AVX-512", "fma_avx512_gflops", "GFLOP/s", 1);
    line("fp32 FMA peak, AVX2", "fma_avx2_gflops", "GFLOP/s", 1);
    line("bf16 dot peak (vdpbf16ps)", "bf16_dot_gflops", "GFLOP/s", 1);
    line(("sgemm " + std::to_string(gemm_n) + "^3, 1 thread").c_str(), "gemm_gflops", "GFLOP/s", 1);
    line("STREAM triad", "triad_gbs", "GB/s", 1);
    line("read, 6 MiB buffer (L3)", "read_6mib_gbs", "GB/s", 1);
    line("random 128-B row gather", "gather_rows_per_s", "M rows/s", 1e6);
  }
  return 0;
}
