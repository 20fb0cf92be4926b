// Regressions for what the libFuzzer targets (fuzz/, scripts/fuzz.sh) found in model building and
// training: each case names the target and the input that failed.
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "mtrank/blocks/co_action.hpp"
#include "mtrank/core/arena.hpp"
#include "mtrank/models/feature_embedder.hpp"
#include "seqmodel_util.hpp"

using namespace seqtest;
using Catch::Matchers::Contains;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("fuzz_checkpoint: SIM with top_k far above the sequence length scores and trains like top_k = the window") {
  // A stored config with "top_k": 2^62 sized the search's selection as batch * top_k
  // (std::length_error escaping the predictor's warm-up: a crash). The selection now has
  // min(top_k, longest window) slots, which changes nothing else.
  const auto& d = feed(20);
  data::Batch batch;
  d.slice(0, 64, batch);
  for (const char* search : {"hard", "soft"}) {
    INFO(search);
    json m = json::parse(R"({"type": "sim", "bottom": {"layers": [8]}, "tower": {"hidden": [4]},
                             "sequences": [{"name": "long", "fields": ["click_seq", "click_cat_seq"], "top_k": 20,
                                            "heads": 2, "time_buckets": 12}]})");
    m["sequences"][0]["search"] = search;
    json huge = m;
    huge["sequences"][0]["top_k"] = std::int64_t{1} << 62;
    auto a = models::build_model(config(d.schema, m));  // top_k = max_seq_len
    auto b = models::build_model(config(d.schema, huge));
    auto wa = a->make_workspace(), wb = b->make_workspace();
    ConstMat ya = a->serve(batch, *wa);
    ConstMat yb = b->serve(batch, *wb);
    REQUIRE(ya.rows == yb.rows);
    REQUIRE(ya.cols == yb.cols);
    for (Index r = 0; r < ya.rows; ++r)
      for (Index c = 0; c < ya.cols; ++c) CHECK(ya(r, c) == yb(r, c));
    train::Adam adam({.lr = 1e-2});
    train::Trainer t(*b, adam, {.batch_size = 64, .epochs = 1, .max_steps_per_epoch = 2, .progress = 2});
    CHECK(std::isfinite(t.fit(d.subset(0, 256)).at(0).train_loss));
  }
}

TEST_CASE("fuzz_checkpoint: co-action micro-MLP sizes that overflow 64 bits are an Error") {
  // "micro_mlp": [2^62, 4] computed the parameter block as in * 2^62 (signed overflow).
  CHECK_THROWS_WITH(blocks::CoActionUnit<float>({.in = 4, .layers = {Index{1} << 62, 4}}), Contains("overflow"));
  CHECK_THROWS_WITH(blocks::CoActionUnit<float>({.in = 1, .layers = {Index{1} << 61}, .orders = 8}), Contains("overflow"));
  const auto& d = feed(20);
  json m = json::parse(R"({"type": "mmoe", "num_experts": 2, "expert": {"layers": [8]}, "tower": {"hidden": [4]},
                           "co_action": {"item_field": "item_id", "inputs": ["user_id", "click_seq"], "orders": 2}})");
  m["co_action"]["micro_mlp"] = {std::int64_t{1} << 62, 4};
  CHECK_THROWS_WITH(models::build_model(config(d.schema, m)), Contains("overflow"));
}

TEST_CASE("fuzz_config_sections: trainer batch_size near 2^63 and eval_batch_size 0") {
  // (rows + batch_size - 1) overflowed for batch_size = INT64_MAX; eval_batch_size 0 was accepted
  // and evaluate() never advanced.
  const auto& d = feed(20);
  const data::Dataset part = d.subset(0, 100);
  auto model = models::build_model(config(d.schema, json::parse(R"({"type": "mmoe", "num_experts": 2,
                                                                     "expert": {"layers": [8]}, "tower": {"hidden": [4]}})")));
  train::Adam adam({.lr = 1e-2});
  train::Trainer t(*model, adam,
                   {.batch_size = std::numeric_limits<Index>::max(), .epochs = 1,
                    .eval_batch_size = std::numeric_limits<Index>::max(), .progress = 2});
  const auto h = t.fit(part, &part);
  REQUIRE(h.size() == 1);
  CHECK(h[0].steps == 1);
  CHECK_THROWS_WITH(train::Trainer(*model, adam, {.eval_batch_size = 0, .progress = 2}), Contains("eval_batch_size"));
  CHECK_THROWS_WITH(train::Trainer(*model, adam, {.eval_batch_size = -3, .progress = 2}), Contains("eval_batch_size"));
}

TEST_CASE("fuzz_parse_cost: schema validation and the feature embedder are linear in the number of sequence fields") {
  // 15 000 sparse fields and 15 000 sequences sharing the last one's table: 6.5 s per 1 MiB
  // config under ASan (a search of the sparse fields per sequence, several times); now 0.6 s.
  data::FeatureSchema s;
  s.tasks = {{"click"}};
  const int n = 100000;
  for (int i = 0; i < n; ++i) s.sparse.push_back({.name = "f" + std::to_string(i), .vocab = 1, .dim = 1});
  s.sparse.push_back({.name = "z", .vocab = 1, .dim = 1});
  for (int i = 0; i < n; ++i) s.sequences.push_back({.name = "s" + std::to_string(i), .max_len = 1, .table = "z"});
  const auto t0 = std::chrono::steady_clock::now();
  s.validate();
  ParameterArena arena;
  models::FeatureEmbedder<float> emb(arena, "", s, {});
  CHECK(emb.sequence_dim(static_cast<std::size_t>(n - 1)) == 1);
  CHECK(seconds_since(t0) < 10.0);  // quadratic: 10^10 name comparisons per pass
  s.sequences.back().table = "nope";
  CHECK_THROWS_WITH(s.validate(), Contains("no sparse field named 'nope'"));
}
