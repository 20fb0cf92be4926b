// The example configs of every model type (examples/configs/<type>_simulator.json), shrunk for
// tests, with their data loaded exactly as the `mtrank` CLI loads it (tools/mtrank_cli/
// data_source.cpp is compiled into test_serve), and requests / JSON bodies cut from dataset rows.
#pragma once
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data_source.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/serve/predictor.hpp"

namespace mtrank::testing {

/// Every model type with an example config; "dmt_gru" and "co_action" name configs, not types.
inline const std::vector<std::string>& example_model_types() {
  static const std::vector<std::string> t = {"dnn",          "shared_bottom", "esmm", "mmoe", "ple",     "cgc",
                                             "snr_trans",    "snr_aver",      "multi_domain", "mm", "din",
                                             "dmt",          "dmt_gru",       "sim",  "co_action"};
  return t;
}

inline std::filesystem::path example_config_path(const std::string& type) {
  return std::filesystem::path(MTRANK_SOURCE_DIR) / "examples" / "configs" / (type + "_simulator.json");
}

inline nlohmann::json load_example_config(const std::string& type) {
  const auto path = example_config_path(type);
  std::ifstream f(path);
  if (!f) fail("cannot open '", path.string(), "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return io::parse_json(ss.str(), path.string());
}

/// The example config with a small simulator (about 3000 impressions) and one epoch: everything
/// else (model, task options, serving) as shipped.
inline nlohmann::json shrunk_example_config(const std::string& type, Index impressions = 3000) {
  nlohmann::json c = load_example_config(type);
  auto& d = c["data"];
  d["impressions"] = impressions;
  d["users"] = 60;
  d["items"] = 300;
  d["categories"] = 12;
  d["authors"] = 20;
  d["max_seq_len"] = 12;
  c["trainer"]["epochs"] = 1;
  return c;
}

/// (train, test) from the config's data section, as `mtrank train` reads them; writes the
/// schema into the config (as the CLI does before build_model).
inline cli::TrainTestData load_config_data(nlohmann::json& config) {
  cli::TrainTestData d = cli::load_data(config["data"], nullptr, MTRANK_SOURCE_DIR);
  config["schema"] = d.train.schema;
  return d;
}

/// Rows `rows` of `d` as one batch in which every row carries the user side of row `anchor`
/// (its user/context fields, its sequences with their times): what a request for that user with
/// those rows' items as candidates stands for. Scenes: `scenes` per row.
inline data::Batch user_side_batch(const data::Dataset& d, const serve::RequestLayout& l, Index anchor,
                                   const std::vector<Index>& rows, const std::vector<std::int32_t>& scenes) {
  data::Batch b;
  d.gather(rows, b);
  const Index ns = static_cast<Index>(d.schema.sparse.size()), nd = static_cast<Index>(d.schema.dense.size());
  const Index n = static_cast<Index>(rows.size());
  for (Index i = 0; i < n; ++i) {
    for (Index f : l.user_sparse) b.sparse[i * ns + f] = d.sparse[anchor * ns + f];
    for (Index f : l.user_dense) b.dense[i * nd + f] = d.dense[anchor * nd + f];
  }
  for (std::size_t q = 0; q < d.sequences.size(); ++q) {
    const auto& src = d.sequences[q];
    auto& col = b.sequences[q];
    const auto s0 = src.offsets[anchor], s1 = src.offsets[anchor + 1];
    col.ids.clear();
    col.times.clear();
    col.offsets.assign(1, 0);
    for (Index i = 0; i < n; ++i) {
      col.ids.insert(col.ids.end(), src.ids.begin() + s0, src.ids.begin() + s1);
      if (!src.times.empty()) col.times.insert(col.times.end(), src.times.begin() + s0, src.times.begin() + s1);
      col.offsets.push_back(static_cast<std::int64_t>(col.ids.size()));
    }
  }
  b.user.assign(static_cast<std::size_t>(n), d.user[static_cast<std::size_t>(anchor)]);
  b.scene = scenes;
  return b;
}

/// The request for the user of row `anchor` (user side, sequences with times) with the items of
/// `rows` as candidates; request scene `scene`, per-candidate scenes `cand_scenes` (may be empty).
inline serve::Request rows_request(const data::Dataset& d, const serve::RequestLayout& l, Index anchor,
                                   const std::vector<Index>& rows, std::int32_t scene,
                                   const std::vector<std::int32_t>& cand_scenes) {
  const Index ns = static_cast<Index>(d.schema.sparse.size()), nd = static_cast<Index>(d.schema.dense.size());
  serve::Request r;
  for (Index f : l.user_sparse) r.user_sparse.push_back(d.sparse[anchor * ns + f]);
  for (Index f : l.user_dense) r.user_dense.push_back(d.dense[anchor * nd + f]);
  for (const auto& col : d.sequences) {
    r.sequences.emplace_back(col.ids.begin() + col.offsets[anchor], col.ids.begin() + col.offsets[anchor + 1]);
    if (!col.times.empty())
      r.sequence_times.emplace_back(col.times.begin() + col.offsets[anchor], col.times.begin() + col.offsets[anchor + 1]);
    else
      r.sequence_times.emplace_back();
  }
  r.scene = scene;
  r.num_candidates = static_cast<Index>(rows.size());
  for (Index i : rows) {
    for (Index f : l.cand_sparse) r.cand_sparse.push_back(d.sparse[i * ns + f]);
    for (Index f : l.cand_dense) r.cand_dense.push_back(d.dense[i * nd + f]);
  }
  r.cand_scene = cand_scenes;
  return r;
}

/// The JSON body of `r`, built by field name (what a client sends): scene_id, the user-side
/// fields, sequences as {"ids": [...], "times": [...]}, candidates with their fields and, where
/// given, their own scene_id. Floats go through double and print with 17 digits, so they parse
/// back to the same float.
inline nlohmann::json request_json(const serve::Request& r, const data::FeatureSchema& s, const serve::RequestLayout& l) {
  using nlohmann::json;
  json body = json::object();
  body["request_id"] = "e2e";
  body["scene_id"] = r.scene;
  for (std::size_t i = 0; i < l.user_sparse.size(); ++i) body[s.sparse[l.user_sparse[i]].name] = r.user_sparse[i];
  for (std::size_t i = 0; i < l.user_dense.size(); ++i) body[s.dense[l.user_dense[i]].name] = double(r.user_dense[i]);
  for (std::size_t q = 0; q < s.sequences.size(); ++q) {
    json times = json::array();
    if (!r.sequence_times.empty())
      for (float t : r.sequence_times[q]) times.push_back(double(t));
    if (times.empty()) body[s.sequences[q].name] = r.sequences[q];
    else body[s.sequences[q].name] = json{{"ids", r.sequences[q]}, {"times", times}};
  }
  json cands = json::array();
  const std::size_t ncs = l.cand_sparse.size(), ncd = l.cand_dense.size();
  for (Index i = 0; i < r.num_candidates; ++i) {
    json c = {{"candidate_id", i}};
    if (!r.cand_scene.empty()) c["scene_id"] = r.cand_scene[static_cast<std::size_t>(i)];
    for (std::size_t k = 0; k < ncs; ++k) c[s.sparse[l.cand_sparse[k]].name] = r.cand_sparse[i * ncs + k];
    for (std::size_t k = 0; k < ncd; ++k) c[s.dense[l.cand_dense[k]].name] = double(r.cand_dense[i * ncd + k]);
    cands.push_back(std::move(c));
  }
  body["candidates"] = std::move(cands);
  return body;
}

}  // namespace mtrank::testing
