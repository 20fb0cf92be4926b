#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "mtrank/data/simulator.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::data;

namespace {

FeedSimulatorOptions small_options() {
  FeedSimulatorOptions o;
  o.users = 400;
  o.items = 1500;
  o.categories = 20;
  o.authors = 60;
  o.impressions = 40000;
  return o;
}

double mean_col(const Tensor& t, Index rows, Index K, Index k, const std::vector<Index>* idx = nullptr) {
  double s = 0;
  Index n = 0;
  for (Index r = 0; r < rows; ++r) {
    s += t[r * K + k];
    ++n;
  }
  return s / double(n);
}

// AUC of a binary indicator (ties count 1/2) for labels.
double indicator_auc(const std::vector<int>& x, const std::vector<float>& y) {
  double pos[2] = {0, 0}, neg[2] = {0, 0};
  for (std::size_t i = 0; i < x.size(); ++i) (y[i] > 0.5f ? pos : neg)[x[i]] += 1;
  const double P = pos[0] + pos[1], N = neg[0] + neg[1];
  return (pos[1] * neg[0] + 0.5 * (pos[1] * neg[1] + pos[0] * neg[0])) / (P * N);
}

}  // namespace

TEST_CASE("simulator: default options are valid and deterministic", "[data][simulator]") {
  const auto t0 = std::chrono::steady_clock::now();
  FeedSimulation a = simulate_feed();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Speed is measured by the benchmarks (bench/), not asserted here: a loaded or slower machine
  // must not fail a functional test. The time is reported for information only.
  WARN("simulate_feed(default 200k impressions): " << secs << " s");
  const Dataset& d = a.dataset;
  REQUIRE(d.rows == 200000);
  d.validate();
  CHECK(d.schema.num_scenes == 2);
  CHECK(d.schema.sparse_index("scene") == 4);
  CHECK(d.schema.sequences[0].table == "item_id");
  CHECK(d.schema.sequences[1].table == "category");

  // Same seed -> identical; different seed -> different.
  auto o = small_options();
  Dataset b1 = make_feed_dataset(o), b2 = make_feed_dataset(o);
  CHECK(b1.sparse == b2.sparse);
  CHECK(std::equal(b1.oracle.begin(), b1.oracle.end(), b2.oracle.begin()));
  CHECK(b1.sequences[0].ids == b2.sequences[0].ids);
  o.seed = 7;
  CHECK(make_feed_dataset(o).sparse != b1.sparse);
}

TEST_CASE("simulator: labels follow the oracle probabilities", "[data][simulator]") {
  FeedSimulation sim = simulate_feed(small_options());
  const Dataset& d = sim.dataset;
  const Index N = d.rows;
  // Mean label matches mean oracle probability (within ~4 standard errors).
  for (Index k = 0; k < 3; ++k) {
    const double ml = mean_col(d.labels, N, 3, k), mo = mean_col(d.oracle, N, 3, k);
    INFO("task " << d.schema.tasks[k].name << " label rate " << ml << " oracle mean " << mo);
    CHECK(std::abs(ml - mo) < 4 * std::sqrt(mo * (1 - mo) / double(N)) + 1e-3);
    CHECK(ml > 0.01);
    CHECK(ml < 0.6);
  }
  // Interaction and long dwell require a click, in labels and in probabilities.
  for (Index r = 0; r < N; ++r) {
    const float* y = d.labels.data() + r * 3;
    const float* p = d.oracle.data() + r * 3;
    if (y[0] == 0.0f) {
      REQUIRE(y[1] == 0.0f);
      REQUIRE(y[2] == 0.0f);
      REQUIRE(sim.dwell_seconds[r] == 0.0f);
    } else {
      REQUIRE(y[2] == (sim.dwell_seconds[r] > 60.0f ? 1.0f : 0.0f));
    }
    REQUIRE(p[1] <= p[0]);
    REQUIRE(p[2] <= p[0]);
  }
  // The scenes differ in click rate and in which items they show (fresh vs popular).
  double clicks[2] = {0, 0}, rows[2] = {0, 0}, age[2] = {0, 0};
  for (Index r = 0; r < N; ++r) {
    const int s = d.scene[r];
    REQUIRE(d.sparse[r * 5 + 4] == s);
    clicks[s] += d.labels[r * 3];
    rows[s] += 1;
    age[s] += d.dense[r * 5 + 4];
  }
  CHECK(rows[1] / N == Approx(0.35).margin(0.02));
  CHECK(age[1] / rows[1] < 0.5 * age[0] / rows[0]);  // trending shows fresher items
  CHECK(clicks[0] / rows[0] != Approx(clicks[1] / rows[1]).epsilon(0.05));

  auto m = oracle_metrics(d);
  REQUIRE(m.size() == 3);
  for (const auto& t : m) {
    INFO(t.name << " oracle AUC " << t.auc << " GAUC " << t.gauc << " logloss " << t.log_loss);
    CHECK(t.auc > 0.70);
    CHECK(t.auc < 0.99);
    CHECK(t.gauc > 0.6);
    CHECK(t.log_loss < 0.6);
  }
}

TEST_CASE("simulator: click_seq is the user's earlier clicks, most recent last", "[data][simulator]") {
  auto o = small_options();
  o.max_seq_len = 5;
  FeedSimulation sim = simulate_feed(o);
  const Dataset& d = sim.dataset;
  std::map<std::int64_t, std::vector<std::int64_t>> clicks;  // user -> clicked items so far
  for (Index r = 0; r < d.rows; ++r) {
    const auto u = d.user[r];
    auto& h = clicks[u];
    const auto& seq = d.sequences[0];
    const auto& cseq = d.sequences[1];
    const Index len = seq.length(r);
    REQUIRE(len == std::min<Index>(5, static_cast<Index>(h.size())));
    for (Index j = 0; j < len; ++j) {
      REQUIRE(seq.ids[seq.offsets[r] + j] == h[h.size() - len + j]);
      REQUIRE(cseq.ids[cseq.offsets[r] + j] == sim.world.item_category[h[h.size() - len + j]]);
      REQUIRE(seq.times[seq.offsets[r] + j] >= 0.0f);
      if (j) REQUIRE(seq.times[seq.offsets[r] + j] <= seq.times[seq.offsets[r] + j - 1]);
    }
    if (d.labels[r * 3] == 1.0f) h.push_back(d.sparse[r * 5 + 1]);
  }
}

TEST_CASE("simulator: with drift, recent clicks predict better than early clicks", "[data][simulator]") {
  // Indicator A: the item's category is among the user's 5 most recent clicks (the sequence).
  // Indicator B: it is among the user's first 5 clicks (a static profile, what a user id learns
  // from old data). Evaluate on the last 30% of time.
  auto run = [](double drift) {
    auto o = small_options();
    o.impressions = 60000;
    o.interest_drift = drift;
    o.max_seq_len = 5;
    Dataset d = make_feed_dataset(o);
    std::map<std::int64_t, std::vector<std::int64_t>> first;
    std::vector<int> a, b;
    std::vector<float> y;
    for (Index r = 0; r < d.rows; ++r) {
      const auto u = d.user[r];
      const auto cat = d.sparse[r * 5 + 2];
      auto& f = first[u];
      if (r >= Index(0.7 * double(d.rows)) && f.size() >= 5) {
        const auto& cs = d.sequences[1];
        bool in_recent = false;
        for (auto i = cs.offsets[r]; i < cs.offsets[r + 1]; ++i) in_recent |= cs.ids[i] == cat;
        bool in_first = std::find(f.begin(), f.end(), cat) != f.end();
        a.push_back(in_recent);
        b.push_back(in_first);
        y.push_back(d.labels[r * 3]);
      }
      if (d.labels[r * 3] == 1.0f && f.size() < 5) f.push_back(cat);
    }
    return std::pair{indicator_auc(a, y), indicator_auc(b, y)};
  };
  auto [recent, early] = run(1.0);
  INFO("drift 1: recent AUC " << recent << ", early AUC " << early);
  CHECK(recent > early + 0.03);
  auto [recent0, early0] = run(0.0);
  INFO("drift 0: recent AUC " << recent0 << ", early AUC " << early0);
  CHECK(std::abs(recent0 - early0) < recent - early);
}

TEST_CASE("simulator: train_test_split by rows and per user", "[data][simulator]") {
  auto o = small_options();
  o.impressions = 5000;
  Dataset d = make_feed_dataset(o);
  auto [tr, te] = train_test_split(d, 0.2);
  CHECK(tr.rows == 4000);
  CHECK(te.rows == 1000);
  CHECK(te.user[0] == d.user[4000]);
  CHECK(te.sequences[0].length(0) == d.sequences[0].length(4000));
  CHECK(te.oracle[0] == d.oracle[4000 * 3]);
  te.validate();

  auto [tr2, te2] = train_test_split(d, 0.25, SplitBy::per_user);
  CHECK(tr2.rows + te2.rows == d.rows);
  std::map<std::int64_t, int> n_all, n_test;
  for (auto u : d.user) ++n_all[u];
  for (auto u : te2.user) ++n_test[u];
  for (auto [u, n] : n_all) CHECK(n_test[u] == std::llround(0.25 * n));
  CHECK_THROWS_AS(train_test_split(d, 1.5), Error);
}

TEST_CASE("simulator: random_split is a deterministic uniform split that keeps row order", "[data][simulator]") {
  auto o = small_options();
  o.impressions = 5000;
  Dataset d = make_feed_dataset(o);
  const Index D = static_cast<Index>(d.schema.dense.size());
  for (Index r = 0; r < d.rows; ++r) d.dense[r * D] = float(r);  // tag each row with its index
  auto rows_of = [&](const Dataset& part) {
    std::vector<Index> v;
    for (Index r = 0; r < part.rows; ++r) v.push_back(static_cast<Index>(part.dense[r * D]));
    return v;
  };
  auto [keep, split] = random_split(d, 0.1, 42);
  CHECK(keep.rows == 4500);
  CHECK(split.rows == 500);
  keep.validate();
  split.validate();
  const auto a = rows_of(keep), b = rows_of(split);
  CHECK(std::is_sorted(a.begin(), a.end()));  // row (time) order kept in both parts
  CHECK(std::is_sorted(b.begin(), b.end()));
  std::vector<Index> all(a);
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  for (Index r = 0; r < d.rows; ++r) REQUIRE(all[static_cast<std::size_t>(r)] == r);  // a partition
  // Spread over the whole range, not a block: each fifth of the rows gets some.
  for (Index q = 0; q < 5; ++q)
    CHECK(std::count_if(b.begin(), b.end(), [&](Index r) { return r / 1000 == q; }) > 50);
  // Same seed: the same split; another seed: another one.
  CHECK(rows_of(random_split(d, 0.1, 42).second) == b);
  CHECK(rows_of(random_split(d, 0.1, 43).second) != b);
  // The other columns travel with their rows.
  CHECK(split.user[0] == d.user[static_cast<std::size_t>(b[0])]);
  CHECK(split.scene[7] == d.scene[static_cast<std::size_t>(b[7])]);
  CHECK(split.labels[3 * 3 + 1] == d.labels[b[3] * 3 + 1]);
  CHECK(random_split(d, 0, 1).second.rows == 0);
  CHECK_THROWS_AS(random_split(d, -0.5, 1), Error);
}

TEST_CASE("simulator: bad options are rejected", "[data][simulator]") {
  FeedSimulatorOptions o;
  o.users = 0;
  CHECK_THROWS_WITH(simulate_feed(o), Catch::Contains("users"));
  o = {};
  o.trending_fraction = 2;
  CHECK_THROWS_WITH(simulate_feed(o), Catch::Contains("trending_fraction"));
}

TEST_CASE("select_tasks keeps the named tasks' labels, masks and oracle columns, in the given order", "[data]") {
  FeedSimulatorOptions o;
  o.users = 30;
  o.items = 80;
  o.impressions = 300;
  const Dataset d = make_feed_dataset(o);
  const Dataset s = select_tasks(d, {"long_dwell", "click"});
  REQUIRE(s.schema.num_tasks() == 2);
  CHECK(s.schema.tasks[0].name == "long_dwell");
  CHECK(s.schema.tasks[1].name == "click");
  REQUIRE(s.labels.shape() == Shape{d.rows, 2});
  REQUIRE(s.oracle.shape() == Shape{d.rows, 2});
  REQUIRE(s.label_mask.shape() == Shape{d.rows, 2});
  for (Index r = 0; r < d.rows; ++r) {
    CHECK(s.labels[r * 2] == d.labels[r * 3 + 2]);
    CHECK(s.labels[r * 2 + 1] == d.labels[r * 3]);
    CHECK(s.oracle[r * 2] == d.oracle[r * 3 + 2]);
    CHECK(s.label_mask[r * 2 + 1] == d.label_mask[r * 3]);
  }
  CHECK(s.sparse == d.sparse);
  CHECK(s.sequences[0].times == d.sequences[0].times);
  s.validate();
  CHECK_THROWS_WITH(select_tasks(d, {"clicks"}), Catch::Contains("unknown task \"clicks\" (expected one of: click, interaction, long_dwell)"));
  CHECK_THROWS_WITH(select_tasks(d, {"click", "click"}), Catch::Contains("\"click\" is listed twice"));
  CHECK_THROWS_WITH(select_tasks(d, {}), Catch::Contains("at least one task"));
}
