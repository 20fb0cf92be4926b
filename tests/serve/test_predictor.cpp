#include <cmath>
#include <cstring>
#include <fstream>

#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/serve/request.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;
using mtrank::testing::feed;
using mtrank::testing::feed_config;
using mtrank::testing::feed_predictor;
using mtrank::testing::feed_request;
using Catch::Matchers::Contains;

namespace {

void require_equal(ConstMat a, ConstMat b) {
  REQUIRE(a.rows == b.rows);
  REQUIRE(a.cols == b.cols);
  for (Index r = 0; r < a.rows; ++r)
    for (Index c = 0; c < a.cols; ++c) REQUIRE(a(r, c) == b(r, c));  // bit-identical, not approximate
}

Tensor copy_of(ConstMat m) {
  Tensor t(Shape{m.rows, m.cols});
  copy(m, t.matrix());
  return t;
}

}  // namespace

TEST_CASE("serve: score(request) equals score(batch) on the expanded batch", "[serve]") {
  const std::string type = GENERATE(std::string("mmoe"), std::string("shared_bottom"));
  const bool dot = GENERATE(false, true);
  CAPTURE(type, dot);
  auto p = feed_predictor(type, 3, dot);
  serve::Predictor::Session s1, s2;
  for (Index from : {Index(700), Index(1500), Index(2900)}) {
    const Index first = mtrank::testing::row_with_history(from);
    const Index n = from == 2900 ? 1 : 37;
    serve::Request r = feed_request(*p, first, n);
    REQUIRE(!r.sequences[0].empty());
    serve::Scores a = p->score(r, s1);
    data::Batch b;
    p->expand(r, b);
    serve::Scores e = p->score(b, s2);
    require_equal(a.probs, e.probs);
    for (Index i = 0; i < n; ++i) REQUIRE(a.fused[i] == e.fused[i]);
    // And the expanded batch is what the model itself predicts on the same rows.
    Tensor direct(Shape{n, 3});
    auto ws = p->model().make_workspace();
    p->model().predict(b, *ws, direct.matrix());
    require_equal(direct.matrix(), e.probs);
    // The expanded rows hold the dataset's rows' features (user of `first`, items of each row).
    const auto& d = feed();
    for (Index i = 0; i < n; ++i) REQUIRE(b.sparse[i * 5 + 1] == d.sparse[(first + i) * 5 + 1]);
  }
}

TEST_CASE("serve: fused score formulas", "[serve]") {
  const auto& schema = feed().schema;
  const float p[3] = {0.2f, 0.5f, 0.1f};
  auto ws = serve::parse_fusion(nlohmann::json::parse(R"({"weights": {"click": 1, "long_dwell": 3}})"), schema);
  CHECK(ws.fuse(p) == Approx(0.2 + 3 * 0.1));
  auto all = serve::parse_fusion(nullptr, schema);
  CHECK(all.fuse(p) == Approx(0.8));
  auto pr = serve::parse_fusion(
      nlohmann::json::parse(R"({"type": "product", "alpha": {"click": 0.1, "interaction": 1}, "beta": {"click": 2, "interaction": 0.5}})"),
      schema);
  CHECK(pr.fuse(p) == Approx(std::pow(0.3, 2) * std::pow(1.5, 0.5)));
  auto err = [&](const char* text) {
    try {
      serve::parse_fusion(nlohmann::json::parse(text), schema);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(err(R"({"weights": {"clik": 1}})"), Contains("serving.fusion.weights.clik: unknown task") && Contains("click, interaction"));
  CHECK_THAT(err(R"({"type": "max"})"), Contains("serving.fusion.type") && Contains("\"max\""));
  CHECK_THAT(err(R"({"weights": {"click": "a"}})"), Contains("serving.fusion.weights.click: expected a number"));
  CHECK_THAT(err(R"({"type": "product", "beta": {"click": 1}, "alpha": {"click": -1}})"), Contains("serving.fusion.alpha.click"));
  CHECK_THAT(err(R"({"type": "product", "weights": {}})"), Contains("serving.fusion.weights: unknown field"));
}

TEST_CASE("serve: serving section is validated up front", "[serve]") {
  auto bad = [](nlohmann::json serving) {
    try {
      serve::Predictor p(models::build_model(feed_config()), {.serving = serving});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using nlohmann::json;
  CHECK_THAT(bad(json{{"candidate_fields", {"item"}}}), Contains("serving.candidate_fields[0]: unknown field 'item'"));
  CHECK_THAT(bad(json{{"candidate_fields", {"click_seq"}}}), Contains("sequence field"));
  CHECK_THAT(bad(json{{"candidate_fields", {"item_id", "item_id"}}}), Contains("listed twice"));
  CHECK_THAT(bad(json{{"max_candidates", 0}}), Contains("serving.max_candidates"));
  CHECK_THAT(bad(json{{"candidates", 0}}), Contains("serving.candidates: unknown field"));
  // Non-finite weights are refused at load.
  auto m = models::build_model(feed_config());
  m->arena().parameters().back().value[0] = std::nanf("");
  try {
    serve::Predictor p(std::move(m));
    FAIL("accepted a NaN parameter");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Contains("not finite"));
  }
}

TEST_CASE("serve: requests that do not fit the layout are rejected", "[serve]") {
  auto p = feed_predictor();
  serve::Predictor::Session s;
  serve::Request r = feed_request(*p, 700, 4);
  r.cand_sparse.pop_back();
  CHECK_THROWS_WITH(p->score(r, s), Contains("candidate sparse values"));
  r = feed_request(*p, 700, 4);
  r.user_dense.push_back(1);
  CHECK_THROWS_WITH(p->score(r, s), Contains("user dense values"));
  r = feed_request(*p, 700, 4);
  r.cand_sparse[0] = 1'000'000;  // item_id out of range
  CHECK_THROWS_WITH(p->score(r, s), Contains("item_id") && Contains("out of range"));
  r = feed_request(*p, 700, 4);
  r.cand_dense[1] = std::nanf("");
  CHECK_THROWS_WITH(p->score(r, s), Contains("not finite"));
  // The session still works after errors.
  r = feed_request(*p, 700, 4);
  CHECK(p->score(r, s).probs.rows == 4);
  r.num_candidates = 0;
  r.cand_sparse.clear();
  r.cand_dense.clear();
  CHECK(p->score(r, s).probs.rows == 0);
}

TEST_CASE("serve: outputs are deterministic and independent of the session's history", "[serve]") {
  auto p = feed_predictor();
  serve::Predictor::Session s;
  serve::Request small = feed_request(*p, 1000, 3), big = feed_request(*p, 1200, 200);
  Tensor first = copy_of(p->score(small, s).probs);
  p->score(big, s);
  require_equal(p->score(small, s).probs, first.matrix());
  serve::Predictor::Session fresh;
  require_equal(p->score(small, fresh).probs, first.matrix());
  require_equal(p->score(small).probs, first.matrix());  // thread-local session
}

TEST_CASE("serve: load from a checkpoint and from config + safetensors", "[serve]") {
  auto dir = mtrank::testing::temp_dir("serve_load");
  auto model = models::build_model(feed_config("mmoe", 11));
  // Perturb weights so that a freshly initialised model would differ from the loaded one.
  for (auto& prm : model->arena().parameters())
    for (Index i = 0; i < prm.numel(); ++i) prm.value[i] += 0.01f * float(i % 7);
  io::CheckpointData data;
  data.config = model->config();
  Tensor fake_m(Shape{4});
  fake_m.fill(1.f);
  data.optimizer_state.push_back({"adam.m.x", fake_m});
  io::save_checkpoint(dir / "ckpt.safetensors", model->arena(), data);
  io::save_arena(dir / "weights.safetensors", model->arena());
  {
    std::ofstream f(dir / "config.json");
    f << model->config().dump(2);
  }
  serve::Predictor ref(std::move(model));
  auto a = serve::Predictor::from_checkpoint(dir / "ckpt.safetensors");
  auto b = serve::Predictor::from_files(dir / "config.json", dir / "weights.safetensors");
  serve::Request r = feed_request(ref, 800, 16);
  serve::Predictor::Session s0, s1, s2;
  Tensor expect = copy_of(ref.score(r, s0).probs);
  require_equal(a->score(r, s1).probs, expect.matrix());
  require_equal(b->score(r, s2).probs, expect.matrix());
  // A weights file with a wrong shape is refused, naming the tensor.
  auto other = models::build_model(feed_config("shared_bottom", 11));
  io::save_arena(dir / "wrong.safetensors", other->arena());
  CHECK_THROWS_WITH(serve::Predictor::from_files(dir / "config.json", dir / "wrong.safetensors"), Contains("tensor"));
  CHECK_THROWS_AS(serve::Predictor::from_checkpoint(dir / "missing.safetensors"), Error);
}

TEST_CASE("serve: a finite but huge input whose output is not finite is a RequestError, not a confident 0 or 1",
          "[serve]") {
  auto p = feed_predictor("mmoe", 3);
  serve::Predictor::Session s;
  serve::Request r = feed_request(*p, mtrank::testing::row_with_history(300), 4);
  REQUIRE(!r.cand_dense.empty());
  CHECK(std::isfinite(p->score(r, s).fused[0]));
  // Beyond serving.max_abs_dense (1e9 by default): refused before scoring, naming the field.
  serve::Request huge = r;
  huge.cand_dense[1] = 3e38f;
  CHECK_THROWS_WITH(p->score(huge, s), Contains("request: candidate 0 dense field '") && Contains("serving.max_abs_dense"));
  // Within a raised limit, values that drive a model's output out of float range are refused
  // after it (a model whose logit is 1e10 x a dense value overflows at 3.4e28).
  nlohmann::json cfg = feed_config("mmoe", 3);
  cfg["serving"]["max_abs_dense"] = 1e38;
  struct Overflow : models::Model {
    explicit Overflow(const nlohmann::json& c) : Model(c, feed().schema, 1) {}
    struct Ws : Workspace {
      Tensor out;
    };
    std::unique_ptr<Workspace> make_workspace() const override { return std::make_unique<Ws>(); }
    ConstMat forward(const data::Batch& b, Workspace& ws, const Context&) const override {
      Mat out = ensure(static_cast<Ws&>(ws).out, b.size, num_tasks());
      for (Index r = 0; r < b.size; ++r)
        for (Index t = 0; t < num_tasks(); ++t) out(r, t) = b.dense[r * static_cast<Index>(schema_.dense.size())] * 1e10f;
      return out;
    }
    void backward(ConstMat, Workspace&) const override {}
  };
  serve::Predictor wide(std::make_unique<Overflow>(cfg));
  serve::Request over = feed_request(wide, mtrank::testing::row_with_history(300), 4);
  CHECK(std::isfinite(wide.score(over, s).fused[0]));
  over.user_dense.assign(over.user_dense.size(), 1e30f);
  over.cand_dense.assign(over.cand_dense.size(), 1e30f);
  CHECK_THROWS_AS(wide.score(over, s), serve::RequestError);
  CHECK_THROWS_WITH(wide.score(over, s), Contains("request: the model's output for candidate (row) 0, task 'click'") &&
                                              Contains("not finite"));
  CHECK_THROWS_WITH(serve::Predictor(models::build_model([&] {
                      auto c = cfg;
                      c["serving"]["max_abs_dense"] = -1;
                      return c;
                    }())),
                    Contains("serving.max_abs_dense: expected a positive finite number"));
  // The session still scores the next, normal request.
  serve::Request ok = feed_request(*p, mtrank::testing::row_with_history(300), 4);
  CHECK(std::isfinite(p->score(ok, s).fused[3]));
}
