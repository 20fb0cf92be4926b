// Shared setup for the serving tests: a small simulated feed, a model config with a serving
// section, and requests cut from dataset rows.
#pragma once
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "mtrank/data/simulator.hpp"
#include "mtrank/serve/predictor.hpp"

namespace mtrank::testing {

inline const data::Dataset& feed() {
  static const data::Dataset d = [] {
    data::FeedSimulatorOptions o;
    o.users = 60;
    o.items = 300;
    o.categories = 12;
    o.authors = 20;
    o.impressions = 3000;
    o.seed = 5;
    return data::make_feed_dataset(o);
  }();
  return d;
}

inline nlohmann::json serving_section() {
  return nlohmann::json::parse(R"({"candidate_fields": ["item_id", "category", "author", "log_item_pop", "item_age"],
                                   "fusion": {"type": "weighted_sum", "weights": {"click": 1.0, "interaction": 2.0, "long_dwell": 0.5}}})");
}

inline nlohmann::json feed_config(const std::string& type = "mmoe", std::uint64_t seed = 3, bool dot = false) {
  nlohmann::json m = {{"type", type}, {"tower", {{"hidden", {8}}}}, {"dot_interactions", dot}, {"embedding_init_std", 0.1}};
  if (type == "mmoe") {
    m["num_experts"] = 3;
    m["expert"] = {{"layers", {16, 8}}};
  } else {
    m["bottom"] = {{"layers", {16, 8}}};
  }
  return {{"schema", feed().schema}, {"seed", seed}, {"model", m}, {"serving", serving_section()}};
}

inline std::shared_ptr<const serve::Predictor> feed_predictor(const std::string& type = "mmoe", std::uint64_t seed = 3,
                                                              bool dot = false) {
  return std::make_shared<const serve::Predictor>(models::build_model(feed_config(type, seed, dot)));
}

/// The first row >= from whose user has a non-empty click sequence.
inline Index row_with_history(Index from) {
  const auto& col = feed().sequences[0];
  while (col.offsets[from + 1] == col.offsets[from]) ++from;
  return from;
}

/// Request for the user of row `first` with the items of rows first .. first + n - 1 as candidates.
inline serve::Request feed_request(const serve::Predictor& p, Index first, Index n) {
  const data::Dataset& d = feed();
  const auto& l = p.serving().layout;
  const Index ns = static_cast<Index>(d.schema.sparse.size()), nd = static_cast<Index>(d.schema.dense.size());
  serve::Request r;
  for (Index f : l.user_sparse) r.user_sparse.push_back(d.sparse[first * ns + f]);
  for (Index f : l.user_dense) r.user_dense.push_back(d.dense[first * nd + f]);
  for (const auto& col : d.sequences)
    r.sequences.emplace_back(col.ids.begin() + col.offsets[first], col.ids.begin() + col.offsets[first + 1]);
  r.num_candidates = n;
  for (Index i = first; i < first + n; ++i) {
    for (Index f : l.cand_sparse) r.cand_sparse.push_back(d.sparse[i * ns + f]);
    for (Index f : l.cand_dense) r.cand_dense.push_back(d.dense[i * nd + f]);
  }
  return r;
}

}  // namespace mtrank::testing
