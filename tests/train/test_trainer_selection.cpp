// Model selection (train/trainer.hpp): with a validation set, the checkpoint at checkpoint_path and
// the model after fit() hold the best epoch's weights (not the last), a resumed run keeps that
// choice, the test set is scored once with those weights as the final record, and every record
// (epoch or test) has the same JSON keys. Without a validation set the last epoch is the model.
// Also the per-scene metrics of a two-scene dataset.
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/data/simulator.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/train/trainer.hpp"
#include "testing.hpp"

using namespace mtrank;
using nlohmann::json;
using Catch::Matchers::Contains;

namespace {

struct Splits {
  data::Dataset train, valid, test;
};

// A time-ordered simulated feed: train | test, and a validation set from the training rows whose
// labels are flipped. Training makes the model better on the training distribution and therefore
// worse on the flipped validation set, so the best validation epoch is an early one, not the last.
const Splits& splits() {
  static const Splits s = [] {
    auto all = data::make_feed_dataset({.users = 80, .items = 200, .impressions = 3000, .seed = 11});
    auto [rest, test] = data::train_test_split(all, 0.2);
    auto [train, valid] = data::random_split(rest, 0.2, 5);
    for (auto& y : valid.labels) y = 1.0f - y;
    return Splits{std::move(train), std::move(valid), std::move(test)};
  }();
  return s;
}

std::unique_ptr<models::Model> build() {
  const json m = json::parse(R"({"type": "mmoe", "num_experts": 2, "expert": {"layers": [16]}, "tower": {"hidden": [8]}})");
  return models::build_model({{"schema", json(splits().train.schema)}, {"model", m}, {"seed", 9}});
}

using Weights = std::vector<std::vector<float>>;

Weights weights_of(const models::Model& m) {
  Weights w;
  for (const auto& p : m.arena().parameters()) w.emplace_back(p.value, p.value + p.numel());
  return w;
}

bool same(const Weights& a, const Weights& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].size() != b[i].size() || std::memcmp(a[i].data(), b[i].data(), sizeof(float) * a[i].size()) != 0)
      return false;
  return true;
}

Weights weights_in_file(const std::filesystem::path& path) {
  auto m = build();
  io::LoadOptions lo;
  lo.ignore_prefixes = {io::kOptimPrefix};
  io::load_arena(m->arena(), io::SafetensorsFile::load(path), lo);
  return weights_of(*m);
}

using ojson = nlohmann::ordered_json;  // keys in the order written

std::vector<ojson> read_lines(const std::filesystem::path& p) {
  std::vector<ojson> out;
  std::ifstream f(p);
  for (std::string line; std::getline(f, line);) out.push_back(ojson::parse(line));
  return out;
}

std::vector<std::string> keys_of(const ojson& j) {
  std::vector<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.push_back(it.key());
  return k;
}

}  // namespace

TEST_CASE("trainer: the checkpoint and the model hold the best validation epoch, not the last", "[train][selection]") {
  const auto dir = mtrank::testing::temp_dir("selection");
  const bool on_disk = GENERATE(true, false);  // checkpoint_path set, or the best weights kept in memory
  CAPTURE(on_disk);
  auto model = build();
  train::Adam adam({.lr = 2e-2});
  std::vector<Weights> at_epoch;  // the weights each epoch ended with (on_record runs before any restore)
  std::vector<ojson> printed;
  train::TrainerOptions opt{.batch_size = 128, .epochs = 5, .seed = 3, .progress = 2};
  opt.metrics_path = (dir / "metrics.jsonl").string();
  if (on_disk) opt.checkpoint_path = (dir / "best.safetensors").string();
  opt.last_checkpoint_path = (dir / "last.safetensors").string();
  data::Batch probe;
  splits().test.slice(0, 64, probe);
  auto serve_ws = model->make_workspace();
  opt.on_record = [&](const nlohmann::ordered_json& r) {
    printed.push_back(ojson::parse(r.dump()));
    if (r["record"] == "epoch") {
      at_epoch.push_back(weights_of(*model));
      model->serve(probe, *serve_ws);  // packs serving copies of this epoch's weights
    }
  };
  train::Trainer t(*model, adam, opt);
  const auto hist = t.fit(splits().train, &splits().valid);
  REQUIRE(hist.size() == 5);
  REQUIRE(at_epoch.size() == 5);
  // A serving pass right after fit (before anything else loads weights): packed copies must not
  // be those of the last epoch.
  std::vector<float> served_after_fit;
  {
    const ConstMat y = model->serve(probe, *serve_ws);
    for (Index r = 0; r < y.rows; ++r) served_after_fit.insert(served_after_fit.end(), y.row(r), y.row(r) + y.cols);
  }

  // The best epoch is the first one with the highest mean validation AUC.
  std::size_t best = 0;
  for (std::size_t e = 1; e < hist.size(); ++e)
    if (hist[e].score > hist[best].score) best = e;
  INFO("best epoch " << best + 1);
  REQUIRE(best + 1 < hist.size());  // the interesting case: the last epoch is not the best
  CHECK(t.best_epoch() == static_cast<Index>(best + 1));
  double running = -1;
  for (std::size_t e = 0; e < hist.size(); ++e) {
    CAPTURE(e);
    CHECK(hist[e].improved == (hist[e].score > running));  // a new best: written to checkpoint_path
    running = std::max(running, hist[e].score);
    CHECK(hist[e].best_epoch <= static_cast<Index>(e + 1));
  }
  CHECK(hist.back().best_epoch == static_cast<Index>(best + 1));
  CHECK_FALSE(same(at_epoch[best], at_epoch.back()));

  // The model holds the best epoch's weights; the checkpoint too; --last the last epoch's.
  CHECK(same(weights_of(*model), at_epoch[best]));
  if (on_disk) {
    CHECK(same(weights_in_file(opt.checkpoint_path), at_epoch[best]));
    const auto meta = io::read_checkpoint_metadata(opt.checkpoint_path);
    CHECK(meta.train_state["epoch"] == best + 1);  // resumes from the end of the best epoch
    CHECK(meta.train_state["best_epoch"] == best + 1);
  }
  CHECK(same(weights_in_file(opt.last_checkpoint_path), at_epoch.back()));
  CHECK(io::read_checkpoint_metadata(opt.last_checkpoint_path).train_state["epoch"] == 5);

  // The test set, scored once at the end with the best weights, is the final record.
  const train::TestRecord tr = t.test(splits().test);
  CHECK(tr.epoch == static_cast<Index>(best + 1));
  CHECK(tr.selected);
  auto reference = build();
  for (std::size_t i = 0; i < at_epoch[best].size(); ++i)
    std::copy(at_epoch[best][i].begin(), at_epoch[best][i].end(), reference->arena().parameters()[i].value);
  train::Adam unused;
  train::Trainer ref(*reference, unused, {.progress = 2});
  const auto expect = ref.evaluate_detailed(splits().test);
  // Serving passes (packed weight copies) saw the restored weights, not the last epoch's.
  auto ref_ws = reference->make_workspace();
  const ConstMat want = reference->serve(probe, *ref_ws);
  REQUIRE(static_cast<Index>(served_after_fit.size()) == want.rows * want.cols);
  for (Index r = 0; r < want.rows; ++r)
    for (Index k = 0; k < want.cols; ++k) REQUIRE(served_after_fit[r * want.cols + k] == want(r, k));
  REQUIRE(expect.tasks.size() == tr.test.tasks.size());
  CHECK(expect.loss == tr.test.loss);
  for (std::size_t k = 0; k < expect.tasks.size(); ++k) CHECK(expect.tasks[k].auc == tr.test.tasks[k].auc);

  // One JSON shape: the metrics file holds exactly what on_record saw; every record has the same keys.
  const auto lines = read_lines(opt.metrics_path);
  REQUIRE(lines.size() == 6);
  CHECK(lines == printed);
  for (const auto& l : lines) CHECK(keys_of(l) == keys_of(lines[0]));
  CHECK(keys_of(lines[0]) == std::vector<std::string>{"record", "epoch", "steps", "global_step", "train_loss",
                                                      "rows_per_second", "split", "loss", "monitor", "score", "best",
                                                      "best_epoch", "tasks", "scenes"});
  CHECK(lines[best]["best"] == true);
  CHECK(lines[4]["best"] == false);
  CHECK(lines[4]["split"] == "valid");
  CHECK(lines[4]["best_epoch"] == best + 1);
  const ojson& last = lines.back();
  CHECK(last["record"] == "test");
  CHECK(last["split"] == "test");
  CHECK(last["epoch"] == best + 1);
  CHECK(last["best"] == true);
  CHECK(last["tasks"]["click"]["auc"].get<double>() == tr.test.tasks[0].auc);
  CHECK(last["train_loss"].is_null());
  // Two scenes in the simulator: per-scene metrics in every evaluated record.
  CHECK(last["scenes"].size() == 2);
  CHECK(lines[0]["scenes"].size() == 2);
}

TEST_CASE("trainer: a run resumed from the last checkpoint keeps the best epoch from before", "[train][selection]") {
  const auto dir = mtrank::testing::temp_dir("selection_resume");
  train::TrainerOptions opt{.batch_size = 128, .epochs = 3, .seed = 3, .progress = 2};
  opt.checkpoint_path = (dir / "best.safetensors").string();
  opt.last_checkpoint_path = (dir / "last.safetensors").string();
  Weights best_weights;
  Index best = 0;
  {
    auto model = build();
    train::Adam adam({.lr = 2e-2});
    train::Trainer t(*model, adam, opt);
    t.fit(splits().train, &splits().valid);
    best = t.best_epoch();
    best_weights = weights_of(*model);
  }
  REQUIRE(best >= 1);
  REQUIRE(best < 3);
  auto model = build();
  train::Adam adam({.lr = 2e-2});
  opt.epochs = 4;
  train::Trainer t(*model, adam, opt);
  t.resume(opt.last_checkpoint_path);
  CHECK(t.best_epoch() == best);
  const auto hist = t.fit(splits().train, &splits().valid);
  REQUIRE(hist.size() == 1);
  CHECK(hist[0].epoch == 4);
  REQUIRE_FALSE(hist[0].improved);  // flipped validation labels: epoch 4 is no better
  // The best weights came back from checkpoint_path, written three epochs ago.
  CHECK(t.best_epoch() == best);
  CHECK(same(weights_of(*model), best_weights));
  CHECK(t.test(splits().test).epoch == best);
}

TEST_CASE("trainer: without a validation set the last epoch is the model and patience is ignored", "[train][selection]") {
  const auto dir = mtrank::testing::temp_dir("selection_none");
  auto model = build();
  train::Adam adam({.lr = 2e-2});
  train::TrainerOptions opt{.batch_size = 128, .epochs = 3, .seed = 3, .patience = 1, .progress = 2};
  opt.checkpoint_path = (dir / "model.safetensors").string();
  opt.metrics_path = (dir / "metrics.jsonl").string();
  train::Trainer t(*model, adam, opt);
  const auto hist = t.fit(splits().train);
  REQUIRE(hist.size() == 3);  // no early stopping
  CHECK(t.best_epoch() == 0);
  CHECK(same(weights_in_file(opt.checkpoint_path), weights_of(*model)));
  const auto r = t.test(splits().test);
  CHECK(r.epoch == 3);
  CHECK_FALSE(r.selected);
  const auto lines = read_lines(opt.metrics_path);
  REQUIRE(lines.size() == 4);
  CHECK(lines[0]["split"].is_null());
  CHECK(lines[0]["tasks"].is_null());
  CHECK(lines[0]["best"].is_null());
  CHECK(lines[3]["record"] == "test");
  CHECK(lines[3]["best"] == false);
  CHECK(keys_of(lines[0]) == keys_of(lines[3]));

  train::Adam adam2;
  CHECK_THROWS_WITH(train::Trainer(*model, adam2, {.checkpoint_path = "a", .last_checkpoint_path = "a"}),
                    Contains("must differ"));
}

TEST_CASE("trainer: early stopping watches the validation set and keeps the best epoch", "[train][selection]") {
  auto model = build();
  train::Adam adam({.lr = 2e-2});
  train::Trainer t(*model, adam, {.batch_size = 128, .epochs = 20, .seed = 3, .patience = 2, .progress = 2});
  const auto hist = t.fit(splits().train, &splits().valid);
  REQUIRE(hist.size() < 20);
  CHECK(hist.size() == static_cast<std::size_t>(t.best_epoch() + 2));
  CHECK_FALSE(hist.back().improved);
  CHECK(hist[static_cast<std::size_t>(t.best_epoch() - 1)].improved);
}

TEST_CASE("trainer: per-scene metrics equal the metrics of each scene's rows", "[train][selection][scenes]") {
  const data::Dataset& d = splits().test;
  REQUIRE(d.schema.num_scenes == 2);
  auto model = build();
  train::Adam adam;
  train::Trainer t(*model, adam, {.eval_batch_size = 97, .progress = 2});
  const train::Evaluation ev = t.evaluate_detailed(d);
  REQUIRE(ev.scenes.size() == 2);
  Index rows = 0;
  for (const auto& sc : ev.scenes) {
    CAPTURE(sc.scene);
    std::vector<Index> idx;
    for (Index r = 0; r < d.rows; ++r)
      if (d.scene[static_cast<std::size_t>(r)] == sc.scene) idx.push_back(r);
    REQUIRE(sc.rows == static_cast<Index>(idx.size()));
    REQUIRE(sc.rows > 0);
    rows += sc.rows;
    const train::Evaluation part = t.evaluate_detailed(d.take(idx));
    REQUIRE(part.tasks.size() == sc.tasks.size());
    for (std::size_t k = 0; k < sc.tasks.size(); ++k) {
      CAPTURE(sc.tasks[k].name);
      CHECK(sc.tasks[k].count == part.tasks[k].count);
      CHECK(sc.tasks[k].auc == Approx(part.tasks[k].auc).margin(1e-6));
      CHECK(sc.tasks[k].gauc == Approx(part.tasks[k].gauc).margin(1e-6));
      CHECK(sc.tasks[k].log_loss == Approx(part.tasks[k].log_loss).margin(1e-6));
    }
  }
  CHECK(rows == d.rows);
  const auto j = train::scenes_json(ev.scenes);
  CHECK(j.size() == 2);
  CHECK(j[1]["scene"] == 1);
  CHECK(j[1]["tasks"].contains("long_dwell"));
}
