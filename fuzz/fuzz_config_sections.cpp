// libFuzzer target: the serving, optimizer and trainer sections of a config, on arbitrary JSON
// (an object {"serving": ..., "optimizer": ..., "trainer": ..., "schema": ...}). Large integers
// are NOT skipped: each parser must reject what it cannot honour itself. Invalid sections must
// end in mtrank::Error.
//   serving    serve::parse_serving against the fuzzed "schema" when one parses, else a small
//              simulator schema; for the latter a Predictor is built with the section as its
//              serving override (PredictorOptions::serving, as the ranking server does) and
//              scores a request of the layout it derived.
//   optimizer  train::make_optimizer, then two steps on a small model (dense and sparse rows),
//              state() -> load_state() into a second optimiser of the same config.
//   trainer    the trainer section is parsed only by the CLI (tools/mtrank_cli/main.cpp
//              parse_trainer); the library exposes train::parse_task_loss_specs and
//              train::TrainerOptions, whose values the Trainer constructor validates. This target
//              reads each field with the library's io::get_optional (types only, no range checks)
//              so the Trainer's own checks are what is tested, then fit()s a 48-row dataset
//              (epochs capped at 2 for time; everything else as given) with a validation split.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "mtrank/core/arena.hpp"
#include "mtrank/data/simulator.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/serve/predictor.hpp"
#include "mtrank/train/loss.hpp"
#include "mtrank/train/optimizer.hpp"
#include "mtrank/train/trainer.hpp"

namespace {

using namespace mtrank;
using nlohmann::json;

const data::Dataset& dataset() {
  static const data::Dataset d = [] {
    data::FeedSimulatorOptions o;
    o.users = 6;
    o.items = 12;
    o.categories = 3;
    o.authors = 3;
    o.impressions = 64;
    o.max_seq_len = 3;
    o.embedding_dim = 2;
    o.seed = 3;
    return data::make_feed_dataset(o);
  }();
  return d;
}

json model_config() {
  return {{"seed", 1},
          {"schema", dataset().schema},
          {"model", {{"type", "mmoe"}, {"num_experts", 2}, {"expert", {{"layers", {4}}}}, {"tower", {{"hidden", {2}}}}}}};
}

void serving(const json& j, const data::FeatureSchema* custom) {
  const json section = j.contains("serving") ? j["serving"] : json(nullptr);
  const data::FeatureSchema& schema = custom ? *custom : dataset().schema;
  const serve::ServingConfig c = serve::parse_serving(section, schema);
  const auto& l = c.layout;
  if (l.user_sparse.size() + l.cand_sparse.size() != schema.sparse.size() ||
      l.user_dense.size() + l.cand_dense.size() != schema.dense.size() || c.max_candidates <= 0 ||
      c.max_sequence_length <= 0)
    __builtin_trap();
  if (custom) return;
  serve::PredictorOptions po;
  po.serving = section;
  const serve::Predictor p(models::build_model(model_config()), po);
  (void)p.metadata().dump();
  if (!p.serving().layout_error.empty()) return;
  serve::Request r;
  r.user_sparse.assign(l.user_sparse.size(), 0);
  r.user_dense.assign(l.user_dense.size(), 0.5f);
  r.sequences.assign(schema.sequences.size(), {1, 2});
  r.num_candidates = std::min<Index>(2, c.max_candidates);
  r.cand_sparse.assign(static_cast<std::size_t>(r.num_candidates) * l.cand_sparse.size(), 1);
  r.cand_dense.assign(static_cast<std::size_t>(r.num_candidates) * l.cand_dense.size(), 0.25f);
  for (auto& s : r.sequences)
    if (static_cast<Index>(s.size()) > c.max_sequence_length) s.resize(static_cast<std::size_t>(c.max_sequence_length));
  p.check(r);
  serve::Predictor::Session session;
  const serve::Scores s = p.score(r, session);
  if (s.probs.rows != r.num_candidates || static_cast<Index>(s.fused.size()) != r.num_candidates) __builtin_trap();
}

// Two steps with every trainable gradient set (dense: all of it; sparse: rows 0 and the last).
void optimizer(const json& j) {
  auto opt = train::make_optimizer(j["optimizer"]);
  auto model = models::build_model(model_config());
  auto& arena = model->arena();
  for (int step = 0; step < 2; ++step) {
    arena.zero_grad();
    for (auto& p : arena.parameters()) {
      if (!p.trainable) continue;
      if (p.sparse) {
        for (Index r : {Index{0}, p.shape[0] - 1}) {
          float* g = p.sparse_grad.row(r);
          for (Index k = 0; k < p.sparse_grad.width(); ++k) g[k] = 0.5f - static_cast<float>(step);
        }
      } else {
        std::fill(p.grad, p.grad + p.numel(), 0.25f + static_cast<float>(step));
      }
    }
    opt->step(arena);
  }
  auto again = train::make_optimizer(j["optimizer"]);
  again->load_state(opt->state(), arena);
  if (again->step_count() != opt->step_count()) __builtin_trap();
}

template <class T>
T get(const json& t, const char* key, const char* what, T fallback) {
  return io::get_optional<T>(t, key, "config.trainer", what, fallback);
}

void trainer(const json& j) {
  const json& t = j["trainer"];
  if (!t.is_object()) fail("config.trainer: expected an object");
  train::TrainerOptions o;
  o.batch_size = get<Index>(t, "batch_size", "an integer", o.batch_size);
  o.epochs = get<Index>(t, "epochs", "an integer", o.epochs);
  o.eval_batch_size = get<Index>(t, "eval_batch_size", "an integer", o.eval_batch_size);
  o.seed = get<std::uint64_t>(t, "seed", "a non-negative integer", o.seed);
  o.patience = get<Index>(t, "patience", "an integer", o.patience);
  o.monitor = get<std::string>(t, "monitor", "a string", o.monitor);
  if (t.contains("tasks")) o.tasks = train::parse_task_loss_specs(t["tasks"], "config.trainer.tasks");
  o.uwl = get<bool>(t, "uwl", "a boolean", o.uwl);
  o.pcgrad = get<bool>(t, "pcgrad", "a boolean", o.pcgrad);
  if (t.contains("task_specific_prefixes"))
    o.task_specific_prefixes = get<std::vector<std::string>>(t, "task_specific_prefixes", "strings", {});
  o.penalty_weight = get<double>(t, "penalty_weight", "a number", o.penalty_weight);
  o.max_steps_per_epoch = get<Index>(t, "max_steps_per_epoch", "an integer", o.max_steps_per_epoch);
  o.log_every = get<Index>(t, "log_every", "an integer", o.log_every);
  o.data_parallel_min_rows = get<Index>(t, "data_parallel_min_rows", "an integer", o.data_parallel_min_rows);
  o.progress = 2;
  auto model = models::build_model(model_config());
  std::unique_ptr<train::Optimizer> opt;
  try {
    opt = train::make_optimizer(j.contains("optimizer") ? j["optimizer"] : json{{"type", "adam"}});
  } catch (const Error&) {
    opt = train::make_optimizer({{"type", "adam"}});
  }
  { train::Trainer check(*model, *opt, o); }  // the options as given: the constructor validates them
  o.epochs = std::min<Index>(o.epochs, 2);
  train::Trainer tr(*model, *opt, o);
  const data::Dataset& d = dataset();
  const data::Dataset train_part = d.subset(0, 48), valid = d.subset(48, d.rows);
  (void)tr.fit(train_part, &valid);
  (void)tr.evaluate(valid);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_parameter_memory_budget(64ull << 20);
  (void)dataset();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const json j = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return 0;
  std::unique_ptr<data::FeatureSchema> custom;
  if (j.contains("schema")) {
    try {
      custom = std::make_unique<data::FeatureSchema>(j["schema"].get<data::FeatureSchema>());
    } catch (const Error&) {
    }
  }
  try {
    serving(j, custom.get());
  } catch (const Error&) {
  }
  if (j.contains("optimizer")) {
    try {
      optimizer(j);
    } catch (const Error&) {
    }
  }
  if (j.contains("trainer")) {
    try {
      trainer(j);
    } catch (const Error&) {
    }
  }
  return 0;
}
