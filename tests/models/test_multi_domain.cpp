// Multi-domain model: finite-difference gradients in double for every part under several
// wirings, scene isolation of the towers, training on the two-scene simulator, config errors.
#include <nlohmann/json.hpp>

#include "mtrank/data/simulator.hpp"
#include "mtrank/models/multi_domain.hpp"
#include "mtrank/train/grad_check.hpp"
#include "mtrank/train/metrics.hpp"
#include "mtrank/train/trainer.hpp"
#include "testing.hpp"

using namespace mtrank;
using nlohmann::json;

namespace {

data::FeatureSchema tiny_schema() {
  return json::parse(R"({
    "sparse": [{"name": "user_id", "vocab": 5, "dim": 3}, {"name": "item_id", "vocab": 7, "dim": 3},
               {"name": "author", "vocab": 4, "dim": 2}],
    "dense": ["x0", "x1"],
    "sequences": [{"name": "click_seq", "vocab": 7, "table": "item_id", "max_len": 3}],
    "tasks": [{"name": "click"}, {"name": "interaction"}, {"name": "long_dwell"}],
    "num_scenes": 2})")
      .get<data::FeatureSchema>();
}

data::Batch tiny_batch(std::vector<std::int32_t> scenes) {
  data::Batch b;
  const Index B = static_cast<Index>(scenes.size());
  b.size = B;
  b.scene = scenes;
  Rng rng(3);
  for (Index i = 0; i < B; ++i) {
    b.sparse.push_back(static_cast<std::int64_t>(rng.below(5)));
    b.sparse.push_back(static_cast<std::int64_t>(rng.below(7)));
    b.sparse.push_back(static_cast<std::int64_t>(rng.below(4)));
  }
  b.dense = Tensor(Shape{B, 2});
  for (auto& v : b.dense) v = static_cast<float>(rng.normal());
  data::SequenceColumn seq;
  for (Index i = 0; i < B; ++i) {
    const Index n = i % 4;  // includes empty and truncated (> max_len) sequences
    for (Index j = 0; j < n; ++j) seq.ids.push_back(static_cast<std::int64_t>(rng.below(7)));
    seq.offsets.push_back(static_cast<std::int64_t>(seq.ids.size()));
  }
  b.sequences = {seq};
  return b;
}

models::MultiDomainOptions tiny_options() {
  models::MultiDomainOptions o;
  o.scene_dim = 2;
  o.transform_out = 0;
  o.snr.stages.push_back({.num_subnets = 2, .subnet = {.mlp = {.layers = {5}, .activation = nn::ActivationKind::tanh}}});
  o.snr.stages.push_back({.num_subnets = 3, .subnet = {.mlp = {.layers = {4}, .activation = nn::ActivationKind::tanh}}});
  o.snr.code.log_alpha_mean = 1.0;  // every code strictly inside (0, 1): a gradient flows through each
  o.tower = {.hidden = {4}, .activation = nn::ActivationKind::tanh};
  return o;
}

GradCheckReport check(const models::MultiDomainOptions& o, const data::Batch& batch) {
  ParameterArenaT<double> arena(11);
  // A wide embedding init so the embedding tables' gradients are not negligible.
  models::MultiDomainNet<double> net(arena, tiny_schema(), {.embedding_init = Init::normal(0.0, 0.5)}, o);
  // Perturb the identity-initialised transforms so they are generic affine maps.
  Rng rng(5);
  for (auto& p : arena.parameters())
    if (p.name.rfind("transform.", 0) == 0)
      for (Index i = 0; i < p.numel(); ++i) p.value[i] += 0.3 * rng.normal();
  typename models::MultiDomainNet<double>::Workspace ws;
  const auto r = testing::random_vector(static_cast<std::size_t>(batch.size * 3), rng);
  using SG = models::MultiDomainNet<double>::Workspace::StopGradient;
  auto loss = [&] {
    ws.stop_gradient = SG::replay;
    return dot_loss(net.forward(batch, ws, Context::inference()), r);
  };
  auto analytic = [&] {
    ws.stop_gradient = SG::record;
    auto y = net.forward(batch, ws, Context::inference());
    TensorT<double> d(Shape{y.rows, y.cols});
    for (Index i = 0; i < d.numel(); ++i) d[i] = r[static_cast<std::size_t>(i)];
    net.backward(d.matrix(), ws);
  };
  return grad_check(arena, loss, analytic, {}, {.eps = 1e-6, .tolerance = 1e-6, .max_per_tensor = 40});
}

}  // namespace

TEST_CASE("multi_domain: finite-difference gradients of every part (double)") {
  const data::Batch batch = tiny_batch({0, 1, 1, 0, 1, 0, 0});
  SECTION("all wirings, transform with a different output width") {
    auto o = tiny_options();
    o.transform_out = 4;
    o.domain_fields = {"author"};
    auto rep = check(o, batch);
    INFO(rep.worst);
    CHECK(rep.checked > 300);
    CHECK(rep.max_error < 1e-5);
  }
  SECTION("unit-wise slot gate, SNR-Aver, prior fields given") {
    auto o = tiny_options();
    o.epnet_unit_wise = true;
    o.snr_kind = blocks::SnrKind::aver;
    o.snr.stages[1].subnet.mlp.layers = {5};
    o.snr.stages[0].subnet.mlp.layers = {5};
    o.prior_fields = {"user_id"};
    o.tower.hidden = {3, 2};
    auto rep = check(o, batch);
    INFO(rep.worst);
    CHECK(rep.max_error < 1e-5);
  }
  SECTION("each wiring alone, and none") {
    for (int mask = 0; mask < 8; ++mask) {
      auto o = tiny_options();
      o.wiring = {.features = bool(mask & 1), .experts = bool(mask & 2), .towers = bool(mask & 4)};
      o.transform = mask != 0;
      auto rep = check(o, batch);
      INFO("mask " << mask << ": " << rep.worst);
      CHECK(rep.max_error < 1e-5);
    }
  }
}

TEST_CASE("multi_domain: a sample only reaches its scene's towers") {
  ParameterArenaT<double> arena(1);
  models::MultiDomainNet<double> net(arena, tiny_schema(), {}, tiny_options());
  models::MultiDomainNet<double>::Workspace ws;
  const data::Batch batch = tiny_batch({0, 0, 0, 0});
  auto y = net.forward(batch, ws, Context::inference());
  TensorT<double> d(Shape{y.rows, y.cols}, 1.0);
  arena.zero_grad();
  net.backward(d.matrix(), ws);
  double g0 = 0, g1 = 0;
  for (auto& p : arena.parameters()) {
    if (!p.grad) continue;
    double s = 0;
    for (Index i = 0; i < p.numel(); ++i) s += std::abs(p.grad[i]);
    if (p.name.rfind("towers.0.", 0) == 0) g0 += s;
    if (p.name.rfind("towers.1.", 0) == 0) g1 += s;
    if (p.name.rfind("transform.", 0) == 0) {  // scene 1's transform gets nothing either
      const Index per = p.numel() / 2;
      for (Index i = per; i < p.numel(); ++i) CHECK(p.grad[i] == 0.0);
    }
  }
  CHECK(g0 > 0);
  CHECK(g1 == 0.0);
  // Scene 1's outputs differ from scene 0's for the same features (different towers).
  const data::Batch b1 = tiny_batch({1, 1, 1, 1});  // same features (same draws), scene 1
  TensorT<double> y0(Shape{4, 3});
  copy(y, y0.matrix());
  auto y1 = net.forward(b1, ws, Context::inference());
  CHECK(y1(0, 0) != y0.matrix()(0, 0));
}

namespace {

const data::Dataset& feed() {
  static const data::Dataset d = [] {
    data::FeedSimulatorOptions o;
    o.impressions = 16000;
    o.users = 300;
    o.items = 600;
    o.trending_fraction = 0.4;
    o.seed = 9;
    return data::make_feed_dataset(o);
  }();
  return d;
}

json md_config() {
  json m = json::parse(R"({"type": "multi_domain", "scene_dim": 4,
      "stages": [{"num_subnets": 3, "subnet": {"layers": [32]}}, {"num_subnets": 3, "subnet": {"layers": [16]}}],
      "tower": {"hidden": [8]}, "dot_interactions": true})");
  return {{"schema", json(feed().schema)}, {"model", m}, {"seed", 3}};
}

}  // namespace

TEST_CASE("multi_domain: trains on the two-scene simulator, AUC well above chance in each scene") {
  auto [train, test] = data::train_test_split(feed(), 0.25);
  auto model = models::build_model(md_config());
  auto opt = train::make_optimizer(json{{"type", "adam"}, {"lr", 3e-3}});
  train::Trainer trainer(*model, *opt, {.batch_size = 256, .epochs = 3, .seed = 3, .progress = 2});
  const auto hist = trainer.fit(train, &test);
  CHECK(hist.back().train_loss < hist.front().train_loss);
  // Per-scene click AUC on the test split.
  auto ws = model->make_workspace();
  data::Batch b;
  test.slice(0, test.rows, b);
  Tensor p(Shape{test.rows, 3});
  model->predict(b, *ws, p.matrix());
  for (int s = 0; s < 2; ++s) {
    std::vector<float> sc, lab, orc;
    for (Index i = 0; i < test.rows; ++i)
      if (b.scene[i] == s) {
        sc.push_back(p[i * 3]);
        lab.push_back(b.labels[i * 3]);
        orc.push_back(b.oracle[i * 3]);
      }
    const double a = train::auc(sc, lab), best = train::auc(orc, lab);
    WARN("scene " << s << " rows " << sc.size() << " click AUC " << a << " (oracle " << best << ")");
    CHECK(sc.size() > 500);
    CHECK(a > 0.6);  // measured ~0.63 per scene; MMoE/SNR-Trans reach 0.63-0.65 on this small sample
  }
}

TEST_CASE("multi_domain: bad configs and bad scene ids name the field") {
  auto expect = [](json c, const char* needle) {
    INFO(c["model"].dump());
    CHECK_THROWS_WITH(models::build_model(c), Catch::Contains(needle));
  };
  json c = md_config();
  c["model"]["scene_dim"] = 0;
  expect(c, "config.model.scene_dim");
  c = md_config();
  c["model"]["wiring"] = {{"towers", true}, {"expert", true}};
  expect(c, "config.model.wiring.expert: unknown field");
  c = md_config();
  c["model"]["tower"]["hidden"] = json::array();
  expect(c, "config.model.tower.hidden");
  c = md_config();
  c["model"]["ppnet"] = {{"prior_fields", {"user_id", "nope"}}};
  expect(c, "config.model.ppnet.prior_fields");
  c = md_config();
  c["model"]["slot_gate"] = {{"domain_fields", {"scenery"}}};
  expect(c, "config.model.slot_gate.domain_fields");
  c = md_config();
  c["model"]["snr_kind"] = "avg";
  expect(c, "config.model.snr_kind");
  c = md_config();
  c["model"]["stages"][1]["num_subnets"] = 2;
  expect(c, "task_subnet");
  c = md_config();
  c["model"]["embedding_transform"] = {{"out_dim", -1}};
  expect(c, "config.model.embedding_transform.out_dim");
  c = md_config();
  c["model"]["tower"]["dropout"] = 0.1;
  expect(c, "config.model.tower.dropout");
  c = md_config();
  c["model"]["type"] = "mmoe";
  expect(c, "only used by type \"multi_domain\"");

  auto model = models::build_model(md_config());
  auto ws = model->make_workspace();
  data::Batch b;
  feed().slice(0, 4, b);
  b.scene[2] = 2;
  CHECK_THROWS_WITH(model->forward(b, *ws, Context::inference()), Catch::Contains("scene[2] = 2 out of range"));
  b.scene.pop_back();
  CHECK_THROWS_WITH(model->forward(b, *ws, Context::inference()), Catch::Contains("batch.scene"));
}
