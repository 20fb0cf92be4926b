// A deterministic feed simulator with known feedback probabilities: the built-in data source
// for demos and tests. See docs/data.md for the generative model in formulas.
//
// World: users with two latent interest vectors (interest drifts from the first to the second
// over the simulated period), categories with latent vectors, items with a category, an author,
// a latent vector near their category's, a popularity and a publish time, authors with a
// quality term. Impressions arrive in time order; each picks a user (by activity), a scene
// (0 = "hot" feed: items drawn by popularity; 1 = "trending" feed: recently published items),
// an item, and draws three feedbacks from known probabilities:
//   click        p_c = σ(z_c)
//   interaction  p_i = p_c · σ(z_i)            (like/comment/share; requires a click)
//   long_dwell   p_l = p_c · P(dwell > τ | click), log dwell ~ N(μ, s²)
// Dataset::oracle holds (p_c, p_i, p_l) for every row.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "mtrank/data/batch.hpp"
#include "mtrank/train/metrics.hpp"

namespace mtrank::data {

struct FeedSimulatorOptions {
  Index users = 2000;
  Index items = 5000;
  Index categories = 50;
  Index authors = 300;
  Index impressions = 200000;
  Index latent_dim = 8;          // dimension of user/item/category latent vectors
  Index max_seq_len = 20;        // click_seq / click_cat_seq keep the most recent clicks
  bool category_sequence = true; // also emit click_cat_seq (shares the category table)
  Index embedding_dim = 8;       // SparseField::dim written into the schema
  double trending_fraction = 0.35;  // P(scene = 1)
  double trending_window = 0.05;    // trending feed shows items published within this many time units
  double interest_drift = 1.0;      // 0 = static interests, 1 = full drift from interest 0 to interest 1
  double days = 30;                 // the period [0, 1) spans this many days (hour-of-day features)
  double dwell_threshold_s = 60;    // long_dwell = dwell seconds > threshold
  std::uint64_t seed = 42;
};

/// Everything the simulator drew, for tests and for computing ideal scores.
struct FeedWorld {
  Index dim = 0;
  std::vector<float> user_interest0, user_interest1;  // [users, dim] each
  std::vector<float> user_bias;                       // [users]
  std::vector<float> user_activity;                   // [users] sampling weight (sums to 1)
  std::vector<float> category_vec;                    // [categories, dim]
  std::vector<float> item_vec;                        // [items, dim]
  std::vector<std::int32_t> item_category, item_author;
  std::vector<float> item_log_pop;                    // [items] standardised log popularity
  std::vector<float> item_publish;                    // [items] publish time in [-0.5, 1)
  std::vector<float> item_duration;                   // [items] dwell-time term
  std::vector<float> author_quality;                  // [authors]
};

struct FeedSimulation {
  Dataset dataset;
  FeedWorld world;
  std::vector<float> dwell_seconds;  // [rows] simulated dwell (0 when not clicked)
  std::vector<double> time;          // [rows] impression time in [0, 1), increasing
};

/// Runs the simulator. Rows are in time order. Schema:
///   sparse   user_id, item_id, category, author, scene (vocab = the option counts, hash = false)
///   dense    log_item_pop, user_activity, hour_sin, hour_cos, item_age
///   sequence click_seq (table item_id), click_cat_seq (table category, optional); times = age
///            of each click in days
///   tasks    click, interaction, long_dwell (binary); num_scenes = 2
FeedSimulation simulate_feed(const FeedSimulatorOptions& options = {});
/// Just the dataset.
Dataset make_feed_dataset(const FeedSimulatorOptions& options = {});

/// Per-task AUC, GAUC (by Dataset::user), log loss, … of the oracle probabilities: the best any
/// model can do on this sample. Requires dataset.oracle.
std::vector<train::TaskMetrics> oracle_metrics(const Dataset& dataset);

enum class SplitBy {
  rows,     // the last fraction of rows (rows are in time order) is the test set
  per_user  // the last fraction of each user's rows (in row order) is the test set
};

/// Splits by time: returns (train, test). Rows keep their order.
std::pair<Dataset, Dataset> train_test_split(const Dataset& dataset, double test_fraction, SplitBy by = SplitBy::rows);

/// Splits off round(fraction * rows) rows chosen uniformly at random (a Fisher–Yates draw from
/// Rng(seed)), e.g. a validation set from the training rows: returns (kept, split off). Both
/// parts keep the original row order. Deterministic: the same dataset, fraction and seed give
/// the same split on every machine.
std::pair<Dataset, Dataset> random_split(const Dataset& dataset, double fraction, std::uint64_t seed);

}  // namespace mtrank::data
