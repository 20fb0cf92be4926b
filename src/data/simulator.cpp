#include "mtrank/data/simulator.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "mtrank/core/rng.hpp"

namespace mtrank::data {

namespace {

constexpr double kPi = 3.14159265358979323846;

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Normalises v in place to unit length (leaves a zero vector alone).
void normalize(float* v, Index d) {
  double s = 0;
  for (Index k = 0; k < d; ++k) s += double(v[k]) * v[k];
  if (s <= 0) return;
  const double inv = 1.0 / std::sqrt(s);
  for (Index k = 0; k < d; ++k) v[k] = static_cast<float>(v[k] * inv);
}

// Index i with cum[i-1] <= u < cum[i] for a non-decreasing prefix-sum array over [0, n).
Index sample_prefix(const std::vector<double>& cum, Index n, double u) {
  const double target = u * cum[static_cast<std::size_t>(n - 1)];
  auto it = std::upper_bound(cum.begin(), cum.begin() + n, target);
  return std::min<Index>(static_cast<Index>(it - cum.begin()), n - 1);
}

// The model's coefficients; docs/data.md writes the same formulas.
struct Coef {
  static constexpr double click_bias[2] = {-4.1, -4.3};
  static constexpr double click_aff = 2.0;
  static constexpr double click_pop_hot = 0.5;        // scene 0 only
  static constexpr double click_fresh_trending = 0.8; // scene 1 only: 0.8 * (1 - 2 age/window)
  static constexpr double click_hour = 0.3;
  static constexpr double inter_bias[2] = {-1.6, -1.1};
  static constexpr double inter_aff = 1.0;
  static constexpr double inter_author = 1.5;
  static constexpr double inter_user = 0.5;
  static constexpr double dwell_mu0 = 3.55;  // log(35 s)
  static constexpr double dwell_aff = 0.5;
  static constexpr double dwell_author = 0.4;
  static constexpr double dwell_duration = 0.5;
  static constexpr double dwell_trending = -0.3;
  static constexpr double dwell_sigma = 0.7;
};

}  // namespace

FeedSimulation simulate_feed(const FeedSimulatorOptions& o) {
  require(o.users > 0 && o.items > 0 && o.categories > 0 && o.authors > 0, "simulate_feed: users, items, categories, authors must be > 0");
  require(o.impressions >= 0, "simulate_feed: impressions must be >= 0, got ", o.impressions);
  require(o.latent_dim > 0, "simulate_feed: latent_dim must be > 0");
  require(o.max_seq_len > 0, "simulate_feed: max_seq_len must be > 0");
  require(o.trending_fraction >= 0 && o.trending_fraction <= 1, "simulate_feed: trending_fraction must be in [0, 1]");
  require(o.trending_window > 0, "simulate_feed: trending_window must be > 0");
  require(o.days > 0 && o.dwell_threshold_s > 0, "simulate_feed: days and dwell_threshold_s must be > 0");

  const Index D = o.latent_dim;
  const Index U = o.users, I = o.items, C = o.categories, A = o.authors, N = o.impressions;
  Rng root(o.seed);
  Rng rw = root.fork(1);  // world
  Rng ri = root.fork(2);  // impressions

  FeedSimulation sim;
  FeedWorld& w = sim.world;
  w.dim = D;
  const double comp_std = 1.0 / std::sqrt(double(D));

  // Categories: popularity skewed like 1/sqrt(rank).
  w.category_vec.resize(static_cast<std::size_t>(C * D));
  for (auto& v : w.category_vec) v = static_cast<float>(rw.normal(0, comp_std));
  for (Index k = 0; k < C; ++k) normalize(&w.category_vec[k * D], D);
  std::vector<double> cat_cum(static_cast<std::size_t>(C));
  for (Index k = 0; k < C; ++k) cat_cum[k] = (k ? cat_cum[k - 1] : 0.0) + 1.0 / std::sqrt(1.0 + k);

  w.author_quality.resize(static_cast<std::size_t>(A));
  for (auto& a : w.author_quality) a = static_cast<float>(rw.normal(0, 0.5));

  // Items.
  w.item_vec.resize(static_cast<std::size_t>(I * D));
  w.item_category.resize(static_cast<std::size_t>(I));
  w.item_author.resize(static_cast<std::size_t>(I));
  w.item_log_pop.resize(static_cast<std::size_t>(I));
  w.item_publish.resize(static_cast<std::size_t>(I));
  w.item_duration.resize(static_cast<std::size_t>(I));
  for (Index i = 0; i < I; ++i) {
    const Index k = sample_prefix(cat_cum, C, rw.uniform());
    w.item_category[i] = static_cast<std::int32_t>(k);
    w.item_author[i] = static_cast<std::int32_t>(rw.below(static_cast<std::uint64_t>(A)));
    for (Index d = 0; d < D; ++d) w.item_vec[i * D + d] = static_cast<float>(w.category_vec[k * D + d] + 0.6 * rw.normal(0, comp_std));
    w.item_log_pop[i] = static_cast<float>(rw.normal());
    w.item_publish[i] = static_cast<float>(rw.uniform(-0.5, 1.0));
    w.item_duration[i] = static_cast<float>(rw.normal());
  }

  // Users: two interest vectors, each mostly two favourite categories.
  w.user_interest0.resize(static_cast<std::size_t>(U * D));
  w.user_interest1.resize(static_cast<std::size_t>(U * D));
  w.user_bias.resize(static_cast<std::size_t>(U));
  w.user_activity.resize(static_cast<std::size_t>(U));
  std::vector<float> user_log_act(static_cast<std::size_t>(U));
  auto make_interest = [&](float* p) {
    const Index f1 = sample_prefix(cat_cum, C, rw.uniform());
    const Index f2 = sample_prefix(cat_cum, C, rw.uniform());
    for (Index d = 0; d < D; ++d)
      p[d] = static_cast<float>(w.category_vec[f1 * D + d] + 0.5 * w.category_vec[f2 * D + d] + 0.4 * rw.normal(0, comp_std));
    normalize(p, D);
  };
  double act_sum = 0;
  for (Index u = 0; u < U; ++u) {
    make_interest(&w.user_interest0[u * D]);
    make_interest(&w.user_interest1[u * D]);
    w.user_bias[u] = static_cast<float>(rw.normal(0, 0.3));
    user_log_act[u] = static_cast<float>(rw.normal(0, 0.8));
    w.user_activity[u] = static_cast<float>(std::exp(user_log_act[u]));
    act_sum += w.user_activity[u];
  }
  std::vector<double> user_cum(static_cast<std::size_t>(U));
  for (Index u = 0; u < U; ++u) {
    w.user_activity[u] = static_cast<float>(w.user_activity[u] / act_sum);
    user_cum[u] = (u ? user_cum[u - 1] : 0.0) + w.user_activity[u];
  }

  // Items ordered by publish time, with popularity prefix sums for the hot feed.
  std::vector<Index> by_time(static_cast<std::size_t>(I));
  std::iota(by_time.begin(), by_time.end(), Index{0});
  std::stable_sort(by_time.begin(), by_time.end(), [&](Index a, Index b) { return w.item_publish[a] < w.item_publish[b]; });
  std::vector<float> sorted_publish(static_cast<std::size_t>(I));
  std::vector<double> pop_cum(static_cast<std::size_t>(I));
  for (Index r = 0; r < I; ++r) {
    sorted_publish[r] = w.item_publish[by_time[r]];
    pop_cum[r] = (r ? pop_cum[r - 1] : 0.0) + std::exp(double(w.item_log_pop[by_time[r]]));
  }

  // Scale so that the affinity <p, q> has about unit standard deviation over random pairs.
  double aff_var = 0;
  {
    Rng rs = root.fork(3);
    const int M = 2000;
    for (int m = 0; m < M; ++m) {
      const Index u = static_cast<Index>(rs.below(static_cast<std::uint64_t>(U)));
      const Index i = static_cast<Index>(rs.below(static_cast<std::uint64_t>(I)));
      double a = 0;
      for (Index d = 0; d < D; ++d) a += double(w.user_interest0[u * D + d]) * w.item_vec[i * D + d];
      aff_var += a * a;
    }
    aff_var /= M;
  }
  const double aff_scale = 1.0 / std::sqrt(std::max(aff_var, 1e-6));

  // Schema.
  FeatureSchema& s = sim.dataset.schema;
  const Index E = o.embedding_dim;
  s.sparse = {{.name = "user_id", .vocab = U, .dim = E, .hash = false, .side = FieldSide::user},
              {.name = "item_id", .vocab = I, .dim = E, .hash = false, .side = FieldSide::item},
              {.name = "category", .vocab = C, .dim = E, .hash = false, .side = FieldSide::item},
              {.name = "author", .vocab = A, .dim = E, .hash = false, .side = FieldSide::item},
              {.name = "scene", .vocab = 2, .dim = E, .hash = false, .side = FieldSide::context}};
  s.dense = {{"log_item_pop", FieldSide::item}, {"user_activity", FieldSide::user}, {"hour_sin", FieldSide::context},
             {"hour_cos", FieldSide::context}, {"item_age", FieldSide::item}};
  s.sequences.push_back({.name = "click_seq", .vocab = 0, .dim = E, .max_len = o.max_seq_len, .table = "item_id", .hash = false});
  if (o.category_sequence)
    s.sequences.push_back({.name = "click_cat_seq", .vocab = 0, .dim = E, .max_len = o.max_seq_len, .table = "category", .hash = false});
  s.tasks = {{"click", TaskKind::binary}, {"interaction", TaskKind::binary}, {"long_dwell", TaskKind::binary}};
  s.num_scenes = 2;

  Dataset& ds = sim.dataset;
  const Index ND = static_cast<Index>(s.dense.size());
  const Index NS = static_cast<Index>(s.sparse.size());
  const Index NQ = static_cast<Index>(s.sequences.size());
  ds.rows = N;
  ds.dense.resize(Shape{N, ND});
  ds.sparse.resize(static_cast<std::size_t>(N * NS));
  ds.labels.resize(Shape{N, 3});
  ds.label_mask.resize(Shape{N, 3});
  ds.label_mask.fill(1.0f);
  ds.oracle.resize(Shape{N, 3});
  ds.user.resize(static_cast<std::size_t>(N));
  ds.scene.resize(static_cast<std::size_t>(N));
  ds.sequences.assign(static_cast<std::size_t>(NQ), SequenceColumn{});
  sim.dwell_seconds.resize(static_cast<std::size_t>(N));
  sim.time.resize(static_cast<std::size_t>(N));

  struct Click {
    std::int32_t item;
    double time;
  };
  std::vector<std::vector<Click>> history(static_cast<std::size_t>(U));
  std::vector<float> p(static_cast<std::size_t>(D));
  const double log_tau = std::log(o.dwell_threshold_s);

  for (Index n = 0; n < N; ++n) {
    const double t = (double(n) + ri.uniform()) / double(N);
    const Index u = sample_prefix(user_cum, U, ri.uniform());
    const int scene = ri.bernoulli(o.trending_fraction) ? 1 : 0;
    // Current interest: rotate from interest0 towards interest1.
    const double theta = o.interest_drift * 0.5 * kPi * t;
    for (Index d = 0; d < D; ++d)
      p[d] = static_cast<float>(std::cos(theta) * w.user_interest0[u * D + d] + std::sin(theta) * w.user_interest1[u * D + d]);
    normalize(p.data(), D);
    auto affinity = [&](Index i) {
      double a = 0;
      for (Index d = 0; d < D; ++d) a += double(p[d]) * w.item_vec[i * D + d];
      return a * aff_scale;
    };
    // Candidate generation: the scene's source, best of two by current affinity (a crude retrieval stage).
    const Index published = static_cast<Index>(std::upper_bound(sorted_publish.begin(), sorted_publish.end(), float(t)) -
                                               sorted_publish.begin());
    const Index avail = std::max<Index>(published, 1);
    auto draw = [&]() -> Index {
      if (scene == 0) return by_time[sample_prefix(pop_cum, avail, ri.uniform())];
      const Index lo = static_cast<Index>(std::lower_bound(sorted_publish.begin(), sorted_publish.end(),
                                                           float(t - o.trending_window)) - sorted_publish.begin());
      const Index first = std::min(lo, std::max<Index>(avail - 20, 0));
      return by_time[first + static_cast<Index>(ri.below(static_cast<std::uint64_t>(avail - first)))];
    };
    const Index c1 = draw(), c2 = draw();
    const double a1 = affinity(c1), a2 = affinity(c2);
    const Index item = a1 >= a2 ? c1 : c2;
    const double aff = std::max(a1, a2);

    const Index cat = w.item_category[item];
    const Index author = w.item_author[item];
    const double q = w.author_quality[author];
    const double lp = w.item_log_pop[item];
    const double age = std::max(0.0, t - double(w.item_publish[item]));  // time units
    const double hour = std::fmod(t * o.days, 1.0) * 24.0;
    const double hs = std::sin(2 * kPi * hour / 24.0), hc = std::cos(2 * kPi * hour / 24.0);

    double zc = Coef::click_bias[scene] + Coef::click_aff * aff + q + w.user_bias[u] + Coef::click_hour * hs;
    if (scene == 0) zc += Coef::click_pop_hot * lp;
    else zc += Coef::click_fresh_trending * (1.0 - 2.0 * std::min(age / o.trending_window, 2.0));
    const double pc = sigmoid(zc);
    const double zi = Coef::inter_bias[scene] + Coef::inter_aff * aff + Coef::inter_author * q + Coef::inter_user * w.user_bias[u];
    const double pi_c = sigmoid(zi);
    const double mu = Coef::dwell_mu0 + Coef::dwell_aff * aff + Coef::dwell_author * q +
                      Coef::dwell_duration * w.item_duration[item] + (scene == 1 ? Coef::dwell_trending : 0.0);
    const double pl_c = 0.5 * std::erfc((log_tau - mu) / (Coef::dwell_sigma * std::sqrt(2.0)));

    const bool click = ri.bernoulli(pc);
    bool inter = false, long_dwell = false;
    double dwell = 0;
    if (click) {
      inter = ri.bernoulli(pi_c);
      dwell = std::exp(mu + Coef::dwell_sigma * ri.normal());
      long_dwell = dwell > o.dwell_threshold_s;
    }

    // Row n.
    std::int64_t* sp = &ds.sparse[static_cast<std::size_t>(n * NS)];
    sp[0] = u;
    sp[1] = item;
    sp[2] = cat;
    sp[3] = author;
    sp[4] = scene;
    float* dn = ds.dense.data() + n * ND;
    dn[0] = static_cast<float>(lp);
    dn[1] = user_log_act[u];
    dn[2] = static_cast<float>(hs);
    dn[3] = static_cast<float>(hc);
    dn[4] = static_cast<float>(std::log1p(age * o.days));
    ds.labels[n * 3 + 0] = click ? 1.0f : 0.0f;
    ds.labels[n * 3 + 1] = inter ? 1.0f : 0.0f;
    ds.labels[n * 3 + 2] = long_dwell ? 1.0f : 0.0f;
    ds.oracle[n * 3 + 0] = static_cast<float>(pc);
    ds.oracle[n * 3 + 1] = static_cast<float>(pc * pi_c);
    ds.oracle[n * 3 + 2] = static_cast<float>(pc * pl_c);
    ds.user[n] = u;
    ds.scene[n] = scene;
    sim.dwell_seconds[n] = static_cast<float>(dwell);
    sim.time[n] = t;

    // Behaviour sequences: the user's clicks before this impression, oldest first.
    auto& h = history[u];
    const std::size_t keep = static_cast<std::size_t>(o.max_seq_len);
    const std::size_t from = h.size() > keep ? h.size() - keep : 0;
    for (Index qi = 0; qi < NQ; ++qi) {
      auto& col = ds.sequences[qi];
      for (std::size_t j = from; j < h.size(); ++j) {
        col.ids.push_back(qi == 0 ? h[j].item : w.item_category[h[j].item]);
        col.times.push_back(static_cast<float>((t - h[j].time) * o.days));
      }
      col.offsets.push_back(static_cast<std::int64_t>(col.ids.size()));
    }
    if (click) h.push_back({static_cast<std::int32_t>(item), t});
  }
  ds.validate();
  return sim;
}

Dataset make_feed_dataset(const FeedSimulatorOptions& options) { return simulate_feed(options).dataset; }

std::vector<train::TaskMetrics> oracle_metrics(const Dataset& d) {
  const Index K = d.schema.num_tasks();
  require(d.oracle.numel() == d.rows * K && d.rows > 0, "oracle_metrics: the dataset has no oracle probabilities");
  std::vector<train::TaskKind> kinds;
  std::vector<std::string> names;
  for (const auto& t : d.schema.tasks) {
    kinds.push_back(t.kind == TaskKind::binary ? train::TaskKind::binary : train::TaskKind::regression);
    names.push_back(t.name);
  }
  MatrixView<const float> mask;
  if (d.label_mask.numel() == d.rows * K) mask = MatrixView<const float>(d.label_mask.data(), d.rows, K);
  return train::evaluate_tasks(MatrixView<const float>(d.oracle.data(), d.rows, K),
                               MatrixView<const float>(d.labels.data(), d.rows, K), mask, d.user, kinds, names);
}

std::pair<Dataset, Dataset> train_test_split(const Dataset& d, double test_fraction, SplitBy by) {
  require(test_fraction >= 0 && test_fraction <= 1, "train_test_split: test_fraction must be in [0, 1], got ", test_fraction);
  std::vector<Index> train, test;
  if (by == SplitBy::rows || d.user.empty()) {
    const Index cut = d.rows - static_cast<Index>(std::llround(test_fraction * double(d.rows)));
    return {d.subset(0, cut), d.subset(cut, d.rows)};
  }
  std::unordered_map<std::int64_t, Index> count, seen;
  for (auto u : d.user) ++count[u];
  for (Index r = 0; r < d.rows; ++r) {
    const auto u = d.user[r];
    const Index n = count[u];
    const Index n_test = static_cast<Index>(std::llround(test_fraction * double(n)));
    (seen[u]++ >= n - n_test ? test : train).push_back(r);
  }
  return {d.take(train), d.take(test)};
}

std::pair<Dataset, Dataset> random_split(const Dataset& d, double fraction, std::uint64_t seed) {
  require(fraction >= 0 && fraction <= 1, "random_split: fraction must be in [0, 1], got ", fraction);
  const Index n_out = static_cast<Index>(std::llround(fraction * double(d.rows)));
  // Partial Fisher–Yates: the first n_out entries of perm are a uniform sample of the rows.
  std::vector<Index> perm(static_cast<std::size_t>(d.rows));
  std::iota(perm.begin(), perm.end(), Index{0});
  Rng rng(seed);
  for (Index i = 0; i < n_out; ++i)
    std::swap(perm[static_cast<std::size_t>(i)],
              perm[static_cast<std::size_t>(i + static_cast<Index>(rng.below(static_cast<std::uint64_t>(d.rows - i))))]);
  std::vector<char> out(static_cast<std::size_t>(d.rows), 0);
  for (Index i = 0; i < n_out; ++i) out[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])] = 1;
  std::vector<Index> keep, split;
  keep.reserve(static_cast<std::size_t>(d.rows - n_out));
  split.reserve(static_cast<std::size_t>(n_out));
  for (Index r = 0; r < d.rows; ++r) (out[static_cast<std::size_t>(r)] ? split : keep).push_back(r);
  return {d.take(keep), d.take(split)};
}

}  // namespace mtrank::data
