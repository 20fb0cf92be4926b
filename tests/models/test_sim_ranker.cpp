// SIM ranker (Pi et al. CIKM 2020) as type "sim": GSU (hard search by category or soft top-K)
// over a long behaviour sequence, ESU (multi-head target attention with time-interval
// embeddings), then an MLP / multi-task head.
#include "seqmodel_util.hpp"

using namespace seqtest;

namespace {

json sim_model(const char* search = "hard") {
  json m = json::parse(R"({"type": "sim", "bottom": {"layers": [32, 16]}, "tower": {"hidden": [8]},
                           "sequences": [{"name": "long", "fields": ["click_seq", "click_cat_seq"], "top_k": 8, "heads": 2,
                                          "time_buckets": 12}]})");
  m["sequences"][0]["search"] = search;
  return m;
}

}  // namespace

TEST_CASE("SIM ranker (hard and soft search) builds and learns on long simulated sequences") {
  const auto& d = feed(200);
  auto [train, test] = data::train_test_split(d, 0.25);
  json concat = sim_model("hard");
  concat["sequences"][0]["time_mode"] = "concat";
  concat["sequences"][0]["time_dim"] = 4;
  json mmoe = sim_model("soft");
  mmoe.erase("bottom");
  mmoe.update(json::parse(R"({"backbone": "mmoe", "num_experts": 2, "expert": {"layers": [16]}})"));
  for (auto [name, m] : std::vector<std::pair<std::string, json>>{
           {"hard", sim_model("hard")}, {"soft", sim_model("soft")}, {"hard concat", concat}, {"soft mmoe", mmoe}}) {
    INFO(name);
    auto model = models::build_model(config(d.schema, m));
    auto r = fit(*model, train, test);
    REQUIRE(r.hist.size() == 2);
    CHECK(r.hist[1].train_loss < r.hist[0].train_loss);
    CHECK(r.hist[1].valid_loss < r.before_loss);
    CHECK(r.hist[1].valid[0].auc > 0.6);
  }
}

TEST_CASE("SIM hard search reads only behaviours of the candidate's category") {
  const auto& d = feed(200);
  json m = sim_model("hard");
  m["embedding_init_std"] = 0.3;
  m["sequences"][0]["top_k"] = 3;
  auto model = models::build_model(config(d.schema, m));
  auto ws = model->make_workspace();
  // 50 categories: item i has category i % 50. Candidate 7 (category 7).
  // Behaviours: 57, 107 and 157 share category 7; the others do not.
  auto full = make_batch(d.schema, {{1, 57, 2, 3, 107, 4, 157, 5}}, {7});
  Tensor a(Shape{1, 3}), c(Shape{1, 3});
  copy(model->serve(full, *ws), a.matrix());
  // Same matching behaviours at the same time gaps, non-matching ones replaced by other
  // non-matching items: the output must not change.
  auto other = make_batch(d.schema, {{11, 57, 12, 13, 107, 14, 157, 15}}, {7});
  copy(model->serve(other, *ws), c.matrix());
  for (Index k = 0; k < 3; ++k) CHECK(a[k] == Approx(c[k]).margin(1e-6));
  // Only the top_k = 3 most recent matches count: an older match changes nothing ...
  auto older = make_batch(d.schema, {{207, 57, 2, 3, 107, 4, 157, 5}}, {7});
  copy(model->serve(older, *ws), c.matrix());
  for (Index k = 0; k < 3; ++k) CHECK(a[k] == Approx(c[k]).margin(1e-6));
  // ... but replacing a match does.
  auto changed = make_batch(d.schema, {{1, 57, 2, 3, 107, 4, 257, 5}}, {7});
  copy(model->serve(changed, *ws), c.matrix());
  CHECK(std::abs(a[0] - c[0]) > 1e-7);
}

TEST_CASE("SIM gradients, truncation and empty sequences") {
  const auto& d = feed(200);
  for (const char* search : {"hard", "soft"}) {
    INFO(search);
    json m = sim_model(search);
    m["embedding_init_std"] = 0.3;
    m["sequences"][0]["top_k"] = 2;
    auto model = models::build_model(config(d.schema, m));
    Rng rng(4);
    for (auto& p : model->arena().parameters())
      if (!p.sparse && p.trainable)
        for (Index i = 0; i < p.numel(); ++i) p.value[i] += float(rng.normal(0.0, 0.05));
    auto b = make_batch(d.schema, {{57, 1, 107, 2}, {}, {5, 55, 9}, {8}}, {7, 4, 5, 8});
    for (auto [name, idx] : std::vector<std::pair<std::string, Index>>{{"interest.long.esu.attn.in_proj_weight", 21},
                                                                        {"interest.long.esu.attn.out_proj.weight", 3},
                                                                        {"interest.long.esu.time_embedding.weight", 5 * 16 + 2},
                                                                        {"embeddings.item_id.weight", 57 * 8 + 3},
                                                                        {"embeddings.item_id.weight", 7 * 8 + 1}}) {
      INFO(name << "[" << idx << "]");
      auto [a, n] = grad_pair(*model, b, name, idx);
      CHECK(a == Approx(n).epsilon(3e-2).margin(2e-3));
    }
    // max_len: with max_len 3 the oldest behaviour is invisible even to the search.
    json mt = m;
    mt["sequences"][0]["max_len"] = 3;
    auto mt_model = models::build_model(config(d.schema, mt));
    auto ws = mt_model->make_workspace();
    auto longb = make_batch(d.schema, {{57, 107, 2, 157}}, {7});
    auto shortb = make_batch(d.schema, {{107, 2, 157}}, {7});
    Tensor a(Shape{1, 3}), c(Shape{1, 3});
    copy(mt_model->serve(longb, *ws), a.matrix());
    copy(mt_model->serve(shortb, *ws), c.matrix());
    for (Index k = 0; k < 3; ++k) CHECK(a[k] == Approx(c[k]).margin(1e-6));
    // All-empty batch.
    auto empty = make_batch(d.schema, {{}, {}, {}}, {1, 2, 3});
    auto out = mt_model->forward(empty, *ws, Context::inference());
    for (Index i = 0; i < 3; ++i) CHECK(std::isfinite(out(i, 0)));
    Tensor g(Shape{3, 3}, 1.0f);
    mt_model->backward(g.matrix(), *ws);
  }
}

TEST_CASE("SIM configs name the offending field") {
  const auto& d = feed();
  auto expect = [&](json m, const char* needle) {
    INFO(m.dump());
    CHECK_THROWS_WITH(models::build_model(config(d.schema, m)), Catch::Contains(needle));
  };
  json m = sim_model();
  m["sequences"][0]["search"] = "exact";
  expect(m, "config.model.sequences[0].search");
  m = sim_model();
  m["sequences"][0]["top_k"] = 0;
  expect(m, "config.model.sequences[0].top_k");
  m = sim_model();
  m["sequences"][0]["fields"] = {"click_seq"};
  m["sequences"][0]["query"] = {"item_id"};
  expect(m, "config.model.sequences[0].category_field: missing");
  m = sim_model();
  m["sequences"][0]["category_field"] = "clicks";
  expect(m, "config.model.sequences[0].category_field: 'clicks'");
  m = sim_model("soft");
  m["sequences"][0]["candidate_field"] = "category";
  expect(m, "only used by search \"hard\"");
  m = sim_model();
  m["sequences"][0]["time_mode"] = "concat";
  m["sequences"][0]["time_dim"] = 3;
  expect(m, "config.model.sequences[0].heads: the key width 19");
}
