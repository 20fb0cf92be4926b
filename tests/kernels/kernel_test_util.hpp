// Helpers shared by the kernel tests: ISA iteration, canary-guarded buffers, error stats.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::testing {

/// Column counts that exercise every tail of 8- and 16-lane kernels and the 64/128-column blocks.
inline const std::vector<Index>& kernel_dims() {
  static const std::vector<Index> d = {1, 3, 7, 8, 15, 16, 17, 31, 33, 64, 100, 128, 129, 200, 257};
  return d;
}

/// A float buffer of n values followed by a canary region that the kernels must not touch.
struct Guarded {
  static constexpr Index kPad = 40;
  static constexpr float kCanary = -12345.5f;
  std::vector<float> buf;
  explicit Guarded(Index n, float fill = 0.f) : buf(static_cast<std::size_t>(n + kPad), kCanary) {
    for (Index i = 0; i < n; ++i) buf[static_cast<std::size_t>(i)] = fill;
    n_ = n;
  }
  float* data() { return buf.data(); }
  float& operator[](Index i) { return buf[static_cast<std::size_t>(i)]; }
  bool canary_intact() const {
    for (std::size_t i = static_cast<std::size_t>(n_); i < buf.size(); ++i)
      if (buf[i] != kCanary) return false;
    return true;
  }

 private:
  Index n_ = 0;
};

/// Tracks the worst |got - want| against the bound atol + rtol * |want|.
struct ErrorStats {
  double atol, rtol;
  double max_abs = 0, max_rel = 0, worst_ratio = 0;
  double worst_x = 0, worst_got = 0, worst_want = 0;
  ErrorStats(double a, double r) : atol(a), rtol(r) {}
  /// `mag` is the magnitude the relative bound applies to (default |want|; backward kernels pass
  /// the size of the terms, since their result can cancel to ~0).
  void add(double x, double got, double want, double mag = -1) {
    if (mag < 0) mag = std::abs(want);
    const double err = std::abs(got - want);
    if (std::isnan(got) != std::isnan(want)) {
      worst_ratio = INFINITY;
      worst_x = x, worst_got = got, worst_want = want;
      return;
    }
    if (std::isnan(got) || got == want) return;
    max_abs = std::max(max_abs, err);
    if (std::abs(want) > 1e-30) max_rel = std::max(max_rel, err / std::abs(want));
    const double ratio = err / (atol + rtol * mag);
    if (ratio > worst_ratio) worst_ratio = ratio, worst_x = x, worst_got = got, worst_want = want;
  }
  bool ok() const { return worst_ratio <= 1.0; }
  std::string str() const {
    char s[256];
    std::snprintf(s, sizeof s, "max_abs %.3g max_rel %.3g (bound atol %.1g + rtol %.1g); worst at x=%.9g got %.9g want %.9g",
                  max_abs, max_rel, atol, rtol, worst_x, worst_got, worst_want);
    return s;
  }
};

/// Prints error statistics when MTRANK_PRINT_KERNEL_ERRORS is set (used to write docs/kernels.md).
inline void maybe_print(const std::string& what, const ErrorStats& e) {
  if (const char* p = std::getenv("MTRANK_PRINT_KERNEL_ERRORS"); p && *p) std::printf("%s: %s\n", what.c_str(), e.str().c_str());
}

}  // namespace mtrank::testing
