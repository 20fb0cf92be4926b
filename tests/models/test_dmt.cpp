// DMT (Gu et al. CIKM 2020) as type "dmt": Transformer encoders per behaviour sequence with the
// candidate as target-attention query, MMoE on top, and a bias network whose logit is added in
// forward() (training) and dropped in serve(). Also the seed's simplified variant (no bias
// network, SNR) and DMT-GRU.
#include "seqmodel_util.hpp"

using namespace seqtest;

namespace {

json dmt_model() {
  // PReLU towers: with 8-unit ReLU towers and the bias network taking over the intercept, the
  // main towers can die within the first epoch (seen with DMT-GRU; docs/sequence-models.md).
  return json::parse(R"({"type": "dmt", "num_experts": 3, "expert": {"layers": [32, 16]},
                         "tower": {"hidden": [8], "activation": "prelu"},
                         "sequences": [{"name": "click", "fields": ["click_seq", "click_cat_seq"], "heads": 2, "ff": 32,
                                        "position": "time_gap", "time_buckets": 12}],
                         "bias_net": {"fields": ["scene", "item_age"], "hidden": [8]}})");
}

}  // namespace

TEST_CASE("DMT, simplified DMT (SNR, no bias) and DMT-GRU build and learn on the simulator") {
  const auto& d = feed();
  auto [train, test] = data::train_test_split(d, 0.25);
  json simplified = dmt_model();
  simplified.erase("bias_net");
  simplified.erase("num_experts");
  simplified.erase("expert");
  simplified.update(json::parse(R"({"backbone": "snr_trans", "code": {"log_alpha_mean": 2.0},
      "stages": [{"num_subnets": 3, "subnet": {"layers": [16]}}, {"num_subnets": 3, "subnet": {"layers": [16]}}]})"));
  json gru = dmt_model();
  gru["sequences"] = json::parse(R"([{"name": "click", "fields": ["click_seq", "click_cat_seq"], "kind": "gru", "heads": 2}])");
  json learned = dmt_model();
  learned["sequences"][0]["position"] = "learned";
  for (auto [name, m] : std::vector<std::pair<std::string, json>>{
           {"dmt", dmt_model()}, {"dmt learned positions", learned}, {"simplified", simplified}, {"dmt-gru", gru}}) {
    INFO(name);
    auto model = models::build_model(config(d.schema, m));
    auto r = fit(*model, train, test);
    REQUIRE(r.hist.size() == 2);
    CHECK(r.hist[1].train_loss < r.hist[0].train_loss);
    CHECK(r.hist[1].valid_loss < r.before_loss);
    // forward() includes the bias logit (trained objective); serve() is what ranks.
    CHECK(r.hist[1].valid[0].auc > 0.55);
    const auto served = serve_metrics(*model, test);  // bias dropped
    CHECK(served[0].auc > 0.6);
  }
}

TEST_CASE("DMT: the bias network is in forward() and absent from serve()") {
  const auto& d = feed();
  json m = dmt_model();
  m["embedding_init_std"] = 0.3;
  auto model = models::build_model(config(d.schema, m));
  auto& arena = model->arena();
  REQUIRE(arena.find("bias_net.layers.1.bias") != nullptr);
  REQUIRE(arena.at("bias_net.layers.1.weight").shape == Shape{1, 8});
  REQUIRE(arena.at("bias_net.layers.0.weight").shape == Shape{8, 8 + 1});  // scene (8) + item_age (1)
  CHECK(arena.find("interest.click.encoder.time_embedding.weight") != nullptr);
  CHECK(arena.find("interest.click.encoder.layers.0.self_attn.in_proj_weight") != nullptr);
  CHECK(arena.find("interest.click.target.in_proj_weight") != nullptr);
  CHECK(arena.find("gates.2.weight") != nullptr);  // MMoE with 3 tasks
  arena.at("bias_net.layers.1.bias").value[0] = 0.75f;
  auto ws = model->make_workspace();
  auto b = make_batch(d.schema, {{1, 2, 3}, {}, {4, 5, 6, 7}}, {3, 9, 5});
  Tensor fwd(Shape{3, 3}), srv(Shape{3, 3});
  copy(model->forward(b, *ws, Context::inference()), fwd.matrix());
  copy(model->serve(b, *ws), srv.matrix());
  // The difference is one bias logit per row, the same for every task, and not zero.
  for (Index i = 0; i < 3; ++i) {
    const float diff = fwd[i * 3] - srv[i * 3];
    CHECK(std::abs(diff) > 1e-3);
    for (Index k = 1; k < 3; ++k) CHECK(fwd[i * 3 + k] - srv[i * 3 + k] == Approx(diff).margin(1e-5));
  }
  // The bias fields feed only the bias network (exclusive): changing them moves forward() only.
  const Index ns = static_cast<Index>(d.schema.sparse.size());
  const Index scene = d.schema.sparse_index("scene");
  auto b2 = b;
  for (Index i = 0; i < 3; ++i) b2.sparse[i * ns + scene] = 1 - b.sparse[i * ns + scene];
  Tensor fwd2(Shape{3, 3}), srv2(Shape{3, 3});
  copy(model->forward(b2, *ws, Context::inference()), fwd2.matrix());
  copy(model->serve(b2, *ws), srv2.matrix());
  for (Index i = 0; i < 9; ++i) CHECK(srv2[i] == srv[i]);
  bool moved = false;
  for (Index i = 0; i < 9; ++i) moved = moved || std::abs(fwd2[i] - fwd[i]) > 1e-5;
  CHECK(moved);
  // Training step: forward(training) includes the bias, so the bias net gets gradients.
  arena.zero_grad();
  Rng rng(1);
  Context ctx = Context::train(rng);
  auto out = model->forward(b, *ws, ctx);
  Tensor g(Shape{out.rows, out.cols}, 1.0f);
  model->backward(g.matrix(), *ws);
  CHECK(arena.at("bias_net.layers.1.bias").grad[0] == Approx(9.0));  // sum of d_out over 3 rows x 3 tasks
  // Predict (serving probabilities) uses serve().
  Tensor p(Shape{3, 3});
  model->predict(b, *ws, p.matrix());
  for (Index i = 0; i < 9; ++i) CHECK(p[i] == Approx(1.0 / (1.0 + std::exp(-double(srv[i])))).margin(1e-6));
}

TEST_CASE("DMT gradients through encoder, target attention, MMoE and bias network") {
  const auto& d = feed();
  for (const char* kind : {"transformer", "gru"}) {
    INFO(kind);
    json m = dmt_model();
    m["embedding_init_std"] = 0.3;
    m["sequences"][0]["kind"] = kind;
    if (std::string(kind) == "gru") {
      m["sequences"][0].erase("ff");
      m["sequences"][0].erase("position");
      m["sequences"][0].erase("time_buckets");
    }
    m["bias_net"]["per_task"] = true;
    auto model = models::build_model(config(d.schema, m));
    Rng rng(4);
    for (auto& p : model->arena().parameters())
      if (!p.sparse && p.trainable)
        for (Index i = 0; i < p.numel(); ++i) p.value[i] += float(rng.normal(0.0, 0.05));
    auto b = make_batch(d.schema, {{1, 2, 3, 4}, {}, {5, 9}, {7}}, {3, 4, 5, 8});
    std::vector<std::pair<std::string, Index>> checks = {{"interest.click.target.in_proj_weight", 5},
                                                         {"interest.click.target.out_proj.weight", 17},
                                                         {"bias_net.layers.1.weight", 9},
                                                         {"gates.1.weight", 4},
                                                         {"embeddings.item_id.weight", 2 * 8 + 3},
                                                         {"embeddings.category.weight", 5 * 8 + 6}};
    if (std::string(kind) == "gru") checks.push_back({"interest.click.gru.weight_hh_l0", 7});
    else checks.push_back({"interest.click.encoder.layers.0.linear1.weight", 11});
    for (auto [name, idx] : checks) {
      INFO(name << "[" << idx << "]");
      auto [a, n] = grad_pair(*model, b, name, idx);
      CHECK(a == Approx(n).epsilon(3e-2).margin(2e-3));
    }
  }
}

TEST_CASE("DMT: truncation to max_len and empty sequences") {
  const auto& d = feed();
  json m = dmt_model();
  m["embedding_init_std"] = 0.3;
  m["sequences"][0]["max_len"] = 2;
  auto model = models::build_model(config(d.schema, m));
  auto ws = model->make_workspace();
  auto longb = make_batch(d.schema, {{10, 11, 12, 13}, {20}, {}}, {1, 2, 3});
  auto shortb = make_batch(d.schema, {{12, 13}, {20}, {}}, {1, 2, 3});
  Tensor a(Shape{3, 3}), c(Shape{3, 3});
  copy(model->forward(longb, *ws, Context::inference()), a.matrix());
  copy(model->forward(shortb, *ws, Context::inference()), c.matrix());
  for (Index i = 0; i < 9; ++i) CHECK(a[i] == Approx(c[i]).margin(1e-6));
  auto empty = make_batch(d.schema, {{}, {}}, {1, 2});
  model->arena().zero_grad();
  auto out = model->forward(empty, *ws, Context::inference());
  for (Index i = 0; i < 2; ++i) CHECK(std::isfinite(out(i, 0)));
  Tensor g(Shape{2, 3}, 1.0f);
  model->backward(g.matrix(), *ws);
  CHECK(std::isfinite(model->arena().at("interest.click.target.out_proj.bias").grad[0]));
}

TEST_CASE("DMT configs name the offending field") {
  const auto& d = feed();
  auto expect = [&](json m, const char* needle) {
    INFO(m.dump());
    CHECK_THROWS_WITH(models::build_model(config(d.schema, m)), Catch::Contains(needle));
  };
  json m = dmt_model();
  m["sequences"][0]["heads"] = 3;
  expect(m, "config.model.sequences[0].heads: the behaviour width 16 is not divisible by 3");
  m = dmt_model();
  m["sequences"][0]["position"] = "sinusoid";
  expect(m, "config.model.sequences[0].position");
  m = dmt_model();
  m["sequences"][0]["hidden"] = {8};
  expect(m, "config.model.sequences[0].hidden: unknown field");
  m = dmt_model();
  m["bias_net"]["per_task"] = 1;
  expect(m, "config.model.bias_net.per_task");
  m = dmt_model();
  m["bias_net"]["fields"] = json::array();
  expect(m, "config.model.bias_net.fields");
  m = dmt_model();
  m["num_experts"] = 0;
  expect(m, "config.model.num_experts");
}
