// Serving export (train/export.hpp, `mtrank export`): a weights-only file without optimiser state,
// train state or trainer-only tensors ("uwl.*") that serve::Predictor::from_checkpoint loads and
// that scores bit-identically to the training checkpoint.
#include <cstring>

#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/train/export.hpp"
#include "mtrank/train/trainer.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;
using mtrank::testing::feed;
using mtrank::testing::feed_config;
using Catch::Matchers::Contains;

TEST_CASE("export: the serving file scores exactly like the training checkpoint", "[serve][export]") {
  const auto dir = mtrank::testing::temp_dir("export");
  const auto ckpt = dir / "train.safetensors", served = dir / "serving.safetensors";
  {
    // A trained model with Adam state and uncertainty weighting ("uwl.log_var" in the arena).
    auto model = models::build_model(feed_config());
    train::Adam adam({.lr = 1e-2});
    train::Trainer t(*model, adam,
                     {.batch_size = 256, .epochs = 1, .uwl = true, .checkpoint_path = ckpt.string(), .progress = 2});
    t.fit(feed());
  }
  const auto report = train::export_serving_weights(ckpt, served);
  CHECK(report.tensors > 5);
  bool dropped_uwl = false, dropped_optim = false;
  for (const auto& n : report.dropped) {
    dropped_uwl = dropped_uwl || n == "uwl.log_var";
    dropped_optim = dropped_optim || n.rfind(io::kOptimPrefix, 0) == 0;
  }
  CHECK(dropped_uwl);
  CHECK(dropped_optim);

  // Weights only: no optimiser state, no trainer tensors, no train state; the config is kept.
  const auto f = io::SafetensorsFile::load(served);
  for (const auto& e : f.entries()) {
    CAPTURE(e.name);
    CHECK(e.name.rfind(io::kOptimPrefix, 0) != 0);
    CHECK(e.name.rfind("uwl.", 0) != 0);
  }
  CHECK(f.entries().size() == report.tensors);
  CHECK(f.metadata().at("mtrank.kind") == "serving");
  CHECK(f.metadata().count("mtrank.train_state") == 0);
  const auto meta = io::read_checkpoint_metadata(served);
  CHECK(meta.kind == io::kServingKind);
  CHECK(meta.config == io::read_checkpoint_metadata(ckpt).config);
  CHECK(std::filesystem::file_size(served) < std::filesystem::file_size(ckpt) / 2);  // Adam: 2 moments per weight

  // The same scores from both files, bit for bit.
  auto a = serve::Predictor::from_checkpoint(ckpt), b = serve::Predictor::from_checkpoint(served);
  serve::Predictor::Session sa, sb;
  data::Batch batch;
  feed().slice(100, 400, batch);
  const serve::Scores x = a->score(batch, sa), y = b->score(batch, sb);
  REQUIRE(x.probs.rows == 300);
  REQUIRE(y.probs.rows == 300);
  for (Index r = 0; r < x.probs.rows; ++r) {
    REQUIRE(std::memcmp(x.probs.row(r), y.probs.row(r), sizeof(float) * static_cast<std::size_t>(x.probs.cols)) == 0);
    REQUIRE(x.fused[r] == y.fused[r]);
  }
  const auto r0 = mtrank::testing::row_with_history(10);
  serve::Scores xr = a->score(mtrank::testing::feed_request(*a, r0, 20), sa);
  serve::Scores yr = b->score(mtrank::testing::feed_request(*b, r0, 20), sb);
  for (Index i = 0; i < 20; ++i) REQUIRE(xr.fused[i] == yr.fused[i]);

  // Exporting a serving file again gives the same tensors; training cannot resume from it.
  const auto again = dir / "again.safetensors";
  CHECK(train::export_serving_weights(served, again).dropped.empty());
  const auto g = io::SafetensorsFile::load(again);
  REQUIRE(g.entries().size() == f.entries().size());
  auto model = models::build_model(feed_config());
  train::Adam adam;
  train::Trainer t(*model, adam, {.progress = 2});
  CHECK_THROWS_WITH(t.resume(served), Contains("weights-only serving file"));
}

TEST_CASE("export: a checkpoint that does not match its config is rejected and nothing is written", "[serve][export]") {
  const auto dir = mtrank::testing::temp_dir("export_bad");
  auto model = models::build_model(feed_config());
  auto cfg = feed_config();
  cfg["model"]["tower"]["hidden"] = {16};  // a different tower width than the weights
  io::CheckpointData d;
  d.config = cfg;
  io::save_checkpoint(dir / "bad.safetensors", model->arena(), d);
  CHECK_THROWS_WITH(train::export_serving_weights(dir / "bad.safetensors", dir / "out.safetensors"), Contains("shape"));
  CHECK_FALSE(std::filesystem::exists(dir / "out.safetensors"));
}
