// Shared helpers for tests: random fills, shared/data lookup, temporary directories.
#pragma once
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "mtrank/core/rng.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/core/threading.hpp"

namespace mtrank::testing {

/// ../shared/data next to the source tree, or MTRANK_DATA_DIR; empty when absent (tests skip).
inline std::filesystem::path shared_data_dir() {
  if (const char* env = std::getenv("MTRANK_DATA_DIR"); env && *env && std::filesystem::exists(env)) return env;
  std::filesystem::path p = MTRANK_SHARED_DATA_DIR;
  if (std::filesystem::exists(p)) return p;
  return {};
}

/// A fresh temporary directory for one test.
inline std::filesystem::path temp_dir(const std::string& name) {
  std::filesystem::path base = std::filesystem::temp_directory_path();
  if (const char* env = std::getenv("MTRANK_TEST_TMP"); env && *env) base = env;
  auto dir = base / ("mtrank_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

template <class T>
inline void fill_normal(TensorT<T>& t, Rng& rng, double stddev = 1.0) {
  for (auto& v : t) v = static_cast<T>(rng.normal(0.0, stddev));
}
template <class T>
inline TensorT<T> random_tensor(Shape s, Rng& rng, double stddev = 1.0) {
  TensorT<T> t(s);
  fill_normal(t, rng, stddev);
  return t;
}
inline std::vector<double> random_vector(std::size_t n, Rng& rng) {
  std::vector<double> v(n);
  for (auto& x : v) x = rng.normal();
  return v;
}

/// Sets the intra-op thread count for a scope and restores the default of 1 (other tests assume it).
struct ThreadsGuard {
  explicit ThreadsGuard(int n) { set_num_threads(n); }
  ~ThreadsGuard() { set_num_threads(1); }
  ThreadsGuard(const ThreadsGuard&) = delete;
  ThreadsGuard& operator=(const ThreadsGuard&) = delete;
};

#if defined(__SANITIZE_THREAD__)
inline constexpr bool kOpenMpInvisibleToTsan = true;
#else
inline constexpr bool kOpenMpInvisibleToTsan = false;
#endif

}  // namespace mtrank::testing

// libgomp is not built with TSan, so TSan cannot see the fork/join synchronisation of a parallel
// region and reports the compiler-generated argument block of `#pragma omp parallel` (written by
// the caller, read by the team) as a race: cases that start OpenMP teams skip under TSan.
#define MTRANK_SKIP_OPENMP_TEAMS_UNDER_TSAN()                                             \
  do {                                                                                    \
    if (mtrank::testing::kOpenMpInvisibleToTsan) {                                        \
      WARN("skipped under TSan: libgomp's fork/join is not visible to ThreadSanitizer"); \
      return;                                                                             \
    }                                                                                     \
  } while (0)

#define MTRANK_SKIP_WITHOUT_DATA(dir)                                   \
  do {                                                                  \
    if ((dir).empty()) {                                                \
      WARN("skipped: ../shared/data not found (set MTRANK_DATA_DIR)"); \
      return;                                                           \
    }                                                                   \
  } while (0)
