#include <cmath>

#include "mtrank/data/mmoe_synthetic.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::data;

TEST_CASE("mmoe synthetic: construction follows section 4.1", "[data][mmoe_synthetic]") {
  MmoeSyntheticOptions o;
  o.n = 200;
  o.correlation = 0.6;
  o.scale = 2.0;
  auto s = make_mmoe_synthetic(o);
  const Dataset& d = s.dataset;
  REQUIRE(d.rows == 200);
  REQUIRE(d.schema.dense.size() == 100);
  REQUIRE(d.schema.num_tasks() == 2);
  CHECK(d.schema.tasks[0].kind == TaskKind::regression);
  double n1 = 0, n2 = 0, u12 = 0, w1w2 = 0, nw2 = 0;
  for (std::size_t k = 0; k < s.u1.size(); ++k) {
    n1 += s.u1[k] * s.u1[k];
    n2 += s.u2[k] * s.u2[k];
    u12 += s.u1[k] * s.u2[k];
    w1w2 += s.w1[k] * s.w2[k];
    nw2 += s.w2[k] * s.w2[k];
  }
  CHECK(n1 == Approx(1.0));
  CHECK(n2 == Approx(1.0));
  CHECK(std::abs(u12) < 1e-12);
  CHECK(w1w2 == Approx(0.6 * 4.0));  // cos(w1, w2) = p, |w| = c
  CHECK(nw2 == Approx(4.0));
  REQUIRE(s.alpha.size() == 10);
  // Recompute a label from the formula; the residual is the noise ε ~ N(0, 0.01).
  double max_res = 0;
  for (Index r = 0; r < d.rows; ++r) {
    double z = 0;
    for (Index k = 0; k < 100; ++k) z += s.w1[k] * d.dense[r * 100 + k];
    double y = z;
    for (std::size_t j = 0; j < 10; ++j) y += std::sin(s.alpha[j] * z + s.beta[j]);
    max_res = std::max(max_res, std::abs(y - d.labels[r * 2]));
  }
  CHECK(max_res < 0.5);   // 5 standard deviations of ε
  CHECK(max_res > 0.05);  // the noise is there
  // u, α, β depend only on the seed; the samples on sample_seed.
  o.correlation = 0.1;
  o.sample_seed = 99;
  auto s2 = make_mmoe_synthetic(o);
  CHECK(s2.u1 == s.u1);
  CHECK(s2.alpha == s.alpha);
  CHECK(s2.dataset.dense[0] != d.dense[0]);
  o.correlation = 1.5;
  CHECK_THROWS_WITH(make_mmoe_synthetic(o), Catch::Contains("correlation"));
}

TEST_CASE("mmoe synthetic: label correlation rises with p", "[data][mmoe_synthetic]") {
  double prev = -2;
  for (double p : {-0.5, 0.0, 0.5, 0.9, 1.0}) {
    MmoeSyntheticOptions o;
    o.n = 4000;
    o.correlation = p;
    const double r = label_correlation(make_mmoe_synthetic(o).dataset);
    INFO("p = " << p << ": Pearson correlation of labels " << r);
    CHECK(r > prev + 0.05);
    CHECK(std::abs(r - p) < 0.15);  // with the paper's small α, β the labels are nearly linear
    prev = r;
  }
  // With strongly non-linear sines (α, β ~ N(0, 1)) the order is kept.
  MmoeSyntheticOptions o;
  o.n = 4000;
  o.alpha_std = o.beta_std = 1.0;
  o.correlation = 0.2;
  const double lo = label_correlation(make_mmoe_synthetic(o).dataset);
  o.correlation = 0.9;
  const double hi = label_correlation(make_mmoe_synthetic(o).dataset);
  INFO("nonlinear: p=0.2 -> " << lo << ", p=0.9 -> " << hi);
  CHECK(hi > lo + 0.3);
}
