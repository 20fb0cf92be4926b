// Every model type from training to serving (tag [model_types], one TEST_CASE per example config
// so a failure names the type): the example config (examples/configs/<type>_simulator.json) on a
// shrunk simulator, one epoch of train::Trainer, a checkpoint, then the same rows through
//   (a) the trainer's evaluation path: Model::forward in inference mode, as Trainer::evaluate
//       runs it (models::ParallelInference, one slice at one thread), sigmoid for binary tasks;
//   (b) serve::Predictor::from_checkpoint(ckpt).score(batch);
//   (c) Predictor::score(Request): one user's candidates, user side given once, sequences with
//       their behaviour times, the rows' scenes as request scene or per-candidate scenes;
//   (d) the JSON request path: parse_request of a body built by field name, then score, and the
//       response written by write_response;
//   (e) when the ranking server is built: POST /score of the same body to a RankingServer serving
//       the checkpoint, whose response bytes equal write_response's;
// and, when the test binary knows the `mtrank` tool (MTRANK_CLI), `mtrank predict` (.npy: exact
// floats) and `mtrank eval` on the checkpoint.
//
// Equalities: (b) = (c) = (d) bit for bit: the request path feeds the network exactly the
// expanded batch's input with the same GEMM shapes (docs/serving.md; models without a split
// embedder score the expanded batch itself). (a) vs (b): within 1e-6, not bitwise: evaluation
// runs the float Linear layers through sgemm on the weights as they are, serving through the
// packed-weight kernels (Context::serving), which sum in a different order (kernels/
// packed_linear.hpp). Model::serve() on the trained in-memory model is the same computation as
// (b) and must match bit for bit. A request's candidate row vs the same dataset row inside a
// larger batch: within 1e-6, not bitwise (a different GEMM M, and for the sequence models a different
// padded sequence length: the batch pads to its longest history; exactness is reported, not required).
#ifdef MTRANK_TEST_RANKING_SERVER
#include <httplib.h>

#include "server.hpp"
#endif
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/wait.h>

#include "mtrank/io/npy.hpp"
#include "mtrank/models/parallel_inference.hpp"
#include "mtrank/serve/request.hpp"
#include "mtrank/train/metrics.hpp"
#include "mtrank/train/optimizer.hpp"
#include "mtrank/train/trainer.hpp"
#include "model_types.hpp"
#include "testing.hpp"

using namespace mtrank;
using nlohmann::json;

namespace {

Tensor copy_of(ConstMat m) {
  Tensor t(Shape{m.rows, m.cols});
  copy(m, t.matrix());
  return t;
}

struct Diff {
  double max = 0;
  bool exact = true;
};

Diff compare(ConstMat a, ConstMat b) {
  REQUIRE(a.rows == b.rows);
  REQUIRE(a.cols == b.cols);
  Diff d;
  for (Index r = 0; r < a.rows; ++r)
    for (Index c = 0; c < a.cols; ++c) {
      REQUIRE(std::isfinite(a(r, c)));
      REQUIRE(std::isfinite(b(r, c)));
      d.exact = d.exact && a(r, c) == b(r, c);
      d.max = std::max(d.max, std::abs(double(a(r, c)) - double(b(r, c))));
    }
  return d;
}

void require_exact(ConstMat a, ConstMat b, const char* what) {
  INFO(what);
  const Diff d = compare(a, b);
  INFO("max |difference| " << d.max);
  REQUIRE(d.exact);
}

/// Fused scores as a [B, 1] view.
ConstMat fused_view(std::span<const float> f) { return ConstMat(f.data(), static_cast<Index>(f.size()), 1); }

/// (a) Trainer::evaluate's predictions on `b`.
Tensor evaluation_path(const models::Model& m, const data::Batch& b) {
  models::ParallelInference scorer(m);
  ConstMat out = scorer.forward(b);
  Tensor p(Shape{out.rows, out.cols});
  for (Index i = 0; i < out.rows; ++i)
    for (Index k = 0; k < out.cols; ++k)
      p[i * out.cols + k] = m.schema().tasks[k].kind == data::TaskKind::binary
                                ? float(1.0 / (1.0 + std::exp(-double(out(i, k)))))
                                : out(i, k);
  return p;
}

/// Model::serve() + to_predictions on the in-memory model (Model::predict).
Tensor serve_path(const models::Model& m, const data::Batch& b) {
  auto ws = m.make_workspace();
  Tensor p(Shape{b.size, m.num_tasks()});
  m.predict(b, *ws, p.matrix());
  return p;
}

/// Rows of the same user as `anchor`, from `anchor` on (anchor first), at most n.
std::vector<Index> rows_of_user(const data::Dataset& d, Index anchor, Index n) {
  std::vector<Index> rows;
  for (Index i = anchor; i < d.rows && static_cast<Index>(rows.size()) < n; ++i)
    if (d.user[static_cast<std::size_t>(i)] == d.user[static_cast<std::size_t>(anchor)]) rows.push_back(i);
  return rows;
}

/// The first row in [0, limit) of scene `scene` whose user has at least 2 behaviours (with
/// times) and at least 3 rows from there on.
Index find_anchor(const data::Dataset& d, std::int32_t scene, Index limit) {
  for (Index i = 0; i < std::min(limit, d.rows); ++i)
    if (d.scene[static_cast<std::size_t>(i)] == scene && d.sequences[0].length(i) >= 2 &&
        static_cast<Index>(rows_of_user(d, i, 3).size()) == 3)
      return i;
  FAIL("no anchor row in scene " << scene);
  return -1;
}

[[maybe_unused]] int run(const std::string& cmd) {  // unused without MTRANK_CLI
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/// `mtrank eval`'s JSON lines vs metrics computed here: the keys it prints (auc, gauc, log_loss for
/// binary tasks, mse for regression; null = not finite) within `tol`.
[[maybe_unused]] void check_eval_output(const std::vector<json>& lines, const std::vector<train::TaskMetrics>& want, double tol) {
  REQUIRE(lines.size() == want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    const json& j = lines[k];
    const train::TaskMetrics& m = want[k];
    INFO("task " << m.name << ": " << j.dump());
    CHECK(j["task"] == m.name);
    CHECK(j["count"] == m.count);
    const std::vector<std::pair<const char*, double>> keys =
        m.kind == train::TaskKind::binary
            ? std::vector<std::pair<const char*, double>>{{"auc", m.auc}, {"gauc", m.gauc}, {"log_loss", m.log_loss}}
            : std::vector<std::pair<const char*, double>>{{"mse", m.mse}};
    for (auto [key, v] : keys) {
      INFO(key << " expected " << v);
      REQUIRE(j.contains(key));
      CHECK(j[key].is_null() == !std::isfinite(v));
      if (j[key].is_number() && std::isfinite(v)) CHECK(std::abs(j[key].get<double>() - v) <= tol);
    }
  }
}

void model_type_end_to_end(const std::string& type) {
  const auto t0 = std::chrono::steady_clock::now();
  json cfg = mtrank::testing::shrunk_example_config(type);
  cli::TrainTestData data = mtrank::testing::load_config_data(cfg);
  const data::Dataset& test = data.test;
  REQUIRE(test.rows > 200);
  // Both scenes of the simulator are in the evaluated rows.
  REQUIRE(std::count(test.scene.begin(), test.scene.begin() + 200, 1) > 0);

  // Train one epoch and write a checkpoint, as `mtrank train` does.
  auto model = models::build_model(cfg);
  auto opt = train::make_optimizer(cfg["optimizer"], "config.optimizer");
  train::Trainer trainer(*model, *opt, {.batch_size = cfg["trainer"]["batch_size"].get<Index>(), .epochs = 1, .progress = 2});
  const auto hist = trainer.fit(data.train, &test);
  REQUIRE(hist.size() == 1);
  CHECK(std::isfinite(hist[0].train_loss));
  const auto dir = mtrank::testing::temp_dir("model_types_" + type);
  const auto ckpt = dir / (type + ".safetensors");
  trainer.save_checkpoint(ckpt);

  auto p = serve::Predictor::from_checkpoint(ckpt);
#ifdef MTRANK_TEST_RANKING_SERVER
  server::RankingServer srv({.checkpoint = ckpt.string(), .port = 0, .threads = 2, .log_level = "warn", .access_log = "off"});
  srv.start();
  server::RankingServer* server = &srv;
#endif
  REQUIRE(p->serving().layout_error.empty());  // the simulator schema declares every field's side
  const serve::RequestLayout& layout = p->serving().layout;
  const Index K = p->num_tasks();
  // DMT's bias network: forward() (training and the trainer's evaluation) adds it, serve() (the
  // predictor, the CLI) drops it, so (a) is compared through serve() for these models.
  const bool bias_net = cfg["model"].contains("bias_net");

  // ---- the first 200 test rows as one batch: (a), (b), the in-memory model's serve() ----
  const Index R = 200;
  data::Batch rows;
  test.slice(0, R, rows);
  serve::Predictor::Session session;
  const serve::Scores sb = p->score(rows, session);
  const Tensor b_probs = copy_of(sb.probs);
  const std::vector<float> b_fused(sb.fused.begin(), sb.fused.end());
  REQUIRE(b_probs.matrix().cols == K);
  require_exact(serve_path(*model, rows).matrix(), b_probs.matrix(), "the trained model's serve() vs the checkpoint's predictor");
  Diff ab;
  if (!bias_net) {
    ab = compare(evaluation_path(*model, rows).matrix(), b_probs.matrix());
    INFO("(a) evaluation path vs (b) predictor: max |difference| " << ab.max << (ab.exact ? " (exact)" : ""));
    CHECK(ab.max <= 1e-6);
  } else {
    // The bias logit is really there in forward(): evaluation and serving differ.
    CHECK_FALSE(compare(evaluation_path(*model, rows).matrix(), b_probs.matrix()).exact);
  }
  // Scores are not constant (a dead network would make every comparison trivial).
  for (Index k = 0; k < K; ++k) {
    INFO("task " << p->schema().tasks[k].name);
    bool varies = false;
    for (Index i = 1; i < R; ++i) varies = varies || b_probs[i * K + k] != b_probs[k];
    CHECK(varies);
  }

  // ---- requests: one user's candidates, scene 0 and scene 1 anchors, request / per-candidate scenes ----
  int requests = 0;
  bool anchor_exact = true;
  double anchor_max = 0;
  for (std::int32_t scene : {0, 1}) {
    const Index anchor = find_anchor(test, scene, R);
    const std::vector<Index> cand = rows_of_user(test, anchor, 6);
    std::vector<std::int32_t> own_scenes;
    for (Index i : cand) own_scenes.push_back(test.scene[static_cast<std::size_t>(i)]);
    for (bool per_candidate : {false, true}) {
      INFO("anchor row " << anchor << " (scene " << scene << "), " << cand.size() << " candidates, "
                         << (per_candidate ? "per-candidate scenes" : "request scene"));
      const std::vector<std::int32_t> scenes =
          per_candidate ? own_scenes : std::vector<std::int32_t>(cand.size(), scene);
      const serve::Request req =
          mtrank::testing::rows_request(test, layout, anchor, cand, scene, per_candidate ? own_scenes : std::vector<std::int32_t>{});
      REQUIRE_FALSE(req.sequences[0].empty());
      REQUIRE(req.sequence_times[0].size() == req.sequences[0].size());
      const data::Batch ub = mtrank::testing::user_side_batch(test, layout, anchor, cand, scenes);
      // The batch the request stands for is the one the predictor expands it to.
      data::Batch expanded;
      p->expand(req, expanded);
      REQUIRE(expanded.sequences[0].times == ub.sequences[0].times);
      REQUIRE(expanded.scene == ub.scene);

      // (b) on these rows.
      const serve::Scores s_ub = p->score(ub, session);
      const Tensor ub_probs = copy_of(s_ub.probs), ub_fused = copy_of(fused_view(s_ub.fused));
      // (a) on these rows.
      if (!bias_net) CHECK(compare(evaluation_path(*model, ub).matrix(), ub_probs.matrix()).max <= 1e-6);
      else require_exact(serve_path(*model, ub).matrix(), ub_probs.matrix(), "serve() on the request's rows");
      // (c) the request.
      const serve::Scores s_req = p->score(req, session);
      require_exact(s_req.probs, ub_probs.matrix(), "(c) score(Request) vs (b) score(batch) of its rows");
      require_exact(fused_view(s_req.fused), ub_fused.matrix(), "(c) fused");
      const Tensor req_probs = copy_of(s_req.probs);
      // The anchor candidate is the anchor dataset row itself: same score as in the 200-row batch.
      const Diff d0 = compare(ConstMat(req_probs.data(), 1, K), ConstMat(b_probs.data() + anchor * K, 1, K));
      CHECK(d0.max <= 1e-6);
      anchor_exact = anchor_exact && d0.exact;
      anchor_max = std::max(anchor_max, d0.max);

      // (d) JSON by field name -> parse_request -> score -> write_response.
      const std::string body = mtrank::testing::request_json(req, p->schema(), layout).dump();
      serve::Request parsed;
      serve::RequestEcho echo;
      serve::parse_request(body, p->schema(), p->serving(), parsed, echo);
      CHECK(parsed.user_sparse == req.user_sparse);
      CHECK(parsed.user_dense == req.user_dense);
      CHECK(parsed.sequences == req.sequences);
      CHECK(parsed.sequence_times == req.sequence_times);
      CHECK(parsed.scene == req.scene);
      CHECK(parsed.cand_scene == req.cand_scene);
      CHECK(parsed.cand_sparse == req.cand_sparse);
      CHECK(parsed.cand_dense == req.cand_dense);
      const serve::Scores s_json = p->score(parsed, session);
      require_exact(s_json.probs, ub_probs.matrix(), "(d) JSON request vs (b)");
      require_exact(fused_view(s_json.fused), ub_fused.matrix(), "(d) fused");
      std::string out;
      serve::write_response(s_json, p->schema(), echo, out);
      const json resp = json::parse(out);
      REQUIRE(resp["scores"].size() == cand.size());
      for (std::size_t i = 0; i < cand.size(); ++i) {
        CHECK(resp["scores"][i]["candidate_id"] == i);
        for (Index k = 0; k < K; ++k)  // %.9g: the float round-trips
          CHECK(resp["scores"][i][p->schema().tasks[k].name].get<float>() == ub_probs[static_cast<Index>(i) * K + k]);
        CHECK(resp["scores"][i]["fused"].get<float>() == ub_fused[static_cast<Index>(i)]);
      }
#ifdef MTRANK_TEST_RANKING_SERVER
      // (e) POST /score to the ranking server serving the checkpoint: the same response bytes.
      httplib::Client http("127.0.0.1", server->port());
      const auto posted = http.Post("/score", body, "application/json");
      REQUIRE(posted);
      INFO(posted->body);
      REQUIRE(posted->status == 200);
      CHECK(posted->body == out);
#endif
      ++requests;
    }
  }
  CHECK(requests == 4);
  std::ostringstream summary;
  summary << type << ": (a) evaluation vs (b) predictor max |diff| ";
  if (bias_net) summary << "n/a (bias net; serve() compared bitwise)";
  else summary << ab.max << (ab.exact ? " (exact)" : "");
  summary << "; request anchor candidate vs its row in the 200-row batch max |diff| " << anchor_max
          << (anchor_exact ? " (exact)" : "");
  WARN(summary.str());

  // ---- the CLI on the checkpoint: predict (.npy, exact floats) and eval ----
#ifdef MTRANK_CLI
  const std::string cli = MTRANK_CLI;
  if (!std::filesystem::exists(cli)) {
    WARN("mtrank tool not built (" << cli << "): CLI checks skipped");
  } else {
    const auto npy = dir / "scores.npy", eval = dir / "eval.jsonl";
    REQUIRE(run("'" + cli + "' predict -m '" + ckpt.string() + "' -o '" + npy.string() + "' 2>/dev/null") == 0);
    REQUIRE(run("'" + cli + "' eval -m '" + ckpt.string() + "' > '" + eval.string() + "'") == 0);
    const Tensor cli_probs = io::load_npy(npy);
    REQUIRE(cli_probs.shape() == Shape{test.rows, K});
    // (b) over the whole test split, in the CLI's 4096-row batches.
    Tensor all(Shape{test.rows, K});
    data::Batch b;
    for (Index a = 0; a < test.rows; a += 4096) {
      const Index e = std::min(test.rows, a + 4096);
      test.slice(a, e, b);
      copy(p->score(b, session).probs, Mat(all.data() + a * K, e - a, K));
    }
    require_exact(cli_probs.matrix(), all.matrix(), "mtrank predict vs (b)");
    // mtrank eval: the metrics of exactly these scores; and close to the trainer's evaluation.
    std::vector<train::TaskKind> kinds;
    std::vector<std::string> names;
    for (auto& t : p->schema().tasks) {
      kinds.push_back(t.kind == data::TaskKind::binary ? train::TaskKind::binary : train::TaskKind::regression);
      names.push_back(t.name);
    }
    const auto want = train::evaluate_tasks(all.matrix(), test.labels.matrix(), test.label_mask.matrix(), test.user, kinds, names);
    std::ifstream f(eval);
    std::string line;
    std::vector<json> lines;
    while (std::getline(f, line)) {
      json j = json::parse(line);
      if (!j.contains("scene") || j["scene"].is_null()) lines.push_back(std::move(j));  // the all-scene lines
    }
    check_eval_output(lines, want, 1e-12);
    // The trainer's own evaluation (a) of the test split: scores within 1e-6 of these, so the
    // metrics agree to rounding (not for the bias-net models, whose evaluation includes the bias).
    if (!bias_net) check_eval_output(lines, trainer.evaluate(test).second, 1e-4);
  }
#else
  WARN("test_serve built without MTRANK_CLI: CLI checks skipped");
#endif
  std::filesystem::remove_all(dir);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN(type << ": end to end in " << s << " s");
}

}  // namespace

#define MODEL_TYPE_CASE(type) \
  TEST_CASE("model types: " type " from training to serving with the same scores on every path", "[model_types]") { \
    model_type_end_to_end(type);                                                                           \
  }

MODEL_TYPE_CASE("dnn")
MODEL_TYPE_CASE("shared_bottom")
MODEL_TYPE_CASE("esmm")
MODEL_TYPE_CASE("mmoe")
MODEL_TYPE_CASE("ple")
MODEL_TYPE_CASE("cgc")
MODEL_TYPE_CASE("snr_trans")
MODEL_TYPE_CASE("snr_aver")
MODEL_TYPE_CASE("multi_domain")
MODEL_TYPE_CASE("mm")
MODEL_TYPE_CASE("din")
MODEL_TYPE_CASE("dmt")
MODEL_TYPE_CASE("dmt_gru")
MODEL_TYPE_CASE("sim")
MODEL_TYPE_CASE("co_action")

TEST_CASE("model types: every registered model type has an example config", "[model_types]") {
  for (const auto& type : mtrank::testing::example_model_types()) {
    INFO(type);
    CHECK(std::filesystem::exists(mtrank::testing::example_config_path(type)));
  }
  // Every registered model type has an example config (dmt_gru / co_action are extra configs).
  for (const auto& type : models::model_types()) {
    INFO(type);
    CHECK(std::filesystem::exists(mtrank::testing::example_config_path(type)));
  }
  // The sequence configs are the variants they are named after.
  const json dmt = mtrank::testing::load_example_config("dmt")["model"], gru = mtrank::testing::load_example_config("dmt_gru")["model"];
  CHECK(dmt["sequences"][0]["position"] == "time_gap");
  CHECK(gru["sequences"][0]["kind"] == "gru");
  CHECK(mtrank::testing::load_example_config("co_action")["model"].contains("co_action"));
}

// docs/serving.md, "Every model type": each ```json block after a
// "<!-- request-example: type ... -->" marker is a valid request for the example config of every
// listed type, and scores (the response lists the model's tasks). Weights are untrained; the
// schema is the example config's (the simulator's vocabularies as configured there).
TEST_CASE("model types: the request examples in docs/serving.md parse and score", "[model_types]") {
  std::ifstream f(std::filesystem::path(MTRANK_SOURCE_DIR) / "docs" / "serving.md");
  REQUIRE(f);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  const std::string marker = "<!-- request-example:";
  std::set<std::string> covered;
  int examples = 0;
  for (std::size_t at = doc.find(marker); at != std::string::npos; at = doc.find(marker, at + 1)) {
    const std::size_t end = doc.find("-->", at);
    std::istringstream types(doc.substr(at + marker.size(), end - at - marker.size()));
    const std::size_t open = doc.find("```json\n", end), close = doc.find("\n```", open + 8);
    REQUIRE(open != std::string::npos);
    REQUIRE(close != std::string::npos);
    const std::string body = doc.substr(open + 8, close - open - 8);
    ++examples;
    for (std::string type; types >> type;) {
      INFO("example " << examples << " for " << type);
      json cfg = mtrank::testing::load_example_config(type);
      cfg["data"]["impressions"] = 300;  // the schema does not depend on the row count
      mtrank::testing::load_config_data(cfg);
      serve::Predictor p(models::build_model(cfg));
      serve::Request r;
      serve::RequestEcho echo;
      serve::parse_request(body, p.schema(), p.serving(), r, echo);
      CHECK(r.num_candidates == 2);
      std::string out;
      serve::write_response(p.score(r), p.schema(), echo, out);
      const json resp = json::parse(out);
      REQUIRE(resp["tasks"].size() == p.schema().tasks.size());
      CHECK(resp["scores"][1]["candidate_id"] == "v-250");
      covered.insert(type);
    }
  }
  CHECK(examples == 3);
  for (const auto& type : mtrank::testing::example_model_types()) {
    INFO(type << " has no request example in docs/serving.md");
    CHECK(covered.count(type) == 1);
  }
}
