#include <cmath>
#include <limits>

#include "mtrank/train/pcgrad.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::train;

namespace {
std::vector<double> run(std::vector<double> g, Index K, Rng& rng, PcGradStats* st = nullptr) {
  const Index P = static_cast<Index>(g.size()) / K;
  std::vector<double> out(P);
  auto s = pcgrad<double>(MatrixView<const double>(g.data(), K, P), out, rng);
  if (st) *st = s;
  return out;
}
}  // namespace

TEST_CASE("PCGrad: orthogonal and aligned gradients pass through unchanged") {
  Rng rng(1);
  PcGradStats st;
  CHECK(run({1, 0, 0, 2}, 2, rng, &st) == std::vector<double>{1, 2});
  CHECK(st.conflicts == 0);
  CHECK(st.pairs == 2);
  CHECK(run({1, 1, 2, 3}, 2, rng, &st) == std::vector<double>{3, 4});
  CHECK(st.conflicts == 0);
  CHECK(run({1, -2, 3}, 1, rng) == std::vector<double>{1, -2, 3});  // one task: identity
}

TEST_CASE("PCGrad: two conflicting tasks, by hand") {
  // g1 = (1, 0), g2 = (-1, 1): g1·g2 = -1.
  // g1' = g1 - (-1/2) g2 = (0.5, 0.5);  g2' = g2 - (-1/1) g1 = (0, 1);  sum (0.5, 1.5).
  Rng rng(2);
  PcGradStats st;
  auto out = run({1, 0, -1, 1}, 2, rng, &st);
  CHECK(out[0] == Approx(0.5));
  CHECK(out[1] == Approx(1.5));
  CHECK(st.conflicts == 2);
}

TEST_CASE("PCGrad: three tasks, the projection order matters (explicit orders)") {
  // g0 = (1, 0), g1 = (0, 1), g2 = (-1, -1).
  std::vector<double> g = {1, 0, 0, 1, -1, -1}, out(2);
  MatrixView<const double> G(g.data(), 3, 2);
  // Orders A: g0' = (0.5, -0.5), g1' = (-0.5, 0.5), g2' = (0, 0) -> (0, 0), 4 projections.
  auto st = pcgrad_ordered<double>(G, out, {{1, 2}, {0, 2}, {0, 1}});
  CHECK(out[0] == Approx(0.0).margin(1e-15));
  CHECK(out[1] == Approx(0.0).margin(1e-15));
  CHECK(st.conflicts == 4);
  // Orders B: g0' = (0.5, 0), g1' = (0, 0.5), g2' = (0, 0) -> (0.5, 0.5), 6 projections.
  st = pcgrad_ordered<double>(G, out, {{2, 1}, {2, 0}, {1, 0}});
  CHECK(out[0] == Approx(0.5));
  CHECK(out[1] == Approx(0.5));
  CHECK(st.conflicts == 6);
  CHECK_THROWS_WITH(pcgrad_ordered<double>(G, out, {{1, 1}, {0, 2}, {0, 1}}), Catch::Contains("permutation"));

  // Random orders: every result is one of the 8 order combinations, and over seeds both
  // extremes above occur (the order really is random).
  bool saw_zero = false, saw_half = false;
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    Rng rng(seed);
    pcgrad<double>(G, out, rng);
    bool matches = false;
    for (int mask = 0; mask < 8; ++mask) {
      std::vector<std::vector<Index>> orders = {{1, 2}, {0, 2}, {0, 1}};
      for (int i = 0; i < 3; ++i)
        if (mask >> i & 1) std::swap(orders[i][0], orders[i][1]);
      std::vector<double> ref(2);
      pcgrad_ordered<double>(G, ref, orders);
      matches = matches || (ref[0] == out[0] && ref[1] == out[1]);
    }
    CHECK(matches);
    saw_zero = saw_zero || (std::abs(out[0]) < 1e-12 && std::abs(out[1]) < 1e-12);
    saw_half = saw_half || (std::abs(out[0] - 0.5) < 1e-12 && std::abs(out[1] - 0.5) < 1e-12);
  }
  CHECK(saw_zero);
  CHECK(saw_half);
}

TEST_CASE("PCGrad: after projection a conflicting pair is orthogonal (random, high dimension)") {
  Rng rng(5);
  const Index P = 257;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> g(2 * P);
    for (auto& v : g) v = rng.normal();
    double d = 0, n0 = 0, n1 = 0;
    for (Index p = 0; p < P; ++p) d += g[p] * g[P + p], n0 += g[p] * g[p], n1 += g[P + p] * g[P + p];
    std::vector<double> out(P);
    pcgrad<double>(MatrixView<const double>(g.data(), 2, P), out, rng);
    // Expected sum: each projected against the other when d < 0.
    for (Index p = 0; p < P; ++p) {
      double e = g[p] + g[P + p];
      if (d < 0) e -= d / n1 * g[P + p] + d / n0 * g[p];
      CHECK(out[p] == Approx(e).margin(1e-12));
    }
    if (d < 0) {  // g0' · g1 = 0
      double dot = 0;
      for (Index p = 0; p < P; ++p) dot += (g[p] - d / n1 * g[P + p]) * g[P + p];
      CHECK(dot == Approx(0.0).margin(1e-9));
    }
  }
}

TEST_CASE("PCGrad: float, strided input, errors") {
  // Rows with stride 3 (a wider buffer), float.
  std::vector<float> buf = {1, 0, 99, -1, 1, 99};
  std::vector<float> out(2);
  Rng rng(3);
  PcGradWorkspace<float> ws;
  pcgrad<float>(MatrixView<const float>(buf.data(), 2, 2, 3), out, rng, ws);
  CHECK(out[0] == Approx(0.5f));
  CHECK(out[1] == Approx(1.5f));
  std::vector<float> short_out(1);
  CHECK_THROWS_WITH(pcgrad<float>(MatrixView<const float>(buf.data(), 2, 2, 3), short_out, rng),
                    Catch::Contains("expected 2"));
  buf[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(pcgrad<float>(MatrixView<const float>(buf.data(), 2, 2, 3), out, rng),
                    Catch::Contains("task 1 element 1"));
  CHECK_THROWS_WITH(pcgrad<float>(MatrixView<const float>(buf.data(), 2, 2, 3), std::span<float>(buf.data() + 3, 2), rng),
                    Catch::Contains("aliases"));
}
