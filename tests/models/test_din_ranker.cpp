// DIN ranker and multi-DIN multi-task ranker (models/interest_model.hpp, type "din"): JSON
// build, training on the simulator, gradients through the whole model, truncation to the most
// recent max_len items, empty sequences, and config errors that name the field.
#include "seqmodel_util.hpp"

using namespace seqtest;

namespace {

json din_model(json extra = json::object()) {
  json m = json::parse(R"({"type": "din", "sequences": [{"fields": ["click_seq", "click_cat_seq"], "hidden": [16, 8]}],
                           "bottom": {"layers": [32, 16]}, "tower": {"hidden": [8]}})");
  m.update(extra);
  return m;
}

}  // namespace

TEST_CASE("DIN ranker and multi-DIN build from JSON and learn on the simulator") {
  const auto& d = feed();
  auto [train, test] = data::train_test_split(d, 0.25);
  struct Case {
    const char* name;
    json model;
  };
  std::vector<Case> cases = {
      {"din (shared bottom)", din_model()},
      {"din softmax + length normalisation, dice",
       din_model(json::parse(R"({"sequences": [{"fields": ["click_seq", "click_cat_seq"], "hidden": [16],
                                               "softmax": true, "normalize_by_length": true, "activation": "dice"}]})"))},
      {"multi-DIN (mmoe)",
       json::parse(R"({"type": "din", "backbone": "mmoe", "num_experts": 3, "expert": {"layers": [32, 16]},
                       "tower": {"hidden": [8]},
                       "sequences": [{"name": "items", "fields": ["click_seq"], "query": ["item_id"], "hidden": [16]},
                                     {"name": "cats", "fields": ["click_cat_seq"], "query": ["category"], "hidden": [16]}]})")},
      {"multi-DIN (snr_trans)",
       json::parse(R"({"type": "din", "backbone": "snr_trans", "tower": {"hidden": [8]},
                       "stages": [{"num_subnets": 3, "subnet": {"layers": [16]}}, {"num_subnets": 3, "subnet": {"layers": [16]}}],
                       "code": {"log_alpha_mean": 2.0},
                       "sequences": [{"name": "items", "fields": ["click_seq"], "hidden": [16]},
                                     {"name": "cats", "fields": ["click_cat_seq"], "hidden": [16]}]})")},
  };
  for (auto& c : cases) {
    INFO(c.name);
    auto model = models::build_model(config(d.schema, c.model));
    auto r = fit(*model, train, test);
    REQUIRE(r.hist.size() == 2);
    CHECK(r.hist[1].train_loss < r.hist[0].train_loss);
    CHECK(r.hist[1].valid_loss < r.before_loss);
    CHECK(r.hist[1].valid[0].auc > 0.6);  // click
  }
}

TEST_CASE("DIN ranker parameters and gradients") {
  const auto& d = feed();
  json m = din_model(json::parse(R"({"embedding_init_std": 0.3, "bias_net": {"fields": ["scene", "item_age"], "hidden": [4]}})"));
  auto model = models::build_model(config(d.schema, m));
  // DIN unit under interest.<name>, sequences read the shared item/category tables.
  CHECK(model->arena().find("interest.click_seq.layers.0.weight") != nullptr);
  CHECK(model->arena().at("interest.click_seq.layers.0.weight").shape == Shape{16, 4 * 16});
  CHECK(model->arena().find("embeddings.click_seq.weight") == nullptr);
  // Perturb the DIN head and the bias net so no gradient is trivially zero.
  Rng rng(3);
  for (auto& p : model->arena().parameters())
    if (!p.sparse && p.trainable)
      for (Index i = 0; i < p.numel(); ++i) p.value[i] += float(rng.normal(0.0, 0.05));
  auto b = make_batch(d.schema, {{1, 2, 3, 4}, {}, {5, 9}, {7}}, {3, 4, 5, 8});
  for (auto [name, idx] : std::vector<std::pair<std::string, Index>>{{"interest.click_seq.layers.0.weight", 3},
                                                                      {"interest.click_seq.layers.0.weight", 40},
                                                                      {"interest.click_seq.layers.2.weight", 1},
                                                                      {"bias_net.layers.0.weight", 2},
                                                                      {"embeddings.item_id.weight", 2 * 8 + 3},   // behaviour only
                                                                      {"embeddings.item_id.weight", 4 * 8 + 1},   // candidate + behaviour
                                                                      {"embeddings.category.weight", 5 * 8 + 6},
                                                                      {"embeddings.scene.weight", 1}}) {
    INFO(name << "[" << idx << "]");
    auto [a, n] = grad_pair(*model, b, name, idx);
    CHECK(a == Approx(n).epsilon(3e-2).margin(2e-3));
  }
}

TEST_CASE("DIN ranker keeps the most recent max_len behaviours") {
  const auto& d = feed();
  json m = din_model(json::parse(R"({"embedding_init_std": 0.3})"));
  m["sequences"][0]["max_len"] = 3;
  auto model = models::build_model(config(d.schema, m));
  auto ws = model->make_workspace();
  auto longb = make_batch(d.schema, {{10, 11, 12, 13, 14, 15}, {20, 21}, {30, 31, 32, 33}}, {1, 2, 3});
  auto shortb = make_batch(d.schema, {{13, 14, 15}, {20, 21}, {31, 32, 33}}, {1, 2, 3});
  // Same times for the kept items (make_batch counts back from the end).
  Tensor a(Shape{3, 3}), c(Shape{3, 3});
  copy(model->serve(longb, *ws), a.matrix());
  copy(model->serve(shortb, *ws), c.matrix());
  for (Index i = 0; i < 9; ++i) CHECK(a[i] == Approx(c[i]).margin(1e-6));
  // ... and differs from a window that includes an older item.
  auto other = make_batch(d.schema, {{12, 13, 14}, {20, 21}, {31, 32, 33}}, {1, 2, 3});
  copy(model->serve(other, *ws), c.matrix());
  CHECK(std::abs(a[0] - c[0]) > 1e-7);
}

TEST_CASE("DIN ranker: a batch of empty sequences works forward and backward") {
  const auto& d = feed();
  auto model = models::build_model(config(d.schema, din_model()));
  auto ws = model->make_workspace();
  auto b = make_batch(d.schema, {{}, {}, {}}, {1, 2, 3});
  model->arena().zero_grad();
  auto out = model->forward(b, *ws, Context::inference());
  REQUIRE(out.rows == 3);
  for (Index i = 0; i < 3; ++i)
    for (Index k = 0; k < 3; ++k) CHECK(std::isfinite(out(i, k)));
  Tensor g(Shape{3, 3}, 1.0f);
  model->backward(g.matrix(), *ws);
  for (auto& p : model->arena().parameters())
    if (p.grad)
      for (Index i = 0; i < p.numel(); ++i) REQUIRE(std::isfinite(p.grad[i]));
  // A training step with the trainer on an all-empty batch.
  auto opt = train::make_optimizer(json{{"type", "adam"}, {"lr", 1e-3}});
  train::Trainer trainer(*model, *opt, {.progress = 2});
  CHECK(std::isfinite(trainer.train_step(b)));
}

TEST_CASE("Interest model configs name the offending field") {
  const auto& d = feed();
  auto expect = [&](json m, const char* needle) {
    INFO(m.dump());
    CHECK_THROWS_WITH(models::build_model(config(d.schema, m)), Catch::Contains(needle));
  };
  json m = din_model();
  m.erase("sequences");
  expect(m, "config.model.sequences");
  m = din_model();
  m["sequences"][0]["fields"] = {"click_seqq"};
  expect(m, "config.model.sequences[0].fields: 'click_seqq'");
  m = din_model();
  m["sequences"][0]["query"] = {"item_id"};
  expect(m, "config.model.sequences[0].query: the candidate's width 8 != the behaviour width 16");
  m = din_model();
  m["sequences"][0]["kind"] = "lstm";
  expect(m, "config.model.sequences[0].kind");
  m = din_model();
  m["sequences"][0]["top_k"] = 5;
  expect(m, "config.model.sequences[0].top_k: unknown field");
  m = din_model();
  m["sequences"][0]["activation"] = "relu";
  expect(m, "config.model.sequences[0].activation");
  m = din_model();
  m["sequences"][0]["max_len"] = 0;
  expect(m, "config.model.sequences[0].max_len");
  m = din_model();
  m["sequences"].push_back(json{{"fields", {"click_seq"}}});
  expect(m, "config.model.sequences[1].name: duplicate");
  m = din_model();
  m["sequences"].push_back(json{{"name", "again"}, {"fields", {"click_seq"}}});
  expect(m, "config.model.sequences[1].fields: sequence 'click_seq' is already used");
  m = din_model();
  m["backbone"] = "esmm";
  expect(m, "config.model.backbone");
  m = din_model();
  m["bias_net"] = {{"fields", {"position"}}};
  expect(m, "config.model.bias_net.fields: 'position'");
  m = din_model();
  m["bias_net"] = {{"fields", {"item_id"}}};
  expect(m, "config.model.bias_net.fields: 'item_id' is a query field");
  m = din_model();
  m["output"] = "esmm";
  expect(m, "config.model.output");
  m = json::parse(R"({"type": "mmoe", "sequences": []})");
  expect(m, "config.model.sequences: only used by types");
  // Unaligned sequences at run time name both fields and the sample.
  auto model = models::build_model(config(d.schema, din_model()));
  auto ws = model->make_workspace();
  auto b = make_batch(d.schema, {{1, 2}, {3}}, {1, 2});
  const int cat = 1;  // click_cat_seq
  REQUIRE(d.schema.sequences[cat].name == "click_cat_seq");
  b.sequences[cat].ids.pop_back();
  b.sequences[cat].times.pop_back();
  b.sequences[cat].offsets.back() -= 1;
  CHECK_THROWS_WITH(model->forward(b, *ws, Context::inference()),
                    Catch::Contains("sequence 'click_cat_seq' has 0 items in sample 1 but 'click_seq' has 1"));
}
