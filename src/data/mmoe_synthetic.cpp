#include "mtrank/data/mmoe_synthetic.hpp"

#include <cmath>
#include <string>

#include "mtrank/core/rng.hpp"

namespace mtrank::data {

namespace {
double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
void unit(std::vector<double>& v) {
  const double n = std::sqrt(dot(v, v));
  for (auto& x : v) x /= n;
}
}  // namespace

MmoeSynthetic make_mmoe_synthetic(const MmoeSyntheticOptions& o) {
  require(o.n >= 0, "make_mmoe_synthetic: n must be >= 0, got ", o.n);
  require(o.dim >= 2, "make_mmoe_synthetic: dim must be >= 2 (two orthogonal vectors), got ", o.dim);
  require(o.correlation >= -1 && o.correlation <= 1, "make_mmoe_synthetic: correlation must be in [-1, 1], got ",
          o.correlation);
  require(o.num_sines >= 0, "make_mmoe_synthetic: num_sines must be >= 0");
  require(o.alpha_std >= 0 && o.beta_std >= 0 && o.noise_std >= 0, "make_mmoe_synthetic: standard deviations must be >= 0");
  const Index d = o.dim;
  MmoeSynthetic out;
  Rng param(o.seed);
  // u1, u2: Gaussian vectors, Gram-Schmidt.
  out.u1.resize(static_cast<std::size_t>(d));
  out.u2.resize(static_cast<std::size_t>(d));
  for (auto& x : out.u1) x = param.normal();
  unit(out.u1);
  for (auto& x : out.u2) x = param.normal();
  const double proj = dot(out.u1, out.u2);
  for (Index k = 0; k < d; ++k) out.u2[k] -= proj * out.u1[k];
  unit(out.u2);
  const double p = o.correlation, c = o.scale, q = std::sqrt(std::max(0.0, 1 - p * p));
  out.w1.resize(static_cast<std::size_t>(d));
  out.w2.resize(static_cast<std::size_t>(d));
  for (Index k = 0; k < d; ++k) {
    out.w1[k] = c * out.u1[k];
    out.w2[k] = c * (p * out.u1[k] + q * out.u2[k]);
  }
  out.alpha.resize(static_cast<std::size_t>(o.num_sines));
  out.beta.resize(static_cast<std::size_t>(o.num_sines));
  for (auto& a : out.alpha) a = param.normal(0, o.alpha_std);
  for (auto& b : out.beta) b = param.normal(0, o.beta_std);

  Dataset& ds = out.dataset;
  for (Index k = 0; k < d; ++k) ds.schema.dense.push_back({"x" + std::to_string(k)});
  ds.schema.tasks = {{"y1", TaskKind::regression}, {"y2", TaskKind::regression}};
  ds.rows = o.n;
  ds.dense.resize(Shape{o.n, d});
  ds.labels.resize(Shape{o.n, 2});
  ds.label_mask.resize(Shape{o.n, 2});
  ds.label_mask.fill(1.0f);
  ds.user.resize(static_cast<std::size_t>(o.n));
  Rng rs(o.sample_seed ? o.sample_seed : o.seed ^ 0x9e3779b97f4a7c15ULL);
  std::vector<double> x(static_cast<std::size_t>(d));
  for (Index r = 0; r < o.n; ++r) {
    for (Index k = 0; k < d; ++k) {
      x[k] = rs.normal();
      ds.dense[r * d + k] = static_cast<float>(x[k]);
    }
    const double z[2] = {dot(out.w1, x), dot(out.w2, x)};
    for (int i = 0; i < 2; ++i) {
      double y = z[i];
      for (Index j = 0; j < o.num_sines; ++j) y += std::sin(out.alpha[j] * z[i] + out.beta[j]);
      y += rs.normal(0, o.noise_std);
      ds.labels[r * 2 + i] = static_cast<float>(y);
    }
    ds.user[r] = r;
  }
  ds.validate();
  return out;
}

double label_correlation(const Dataset& d, Index a, Index b) {
  const Index K = d.schema.num_tasks();
  require(a >= 0 && a < K && b >= 0 && b < K, "label_correlation: task index out of range [0, ", K, ")");
  require(d.rows >= 2, "label_correlation: need at least 2 rows");
  double ma = 0, mb = 0;
  for (Index r = 0; r < d.rows; ++r) {
    ma += d.labels[r * K + a];
    mb += d.labels[r * K + b];
  }
  ma /= double(d.rows);
  mb /= double(d.rows);
  double sab = 0, saa = 0, sbb = 0;
  for (Index r = 0; r < d.rows; ++r) {
    const double da = d.labels[r * K + a] - ma, db = d.labels[r * K + b] - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return sab / std::sqrt(saa * sbb);
}

}  // namespace mtrank::data
