// Fused linear forward / backward (oneDNN matmul post-ops and sgemm + epilogue) against the
// scalar reference, the per-thread primitive cache, concurrency and thread-count determinism.
// The oneDNN ISA cap is process-wide: scripts/test.sh reruns this binary under MTRANK_ISA=avx2/ref.
#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "kernel_test_util.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/linear_fused.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {

std::vector<float> randn(Index n, Rng& rng, double sd = 1.0) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.normal(0.0, sd));
  return v;
}

// |got - want| <= tol * (sum_k |x_k w_k| + |b| + 1e-6) per element (f32 accumulation over K terms).
bool close_rows(const std::vector<float>& got, const std::vector<float>& want, Index M, Index N, Index ld,
                const std::vector<float>& mag, double tol, std::string& why) {
  for (Index m = 0; m < M; ++m)
    for (Index n = 0; n < N; ++n) {
      const double g = got[m * ld + n], w = want[m * ld + n], s = mag[m * N + n];
      // tol * terms: f32 accumulation; 3e-6 |y| + 1e-7: the vectorised sigmoid / tanh / gelu.
      if (!(std::abs(g - w) <= tol * (s + 1e-6) + 3e-6 * std::abs(w) + 1e-7)) {
        why = "at (" + std::to_string(m) + ", " + std::to_string(n) + "): got " + std::to_string(g) + " want " +
              std::to_string(w) + " terms " + std::to_string(s);
        return false;
      }
    }
  return true;
}

std::vector<float> term_magnitudes(Index M, Index K, Index N, const std::vector<float>& x, Index ldx,
                                   const std::vector<float>& w, const std::vector<float>& b) {
  std::vector<float> mag(static_cast<std::size_t>(M * N));
  for (Index m = 0; m < M; ++m)
    for (Index n = 0; n < N; ++n) {
      double s = b.empty() ? 0.0 : std::abs(b[n]);
      for (Index k = 0; k < K; ++k) s += std::abs(double(x[m * ldx + k]) * w[n * K + k]);
      mag[m * N + n] = float(s);
    }
  return mag;
}

}  // namespace

TEST_CASE("f32_linear_fused matches the reference for every implementation, activation and shape",
          "[kernels][onednn]") {
  const Index M = GENERATE(1, 2, 5, 64);
  const Index K = GENERATE(1, 3, 7, 17, 33, 100);
  const Index N = GENERATE(1, 3, 7, 17, 33, 100);
  Rng rng(static_cast<std::uint64_t>(M * 10007 + K * 101 + N));
  const Index ldx = K + 3, ldy = N + 2;  // strided input and output (column blocks)
  auto x = randn(M * ldx, rng), w = randn(N * K, rng, 1.0 / std::sqrt(double(K))), b = randn(N, rng);
  for (const bool with_bias : {true, false}) {
    const std::vector<float> bias = with_bias ? b : std::vector<float>{};
    const auto mag = term_magnitudes(M, K, N, x, ldx, w, bias);
    for (auto act : {FusedActivation::identity, FusedActivation::relu, FusedActivation::sigmoid, FusedActivation::tanh,
                     FusedActivation::gelu_erf}) {
      std::vector<float> want(static_cast<std::size_t>(M * ldy), -7.f);
      f32_linear_fused_ref(M, K, N, x.data(), ldx, w.data(), with_bias ? b.data() : nullptr, act, want.data(), ldy);
      for (auto impl : {LinearImpl::automatic, LinearImpl::onednn_matmul, LinearImpl::sgemm_epilogue}) {
        CAPTURE(M, K, N, with_bias, fused_activation_name(act), linear_impl_name(impl), isa_name(active_isa()));
        std::vector<float> got(static_cast<std::size_t>(M * ldy), -7.f);
        f32_linear_fused(M, K, N, x.data(), ldx, w.data(), with_bias ? b.data() : nullptr, act, got.data(), ldy, impl);
        std::string why;
        // Activations have slopes <= 1.13 (gelu), so the pre-activation bound carries over.
        const bool ok = close_rows(got, want, M, N, ldy, mag, 2e-6 * double(K + 2), why);
        INFO(why);
        REQUIRE(ok);
        for (Index m = 0; m < M; ++m)  // padding columns untouched
          for (Index n = N; n < ldy; ++n) REQUIRE(got[m * ldy + n] == -7.f);
      }
    }
  }
}

TEST_CASE("f32_linear_backward matches the reference (dW, db accumulate, dx overwrites)", "[kernels][onednn]") {
  const Index M = GENERATE(1, 2, 5, 64);
  const Index K = GENERATE(1, 7, 33, 100);
  const Index N = GENERATE(1, 3, 17, 100);
  Rng rng(static_cast<std::uint64_t>(M * 7 + K * 13 + N * 17));
  const Index lddy = N + 1, ldx = K + 2, lddx = K + 1;
  auto dy = randn(M * lddy, rng), x = randn(M * ldx, rng), w = randn(N * K, rng);
  auto dw0 = randn(N * K, rng), db0 = randn(N, rng);
  // Reference in double.
  std::vector<double> dw_ref(dw0.begin(), dw0.end()), db_ref(db0.begin(), db0.end()),
      dx_ref(static_cast<std::size_t>(M * K)), dw_mag(static_cast<std::size_t>(N * K)), dx_mag(dx_ref.size());
  for (Index n = 0; n < N; ++n)
    for (Index m = 0; m < M; ++m) {
      db_ref[n] += dy[m * lddy + n];
      for (Index k = 0; k < K; ++k) {
        dw_ref[n * K + k] += double(dy[m * lddy + n]) * x[m * ldx + k];
        dw_mag[n * K + k] += std::abs(double(dy[m * lddy + n]) * x[m * ldx + k]);
        dx_ref[m * K + k] += double(dy[m * lddy + n]) * w[n * K + k];
        dx_mag[m * K + k] += std::abs(double(dy[m * lddy + n]) * w[n * K + k]);
      }
    }
  for (auto impl : {LinearImpl::automatic, LinearImpl::onednn_matmul, LinearImpl::sgemm_epilogue}) {
    CAPTURE(M, K, N, linear_impl_name(impl));
    auto dw = dw0, db = db0;
    std::vector<float> dx(static_cast<std::size_t>(M * lddx), 99.f);
    f32_linear_backward(M, K, N, dy.data(), lddy, x.data(), ldx, w.data(), dw.data(), db.data(), dx.data(), lddx, impl);
    const double tol = 2e-6 * double(std::max(M, N) + 2);
    for (Index i = 0; i < N * K; ++i)
      REQUIRE(std::abs(dw[i] - dw_ref[i]) <= tol * (dw_mag[i] + std::abs(dw0[i]) + 1e-6));
    for (Index n = 0; n < N; ++n) REQUIRE(std::abs(db[n] - db_ref[n]) <= tol * (std::abs(db_ref[n]) + M + 1));
    for (Index m = 0; m < M; ++m) {
      for (Index k = 0; k < K; ++k) REQUIRE(std::abs(dx[m * lddx + k] - dx_ref[m * K + k]) <= tol * (dx_mag[m * K + k] + 1e-6));
      for (Index k = K; k < lddx; ++k) REQUIRE(dx[m * lddx + k] == 99.f);
    }
    // Null outputs are skipped.
    auto dw2 = dw0;
    f32_linear_backward(M, K, N, dy.data(), lddy, x.data(), ldx, w.data(), dw2.data(), nullptr, nullptr, 0, impl);
    for (Index i = 0; i < N * K; ++i) REQUIRE(dw2[i] == dw[i]);
  }
}

TEST_CASE("f32_linear_fused rejects bad shapes", "[kernels][onednn]") {
  std::vector<float> x(8), w(8), y(8);
  REQUIRE_THROWS_AS(f32_linear_fused(1, 0, 2, x.data(), 0, w.data(), nullptr, FusedActivation::relu, y.data(), 2), Error);
  REQUIRE_THROWS_AS(f32_linear_fused(1, 4, 2, x.data(), 3, w.data(), nullptr, FusedActivation::relu, y.data(), 2), Error);
  REQUIRE_THROWS_AS(f32_linear_fused(1, 4, 2, x.data(), 4, w.data(), nullptr, FusedActivation::relu, y.data(), 1), Error);
}

TEST_CASE("oneDNN primitive cache: same shape reuses, different shapes coexist", "[kernels][onednn]") {
  clear_linear_cache();
  Rng rng(3);
  auto x = randn(64 * 40, rng), w = randn(40 * 40, rng), b = randn(40, rng);
  std::vector<float> y(64 * 40);
  auto run = [&](Index M, Index K, Index N, FusedActivation a) {
    f32_linear_fused(M, K, N, x.data(), K, w.data(), b.data(), a, y.data(), N, LinearImpl::onednn_matmul);
  };
  run(8, 16, 8, FusedActivation::relu);
  auto s = linear_cache_stats();
  REQUIRE(s.entries == 1);
  REQUIRE(s.misses == 1);
  run(8, 16, 8, FusedActivation::relu);
  run(8, 16, 8, FusedActivation::relu);
  s = linear_cache_stats();
  REQUIRE(s.entries == 1);
  REQUIRE(s.hits == 2);
  run(9, 16, 8, FusedActivation::relu);      // another batch size
  run(8, 16, 8, FusedActivation::sigmoid);   // another activation
  run(8, 40, 40, FusedActivation::relu);     // another shape
  s = linear_cache_stats();
  REQUIRE(s.entries == 4);
  REQUIRE(s.misses == 4);
  run(8, 16, 8, FusedActivation::relu);      // the first one is still there
  REQUIRE(linear_cache_stats().hits == 3);
  // The thread count is part of the key.
  set_num_threads(2);
  run(8, 16, 8, FusedActivation::relu);
  set_num_threads(1);
  REQUIRE(linear_cache_stats().entries == 5);
  // Bounded: filling past the capacity clears it.
  for (Index m = 1; m <= Index(kLinearCacheCapacity) + 1; ++m) run(m, 4, 4, FusedActivation::identity);
  REQUIRE(linear_cache_stats().entries <= kLinearCacheCapacity);
  clear_linear_cache();
  REQUIRE(linear_cache_stats().entries == 0);
}

TEST_CASE("f32_linear_fused from 4 threads at once gives the single-thread results", "[kernels][onednn]") {
  Rng rng(4);
  const std::vector<std::array<Index, 3>> shapes = {{1, 64, 32}, {5, 33, 17}, {64, 100, 7}, {32, 128, 64}};
  struct Case {
    std::vector<float> x, w, b, want;
  };
  std::vector<Case> cases;
  for (auto [M, K, N] : shapes) {
    Case c{randn(M * K, rng), randn(N * K, rng), randn(N, rng), std::vector<float>(static_cast<std::size_t>(M * N))};
    f32_linear_fused(M, K, N, c.x.data(), K, c.w.data(), c.b.data(), FusedActivation::tanh, c.want.data(), N,
                     LinearImpl::onednn_matmul);
    cases.push_back(std::move(c));
  }
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int it = 0; it < 50; ++it) {
        const std::size_t i = static_cast<std::size_t>(t + it) % shapes.size();
        auto [M, K, N] = shapes[i];
        for (auto impl : {LinearImpl::onednn_matmul, LinearImpl::automatic}) {
          std::vector<float> y(static_cast<std::size_t>(M * N));
          f32_linear_fused(M, K, N, cases[i].x.data(), K, cases[i].w.data(), cases[i].b.data(), FusedActivation::tanh,
                           y.data(), N, impl);
          if (impl == LinearImpl::onednn_matmul && std::memcmp(y.data(), cases[i].want.data(), y.size() * 4) != 0) ++bad;
          for (std::size_t j = 0; j < y.size(); ++j)
            if (!(std::abs(y[j] - cases[i].want[j]) <= 1e-4f)) ++bad;
        }
      }
    });
  for (auto& th : threads) th.join();
  REQUIRE(bad.load() == 0);
}

TEST_CASE("f32_linear_fused is bit-identical for the same thread count", "[kernels][onednn]") {
  Rng rng(5);
  const Index M = 256, K = 512, N = 256;
  auto x = randn(M * K, rng), w = randn(N * K, rng), b = randn(N, rng);
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (auto impl : {LinearImpl::onednn_matmul, LinearImpl::sgemm_epilogue}) {
      CAPTURE(threads, linear_impl_name(impl));
      std::vector<float> y1(static_cast<std::size_t>(M * N)), y2(y1.size());
      f32_linear_fused(M, K, N, x.data(), K, w.data(), b.data(), FusedActivation::gelu_erf, y1.data(), N, impl);
      f32_linear_fused(M, K, N, x.data(), K, w.data(), b.data(), FusedActivation::gelu_erf, y2.data(), N, impl);
      REQUIRE(std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0);
      std::vector<float> dw1(static_cast<std::size_t>(N * K)), dw2(dw1.size()), dx1(x.size()), dx2(x.size());
      f32_linear_backward(M, K, N, y1.data(), N, x.data(), K, w.data(), dw1.data(), nullptr, dx1.data(), K, impl);
      f32_linear_backward(M, K, N, y1.data(), N, x.data(), K, w.data(), dw2.data(), nullptr, dx2.data(), K, impl);
      REQUIRE(std::memcmp(dw1.data(), dw2.data(), dw1.size() * 4) == 0);
      REQUIRE(std::memcmp(dx1.data(), dx2.data(), dx1.size() * 4) == 0);
    }
  }
  set_num_threads(1);
}
