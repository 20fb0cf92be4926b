#include <cmath>
#include <limits>

#include "mtrank/train/metrics.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::train;

namespace {
using V = std::vector<float>;

// O(n²) pair counting: the definition of (weighted) AUC with ties counted ½.
double auc_oracle(const V& s, const V& y, const V& w) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < s.size(); ++i)
    for (std::size_t j = 0; j < s.size(); ++j) {
      if (y[i] != 1 || y[j] != 0) continue;
      const double ww = (w.empty() ? 1.0 : double(w[i])) * (w.empty() ? 1.0 : double(w[j]));
      den += ww;
      num += ww * (s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0);
    }
  return num / den;
}
}  // namespace

TEST_CASE("AUC: hand examples with ties, perfect and inverse ranking") {
  CHECK(auc(V{0.3f, 0.3f, 0.3f, 0.3f}, V{1, 0, 1, 0}) == 0.5);
  CHECK(auc(V{0.1f, 0.4f, 0.35f, 0.8f}, V{0, 0, 1, 1}) == 0.75);
  // Pairs (pos, neg): (.5,.5) ½, (.5,.2) 1, (.9,.5) 1, (.9,.2) 1 -> 3.5 / 4.
  CHECK(auc(V{0.5f, 0.5f, 0.2f, 0.9f}, V{1, 0, 0, 1}) == 0.875);
  CHECK(auc(V{0.1f, 0.2f, 0.3f, 0.9f}, V{0, 0, 1, 1}) == 1.0);
  CHECK(auc(V{0.9f, 0.8f, 0.3f, 0.1f}, V{0, 0, 1, 1}) == 0.0);
  // Weights: the positive at 0.9 (w 3) beats both negatives, the one at 0.4 (w 1) beats the
  // negative at 0.2 (w 1) only: (3·(1+2) + 1·1) / (4·3) = 10/12.
  CHECK(auc(V{0.9f, 0.4f, 0.2f, 0.6f}, V{1, 1, 0, 0}, V{3, 1, 1, 2}) == Approx(10.0 / 12));
  CHECK(std::isnan(auc(V{0.1f, 0.2f}, V{1, 1})));
  CHECK(std::isnan(auc(V{}, V{})));
}

TEST_CASE("AUC equals the O(n^2) pair-counting oracle on random data with many ties") {
  Rng rng(11);
  for (int trial = 0; trial < 30; ++trial) {
    const std::size_t n = 1 + rng.below(300);
    const int levels = 1 + static_cast<int>(rng.below(6));  // few distinct scores -> many ties
    V s(n), y(n), w(n);
    for (std::size_t i = 0; i < n; ++i) {
      s[i] = static_cast<float>(rng.below(levels)) * 0.25f;
      y[i] = rng.bernoulli(0.3) ? 1.0f : 0.0f;
      w[i] = static_cast<float>(rng.uniform(0.0, 2.0));
    }
    y[0] = 1, y[n > 1 ? 1 : 0] = n > 1 ? 0.0f : 1.0f;
    INFO("n " << n << " levels " << levels);
    if (n == 1) {
      CHECK(std::isnan(auc(s, y)));
      continue;
    }
    CHECK(auc(s, y) == Approx(auc_oracle(s, y, {})).epsilon(1e-12));
    CHECK(auc(s, y, w) == Approx(auc_oracle(s, y, w)).epsilon(1e-9));
  }
}

TEST_CASE("GAUC: impression-weighted per-user AUC, one-class users skipped") {
  // user 7: scores .9 .1 .5 labels 1 0 0 -> AUC 1 (3 impressions)
  // user 3: scores .2 .8 labels 1 0 -> AUC 0 (2 impressions)
  // user 5: two positives -> skipped
  V s = {0.9f, 0.2f, 0.1f, 0.3f, 0.8f, 0.5f, 0.4f};
  V y = {1, 1, 0, 1, 0, 0, 1};
  std::vector<std::int64_t> u = {7, 3, 7, 5, 3, 7, 5};
  auto g = gauc(s, y, u);
  CHECK(g.value == Approx(0.6));
  CHECK(g.users == 2);
  CHECK(g.skipped_users == 1);
  // Weighted: n_u = Σ weights of the user's rows; weight 2 on user 3's rows -> (3·1 + 4·0) / 7.
  V w = {1, 2, 1, 1, 2, 1, 1};
  CHECK(gauc(s, y, u, w).value == Approx(3.0 / 7));
  // Nobody with both classes: NaN.
  CHECK(std::isnan(gauc(V{0.1f, 0.2f}, V{1, 0}, std::vector<std::int64_t>{1, 2}).value));
  CHECK_THROWS_WITH(gauc(s, y, std::vector<std::int64_t>{1}), Catch::Contains("users has 1"));
}

TEST_CASE("Log loss, clipping, and rejected inputs") {
  CHECK(log_loss(V{0.8f, 0.3f}, V{1, 0}) == Approx(-(std::log(0.8) + std::log(0.7)) / 2).epsilon(1e-6));
  CHECK(log_loss(V{0.0f}, V{1}) == Approx(-std::log(1e-7)));
  CHECK(std::isfinite(log_loss(V{1.0f}, V{0})));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(auc(V{0.1f, nan}, V{0, 1}), Catch::Contains("auc: score[1] is nan"));
  CHECK_THROWS_WITH(auc(V{0.1f, 0.2f}, V{0, 0.5f}), Catch::Contains("label[1] is 0.5"));
  CHECK_THROWS_WITH(auc(V{0.1f, 0.2f}, V{0, 1}, V{1, -1}), Catch::Contains("weight[1]"));
  CHECK_THROWS_WITH(auc(V{0.1f, 0.2f}, V{0}), Catch::Contains("labels has 1"));
  CHECK_THROWS_WITH(log_loss(V{1.5f}, V{1}), Catch::Contains("prob[0] is 1.5"));
}

TEST_CASE("evaluate_tasks: per-task metrics with masks, users and kinds") {
  // Task 0 (binary "ctr"), task 1 (regression "dwell"). Row 3 has no ctr label.
  const Index N = 5;
  Tensor p(Shape{N, 2}), y(Shape{N, 2}), m(Shape{N, 2}, 1.0f);
  const float pv[] = {0.9f, 1.0f, 0.2f, 2.0f, 0.6f, 0.5f, 0.7f, 4.0f, 0.1f, 3.0f};
  const float yv[] = {1, 1.5f, 0, 2.5f, 1, 0.5f, 1, 4.0f, 0, 2.0f};
  std::copy(pv, pv + 10, p.begin());
  std::copy(yv, yv + 10, y.begin());
  m[3 * 2] = 0;
  std::vector<std::int64_t> users = {1, 1, 2, 2, 2};
  std::vector<TaskKind> kinds = {TaskKind::binary, TaskKind::regression};
  std::vector<std::string> names = {"ctr", "dwell"};
  auto r = evaluate_tasks(p.matrix(), y.matrix(), m.matrix(), users, kinds, names);
  REQUIRE(r.size() == 2);
  const auto& c = r[0];
  CHECK(c.name == "ctr");
  CHECK(c.count == 4);
  CHECK(c.auc == 1.0);
  // user 1: (.9, 1), (.2, 0) -> 1 (2 rows); user 2: (.6, 1), (.1, 0) -> 1 (2 rows; row 3 masked)
  CHECK(c.gauc == 1.0);
  CHECK(c.gauc_users == 2);
  CHECK(c.mean_prediction == Approx((0.9 + 0.2 + 0.6 + 0.1) / 4));
  CHECK(c.mean_label == Approx(0.5));
  CHECK(c.calibration == Approx((0.9 + 0.2 + 0.6 + 0.1) / 4 / 0.5));
  CHECK(c.log_loss == Approx(log_loss(V{0.9f, 0.2f, 0.6f, 0.1f}, V{1, 0, 1, 0})));
  const auto& d = r[1];
  CHECK(d.kind == TaskKind::regression);
  CHECK(d.count == 5);
  CHECK(d.mse == Approx((0.25 + 0.25 + 0 + 0 + 1) / 5.0));
  CHECK(std::isnan(d.auc));
  CHECK(std::isnan(d.log_loss));

  // Bad inputs name the task and row.
  Tensor bad = p;
  bad[2 * 2] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(evaluate_tasks(bad.matrix(), y.matrix(), m.matrix(), users, kinds, names),
                    Catch::Contains("task 'ctr' row 2: prediction is nan"));
  bad = p;
  bad[0] = 3.0f;  // a logit passed as a probability
  CHECK_THROWS_WITH(evaluate_tasks(bad.matrix(), y.matrix(), m.matrix(), users, kinds, names),
                    Catch::Contains("not a probability"));
  CHECK_THROWS_WITH(evaluate_tasks(p.matrix(), y.matrix(), m.matrix(), users, std::vector<TaskKind>{TaskKind::binary}),
                    Catch::Contains("1 task kinds for 2"));
}

TEST_CASE("MetricAccumulator: batches add up to the whole, bad batches change nothing") {
  Rng rng(4);
  const Index N = 200, K = 3;
  Tensor p(Shape{N, K}), y(Shape{N, K}), m(Shape{N, K});
  std::vector<std::int64_t> users(N);
  V w(N);
  for (Index b = 0; b < N; ++b) {
    users[b] = static_cast<std::int64_t>(rng.below(15));
    w[b] = static_cast<float>(rng.uniform(0.5, 1.5));
    for (Index k = 0; k < K; ++k) {
      p[b * K + k] = static_cast<float>(rng.below(10)) / 10.0f;
      y[b * K + k] = k == 2 ? static_cast<float>(rng.normal()) : (rng.bernoulli(0.4) ? 1.0f : 0.0f);
      m[b * K + k] = rng.bernoulli(0.8) ? 1.0f : 0.0f;
    }
  }
  std::vector<TaskKind> kinds = {TaskKind::binary, TaskKind::binary, TaskKind::regression};
  auto whole = evaluate_tasks(p.matrix(), y.matrix(), m.matrix(), users, kinds, {}, w);
  MetricAccumulator acc(kinds);
  for (Index b0 = 0; b0 < N; b0 += 64) {
    const Index n = std::min<Index>(64, N - b0);
    acc.append(p.matrix().row_block(b0, n), y.matrix().row_block(b0, n), m.matrix().row_block(b0, n),
               std::span<const std::int64_t>(users).subspan(b0, n), std::span<const float>(w).subspan(b0, n));
  }
  // A rejected batch leaves the accumulator as it was.
  Tensor bad(Shape{1, K}, 0.5f), ybad(Shape{1, K}, 2.0f);
  std::vector<std::int64_t> u1 = {0};
  V w1 = {1};
  CHECK_THROWS_WITH(acc.append(bad.matrix(), ybad.matrix(), {}, u1, w1), Catch::Contains("task 'task0' row 0: label is 2"));
  CHECK_THROWS_WITH(acc.append(bad.matrix(), bad.matrix(), {}), Catch::Contains("users given for earlier batches"));
  CHECK(acc.rows() == N);
  auto parts = acc.compute();
  for (Index k = 0; k < K; ++k) {
    INFO("task " << k);
    CHECK(parts[k].count == whole[k].count);
    CHECK(parts[k].weight_sum == Approx(whole[k].weight_sum));
    CHECK(parts[k].mse == Approx(whole[k].mse));
    if (k < 2) {
      CHECK(parts[k].auc == whole[k].auc);
      CHECK(parts[k].gauc == whole[k].gauc);
      CHECK(parts[k].log_loss == Approx(whole[k].log_loss));
      CHECK(parts[k].gauc_users + parts[k].gauc_skipped_users <= 15);
      // The weighted AUC of the accumulator equals the free function on the present entries.
      V s, l, ww;
      for (Index b = 0; b < N; ++b)
        if (m[b * K + k] != 0) s.push_back(p[b * K + k]), l.push_back(y[b * K + k]), ww.push_back(w[b]);
      CHECK(parts[k].auc == Approx(auc_oracle(s, l, ww)).epsilon(1e-9));
    }
  }
  acc.clear();
  CHECK(acc.rows() == 0);
  CHECK(acc.compute()[0].count == 0);
  CHECK(std::isnan(acc.compute()[0].auc));
}

TEST_CASE("metrics: evaluate_tasks_by_scene equals evaluate_tasks on each scene's rows", "[train][metrics]") {
  Rng rng(17);
  const Index N = 300, K = 2;
  Tensor p(Shape{N, K}), y(Shape{N, K}), m(Shape{N, K});
  std::vector<std::int64_t> users(N);
  std::vector<std::int32_t> scenes(N);
  V w(N);
  for (Index b = 0; b < N; ++b) {
    users[b] = static_cast<std::int64_t>(rng.below(20));
    scenes[b] = b % 7 == 0 ? 2 : static_cast<std::int32_t>(rng.below(2));  // scene 3 has no rows
    w[b] = float(0.5 + rng.uniform());
    for (Index k = 0; k < K; ++k) {
      p[b * K + k] = float(rng.uniform());
      y[b * K + k] = rng.uniform() < p[b * K + k] ? 1.0f : 0.0f;
      m[b * K + k] = rng.uniform() < 0.9 ? 1.0f : 0.0f;
    }
  }
  const std::vector<TaskKind> kinds = {TaskKind::binary, TaskKind::binary};
  const std::vector<std::string> names = {"click", "like"};
  auto by = evaluate_tasks_by_scene(p.matrix(), y.matrix(), m.matrix(), users, scenes, 4, kinds, names, w);
  REQUIRE(by.size() == 4);
  Index total = 0;
  for (std::int32_t s = 0; s < 3; ++s) {
    CAPTURE(s);
    CHECK(by[s].scene == s);
    std::vector<Index> rows;
    for (Index b = 0; b < N; ++b)
      if (scenes[b] == s) rows.push_back(b);
    CHECK(by[s].rows == static_cast<Index>(rows.size()));
    total += by[s].rows;
    const Index n = static_cast<Index>(rows.size());
    Tensor ps(Shape{n, K}), ys(Shape{n, K}), ms(Shape{n, K});
    std::vector<std::int64_t> us;
    V ws;
    for (Index i = 0; i < n; ++i) {
      for (Index k = 0; k < K; ++k) {
        ps[i * K + k] = p[rows[i] * K + k];
        ys[i * K + k] = y[rows[i] * K + k];
        ms[i * K + k] = m[rows[i] * K + k];
      }
      us.push_back(users[rows[i]]);
      ws.push_back(w[rows[i]]);
    }
    auto expect = evaluate_tasks(ps.matrix(), ys.matrix(), ms.matrix(), us, kinds, names, ws);
    for (Index k = 0; k < K; ++k) {
      CHECK(by[s].tasks[k].name == names[k]);
      CHECK(by[s].tasks[k].count == expect[k].count);
      CHECK(by[s].tasks[k].auc == expect[k].auc);
      CHECK(by[s].tasks[k].gauc == expect[k].gauc);
      CHECK(by[s].tasks[k].log_loss == expect[k].log_loss);
    }
  }
  CHECK(total == N);
  CHECK(by[3].rows == 0);
  CHECK(by[3].tasks[0].count == 0);
  CHECK(std::isnan(by[3].tasks[0].auc));
  scenes[5] = 4;
  CHECK_THROWS_WITH(evaluate_tasks_by_scene(p.matrix(), y.matrix(), m.matrix(), users, scenes, 4, kinds, names),
                    Catch::Contains("row 5 has scene 4"));
  scenes.pop_back();
  CHECK_THROWS_WITH(evaluate_tasks_by_scene(p.matrix(), y.matrix(), m.matrix(), users, scenes, 4, kinds, names),
                    Catch::Contains("scenes has 299 entries"));
}
