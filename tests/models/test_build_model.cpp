// Models built from JSON configs: every type builds, trains on the simulator (loss falls,
// AUC clearly above chance), bad configs name the field, and checkpoints resume exactly.
#include <nlohmann/json.hpp>

#include "mtrank/data/simulator.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/serve/predictor.hpp"
#include "mtrank/train/trainer.hpp"
#include "testing.hpp"

using namespace mtrank;
using nlohmann::json;

namespace {

const data::Dataset& small_feed() {
  static const data::Dataset d = [] {
    data::FeedSimulatorOptions o;
    o.impressions = 12000;
    o.users = 300;
    o.items = 600;
    o.seed = 5;
    return data::make_feed_dataset(o);
  }();
  return d;
}

json config_for(const std::string& type) {
  json m;
  if (type == "shared_bottom" || type == "esmm") m = json::parse(R"({"bottom": {"layers": [32, 16]}, "tower": {"hidden": [8]}})");
  if (type == "mmoe") m = json::parse(R"({"num_experts": 3, "expert": {"layers": [32, 16]}, "tower": {"hidden": [8]}})");
  if (type == "ple")
    m = json::parse(R"({"levels": [{"num_task_experts": 1, "num_shared_experts": 1, "expert": {"layers": [16]}},
                                   {"num_task_experts": 1, "num_shared_experts": 1, "expert": {"layers": [16]}}]})");
  if (type == "snr_trans" || type == "snr_aver")
    m = json::parse(R"({"stages": [{"num_subnets": 3, "subnet": {"layers": [16]}}, {"num_subnets": 3, "subnet": {"layers": [16]}}],
                        "task_subnet": [0, 1, 2], "code": {"log_alpha_mean": 2.0}})");
  m["type"] = type;
  m["dot_interactions"] = true;
  json schema = small_feed().schema;
  return {{"schema", schema}, {"model", m}, {"seed", 7}};
}

}  // namespace

TEST_CASE("Every model type builds from JSON and learns on the simulator") {
  const auto& d = small_feed();
  auto [train, test] = data::train_test_split(d, 0.25);
  for (std::string type : {"shared_bottom", "mmoe", "ple", "snr_trans", "snr_aver"}) {
    INFO("model " << type);
    auto model = models::build_model(config_for(type));
    auto opt = train::make_optimizer(json{{"type", "adam"}, {"lr", 3e-3}});
    train::Trainer trainer(*model, *opt, {.batch_size = 256, .epochs = 2, .seed = 3, .progress = 2});
    const auto before = trainer.evaluate(test);
    const auto hist = trainer.fit(train, &test);
    REQUIRE(hist.size() == 2);
    CHECK(hist[1].train_loss < hist[0].train_loss);
    CHECK(hist[1].valid_loss < before.first);
    CHECK(hist[1].valid[0].auc > 0.6);  // click
  }
}

TEST_CASE("ESMM: ctcvr output is the logit of pCTR * pCVR") {
  json schema = json::parse(R"({"sparse": [{"name": "item", "vocab": 10, "dim": 4}], "dense": ["x"],
                                "tasks": [{"name": "ctr"}, {"name": "ctcvr"}]})");
  auto model = models::build_model({{"schema", schema}, {"model", {{"type", "esmm"}, {"tower", {{"hidden", {8}}}}}}});
  auto ws = model->make_workspace();
  data::Batch b;
  b.size = 3;
  b.sparse = {1, 5, 9};
  b.dense = Tensor(Shape{3, 1});
  for (int i = 0; i < 3; ++i) b.dense[i] = float(i) - 1.0f;
  auto out = model->forward(b, *ws, Context::inference());
  // Finite differences of the transformed output through the whole model: perturb one
  // tower weight and compare d(out)/dw with backward of d_out = e_k.
  for (int k = 0; k < 2; ++k) {
    model->arena().zero_grad();
    model->forward(b, *ws, Context::inference());
    Tensor d(Shape{3, 2}, 0.0f);
    for (int i = 0; i < 3; ++i) d[i * 2 + k] = 1.0f;
    model->backward(d.matrix(), *ws);
    auto& w = model->arena().at("towers.0.layers.0.weight");
    const double analytic = w.grad[0];
    const float saved = w.value[0];
    const float eps = 1e-2f;
    auto sum_k = [&] {
      auto o = model->forward(b, *ws, Context::inference());
      double s = 0;
      for (int i = 0; i < 3; ++i) s += o(i, k);
      return s;
    };
    w.value[0] = saved + eps;
    const double lp = sum_k();
    w.value[0] = saved - eps;
    const double lm = sum_k();
    w.value[0] = saved;
    CHECK(analytic == Approx((lp - lm) / (2 * eps)).epsilon(2e-2).margin(1e-4));
  }
  // p_ctcvr = sigmoid(out1) must not exceed p_ctr = sigmoid(out0).
  out = model->forward(b, *ws, Context::inference());
  for (int i = 0; i < 3; ++i) CHECK(out(i, 1) <= out(i, 0) + 1e-6f);
}

TEST_CASE("Bad model configs name the field") {
  json base = config_for("mmoe");
  auto expect = [](json c, const char* needle) {
    INFO(c.dump());
    CHECK_THROWS_WITH(models::build_model(c), Catch::Contains(needle));
  };
  json c = base;
  c["model"]["num_experts"] = 0;
  expect(c, "config.model.num_experts");
  c = base;
  c["model"]["type"] = "mmoee";
  expect(c, "unknown model type");
  c = base;
  c["model"]["expert"]["activation"] = "swish";
  expect(c, "activation");
  c = base;
  c["model"]["expert"]["layers"] = {32, -1};
  expect(c, "config.model.expert.layers");
  c = base;
  c["model"]["experts"] = 3;
  expect(c, "config.model.experts: unknown field");
  c = base;
  c.erase("schema");
  expect(c, "config.schema");
  c = base;
  c["schema"]["sparse"][0]["vocab"] = 0;
  expect(c, "schema.sparse[0].vocab");
  c = config_for("snr_aver");
  c["model"]["stages"][1]["in"] = 12;  // SNR-Aver: v_j = sum_i z_ij u_i needs in == lower width (16)
  CHECK_THROWS_AS(models::build_model(c), Error);
  c = config_for("shared_bottom");
  c["model"]["type"] = "dnn";
  expect(c, "single-task");
  c = config_for("esmm");
  expect(c, "esmm");
}

TEST_CASE("Ids out of range and NaN dense values are rejected with the field name") {
  auto model = models::build_model(config_for("shared_bottom"));
  auto ws = model->make_workspace();
  data::Batch b;
  small_feed().slice(0, 4, b);
  b.sparse[1] = 1 << 30;  // item_id
  CHECK_THROWS_WITH(model->forward(b, *ws, Context::inference()), Catch::Contains("item_id"));
  small_feed().slice(0, 4, b);
  b.dense[2] = std::nanf("");
  CHECK_THROWS_WITH(model->forward(b, *ws, Context::inference()), Catch::Contains("hour_sin"));
}

TEST_CASE("Same seed gives bit-identical training, a resumed run continues exactly") {
  const auto& d = small_feed();
  auto run = [&](int epochs, const std::string& ckpt_in, const std::string& ckpt_out) {
    auto model = models::build_model(config_for("mmoe"));
    auto opt = train::make_optimizer(json{{"type", "adam"}, {"lr", 2e-3}});
    train::Trainer t(*model, *opt, {.batch_size = 512, .epochs = epochs, .seed = 11, .max_steps_per_epoch = 6,
                                    .checkpoint_path = ckpt_out, .progress = 2});
    if (!ckpt_in.empty()) t.resume(ckpt_in);
    t.fit(d);
    std::vector<float> w;
    for (auto& p : model->arena().parameters()) w.insert(w.end(), p.value, p.value + p.numel());
    return w;
  };
  const auto dir = testing::temp_dir("resume");
  const std::string c1 = (dir / "after1.safetensors").string();
  const auto straight = run(3, "", "");
  const auto again = run(3, "", "");
  CHECK(straight == again);
  run(1, "", c1);                                  // stop after epoch 1
  const auto resumed = run(3, c1, "");             // continue to epoch 3
  REQUIRE(resumed.size() == straight.size());
  CHECK(resumed == straight);
  std::filesystem::remove_all(dir);
}

TEST_CASE("Trainer with PCGrad: shared gradients are the projected sum, towers keep their own") {
  const auto& d = small_feed();
  json cfg = config_for("shared_bottom");
  cfg["schema"]["tasks"] = json::array({cfg["schema"]["tasks"][0], cfg["schema"]["tasks"][1]});  // K = 2
  data::Dataset two = d.subset(0, 256);
  two.schema.tasks.resize(2);
  two.labels = Tensor(Shape{256, 2});
  for (Index r = 0; r < 256; ++r)
    for (Index k = 0; k < 2; ++k) two.labels[r * 2 + k] = d.labels[r * 3 + k];
  two.label_mask = Tensor(Shape{0, 0});
  two.oracle = Tensor(Shape{0, 0});
  data::Batch b;
  two.slice(0, 256, b);

  // Expected: per-task gradients by hand, then PCGrad (with K = 2 the order is fixed).
  auto model = models::build_model(cfg);
  auto ws = model->make_workspace();
  train::MultiTaskLoss<float> loss(train::default_task_losses(two.schema));
  auto out = model->forward(b, *ws, Context::inference());
  Tensor g(Shape{256, 2});
  loss.compute(out, b.labels.matrix(), b.label_mask.matrix(), g.matrix());
  auto& w = model->arena().at("bottom.layers.0.weight");
  auto& tw = model->arena().at("towers.1.layers.0.weight");
  const Index P = w.numel();
  Tensor tg(Shape{2, P});
  std::vector<float> tower_grad;
  for (int k = 0; k < 2; ++k) {
    model->arena().zero_grad();
    Tensor gk(Shape{256, 2}, 0.0f);
    for (Index r = 0; r < 256; ++r) gk[r * 2 + k] = g[r * 2 + k];
    model->backward(gk.matrix(), *ws);
    std::copy(w.grad, w.grad + P, tg.data() + k * P);
    if (k == 1) tower_grad.assign(tw.grad, tw.grad + tw.numel());
  }
  std::vector<float> expected(static_cast<std::size_t>(P));
  Rng unused(1);
  const auto stats = train::pcgrad<float>(tg.matrix(), expected, unused);
  INFO("conflicts " << stats.conflicts);

  // Actual: one trainer step with SGD lr = 1 (Δw = −grad) from the same initial weights.
  auto model2 = models::build_model(cfg);
  std::vector<float> w0(w.value, w.value + P);  // same seed: same initial weights
  REQUIRE(std::equal(w0.begin(), w0.end(), model2->arena().at("bottom.layers.0.weight").value));
  std::vector<float> tw0(model2->arena().at("towers.1.layers.0.weight").value,
                         model2->arena().at("towers.1.layers.0.weight").value + tw.numel());
  auto sgd = train::make_optimizer(json{{"type", "sgd"}, {"lr", 1.0}});
  train::Trainer t(*model2, *sgd, {.pcgrad = true, .penalty_weight = 0, .progress = 2});
  t.train_step(b);
  const float* w1 = model2->arena().at("bottom.layers.0.weight").value;
  for (Index i = 0; i < P; ++i) REQUIRE(w0[i] - w1[i] == Approx(expected[i]).margin(1e-6));
  const float* tw1 = model2->arena().at("towers.1.layers.0.weight").value;
  for (Index i = 0; i < tw.numel(); ++i) REQUIRE(tw0[i] - tw1[i] == Approx(tower_grad[i]).margin(1e-6));
}

TEST_CASE("An empty batch runs forward and backward for every model type (found by fuzz_request)") {
  for (std::string type : {"shared_bottom", "mmoe", "ple", "snr_trans"}) {
    INFO("model " << type);
    auto model = models::build_model(config_for(type));
    auto ws = model->make_workspace();
    data::Batch b;
    small_feed().slice(0, 0, b);
    ConstMat out = model->forward(b, *ws, Context::inference());
    CHECK(out.rows == 0);
    CHECK(out.cols == 3);
    Tensor d(Shape{0, 3});
    model->backward(d.matrix(), *ws);
    Tensor probs(Shape{0, 3});
    model->predict(b, *ws, probs.matrix());
  }
}

TEST_CASE("Dense input columns get no gradient computed, the gradients stay right") {
  // Dense-only: the net skips its input gradient. Sparse + dense (dense block last): the layers
  // reading x compute dx for the embedding columns only (tests/blocks/test_input_grad_limit.cpp
  // checks the backbones exactly). Float central differences check the layers reading x, a
  // deeper one and the embedding rows.
  const json dense_only = json::parse(R"({"dense": ["a", "b", "c", "d", "e"], "tasks": [{"name": "ctr"}, {"name": "cvr"}]})");
  const json mixed = json::parse(R"({"sparse": [{"name": "item", "vocab": 6, "dim": 3}], "dense": ["a", "b", "c", "d"],
                                     "tasks": [{"name": "ctr"}, {"name": "cvr"}]})");
  for (const bool sparse : {false, true}) {
    CAPTURE(sparse);
    const json m = json::parse(R"({"type": "mmoe", "num_experts": 2, "expert": {"layers": [6, 4]}, "tower": {"hidden": [3]},
                                   "embedding_init_std": 0.3})");
    auto model = models::build_model({{"schema", sparse ? mixed : dense_only}, {"model", m}, {"seed", 3}});
    const auto* emb = model->feature_embedder();
    REQUIRE(emb != nullptr);
    CHECK(emb->needs_input_grad() == sparse);
    CHECK(emb->input_grad_columns() == (sparse ? 3 : 0));
    CHECK(emb->out_features() == (sparse ? 7 : 5));
    // With dot interactions (columns after the dense block) every column needs its gradient.
    json with_dot = m, two_fields = mixed;
    with_dot["dot_interactions"] = true;
    two_fields["sparse"].push_back({{"name", "user"}, {"vocab", 4}, {"dim", 3}});
    const auto dot_model = models::build_model({{"schema", two_fields}, {"model", with_dot}});
    CHECK(dot_model->feature_embedder()->out_features() == 3 + 3 + 4 + 1);
    CHECK(dot_model->feature_embedder()->input_grad_columns() == 3 + 3 + 4 + 1);

    const Index B = 7;
    data::Batch b;
    b.size = B;
    b.dense = Tensor(Shape{B, sparse ? 4 : 5});
    Rng rng(4);
    for (float& v : b.dense) v = static_cast<float>(rng.normal());
    if (sparse) b.sparse = {0, 1, 2, 1, 5, 0, 3};
    std::vector<double> r(static_cast<std::size_t>(B * 2));
    for (double& v : r) v = rng.normal();
    auto ws = model->make_workspace();
    auto loss = [&] {
      const ConstMat y = model->forward(b, *ws, Context::inference());
      double s = 0;
      for (Index i = 0; i < B; ++i)
        for (Index k = 0; k < 2; ++k) s += double(y(i, k)) * r[static_cast<std::size_t>(i * 2 + k)];
      return s;
    };
    model->arena().zero_grad();
    model->forward(b, *ws, Context::inference());
    Tensor d(Shape{B, 2});
    for (Index i = 0; i < d.numel(); ++i) d[i] = static_cast<float>(r[static_cast<std::size_t>(i)]);
    model->backward(d.matrix(), *ws);

    auto fd = [&](float* w) {
      const float w0 = *w, eps = 1e-2f;
      *w = w0 + eps;
      const double up = loss();
      *w = w0 - eps;
      const double down = loss();
      *w = w0;
      return (up - down) / (2.0 * eps);
    };
    for (const char* name : {"experts.0.layers.0.weight", "gates.1.weight", "towers.0.layers.0.weight"}) {
      CAPTURE(name);
      Parameter<float>& p = model->arena().at(name);
      double worst = 0, scale = 1e-6;
      for (Index i = 0; i < p.numel(); ++i) scale = std::max(scale, double(std::abs(p.grad[i])));
      for (Index i = 0; i < p.numel(); ++i) worst = std::max(worst, std::abs(fd(p.value + i) - double(p.grad[i])));
      CHECK(worst / scale < 2e-2);
    }
    if (sparse) {
      Parameter<float>& t = model->arena().at("embeddings.item.weight");
      const auto& rows = t.sparse_grad.rows();
      CHECK(rows.size() == 5);  // ids 0, 1, 2, 3, 5
      double worst = 0, scale = 1e-6;
      for (std::size_t k = 0; k < rows.size(); ++k)
        for (Index j = 0; j < 3; ++j) scale = std::max(scale, double(std::abs(t.sparse_grad.values()[k * 3 + j])));
      for (std::size_t k = 0; k < rows.size(); ++k)
        for (Index j = 0; j < 3; ++j)
          worst = std::max(worst, std::abs(fd(t.value + rows[k] * 3 + j) - double(t.sparse_grad.values()[k * 3 + j])));
      CHECK(worst / scale < 2e-2);
    }
  }
}

TEST_CASE("Crafted sizes in a config are errors, never a crash or a runaway allocation") {
  json c = config_for("mmoe");
  c["model"]["expert"]["layers"] = {4611686018427387904LL};
  CHECK_THROWS_AS(models::build_model(c), Error);  // the element count overflows (it used to wrap and segfault)
  c = config_for("mmoe");
  c["model"]["expert"]["layers"] = {1000000000000LL};
  CHECK_THROWS_WITH(models::build_model(c), Catch::Matchers::Contains("over the memory budget"));
  c = config_for("mmoe");
  c["schema"]["sparse"][1]["vocab"] = 4000000000000000000LL;
  CHECK_THROWS_WITH(models::build_model(c), Catch::Matchers::Contains("embeddings.item_id.weight") &&
                                                (Catch::Matchers::Contains("memory budget") || Catch::Matchers::Contains("overflow")));
}

TEST_CASE("A checkpoint whose shapes differ from its config is rejected before the model is allocated") {
  json c = config_for("mmoe");
  auto model = models::build_model(c);
  const std::string path = (mtrank::testing::temp_dir("shape_check") / "shapes.safetensors").string();
  // The same weights under a config whose item vocabulary is 5e7 (1.6 GB of embeddings).
  c["schema"]["sparse"][1]["vocab"] = 50000000;
  io::save_checkpoint(path, model->arena(), {.config = c});
  CHECK_THROWS_WITH(serve::Predictor::from_checkpoint(path),
                    Catch::Matchers::Contains("tensor 'embeddings.item_id.weight' has shape") &&
                        Catch::Matchers::Contains("but the config builds [50000000, "));
}
