// mtrank: train, evaluate, predict with, inspect, convert and export ranking models (docs/cli.md).
//
// Exit codes: 0 success, 1 runtime error (message on stderr), 2 usage error.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "data_source.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/packed_linear.hpp"
#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/io/name_map.hpp"
#include "mtrank/io/npy.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/serve/predictor.hpp"
#include "mtrank/train/export.hpp"
#include "mtrank/train/metrics.hpp"
#include "mtrank/train/trainer.hpp"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using namespace mtrank;

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("cannot open '", p.string(), "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json read_json(const fs::path& p) { return io::parse_json(read_text(p), p.string()); }

fs::path data_dir_or_default(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* e = std::getenv("MTRANK_DATA_DIR"); e && *e) return e;
  return fs::current_path();
}

train::TrainerOptions parse_trainer(const json& j, const data::FeatureSchema& schema) {
  train::TrainerOptions o;
  if (j.is_null()) return o;
  const std::string p = "config.trainer";
  io::reject_unknown_keys(j, {"batch_size", "epochs", "seed", "patience", "monitor", "tasks", "uwl", "penalty_weight",
                              "eval_batch_size", "max_steps_per_epoch", "log_every", "data_parallel_min_rows",
                              "last_checkpoint_path"},
                          p);
  auto pos = [&](const char* k, Index d) {
    const Index v = io::get_optional<Index>(j, k, p, "a positive integer", d);
    if (v <= 0) fail(p, ".", k, ": expected a positive integer, got ", v);
    return v;
  };
  o.batch_size = pos("batch_size", o.batch_size);
  o.epochs = pos("epochs", o.epochs);
  o.eval_batch_size = pos("eval_batch_size", o.eval_batch_size);
  o.seed = io::get_optional<std::uint64_t>(j, "seed", p, "a non-negative integer", o.seed);
  o.patience = io::get_optional<Index>(j, "patience", p, "a non-negative integer", 0);
  o.monitor = io::get_optional<std::string>(j, "monitor", p, "\"auc\" or \"loss\"", o.monitor);
  if (o.monitor != "auc" && o.monitor != "loss") fail(p, ".monitor: expected \"auc\" or \"loss\", got \"", o.monitor, "\"");
  if (j.contains("tasks")) o.tasks = train::parse_task_loss_specs(j["tasks"], p + ".tasks");
  o.uwl = io::get_optional<bool>(j, "uwl", p, "a boolean", false);
  o.penalty_weight = io::get_optional<double>(j, "penalty_weight", p, "a number", o.penalty_weight);
  o.max_steps_per_epoch = io::get_optional<Index>(j, "max_steps_per_epoch", p, "a non-negative integer", 0);
  o.log_every = io::get_optional<Index>(j, "log_every", p, "a non-negative integer", 0);
  o.data_parallel_min_rows =
      io::get_optional<Index>(j, "data_parallel_min_rows", p, "a non-negative integer", o.data_parallel_min_rows);
  if (o.data_parallel_min_rows < 0)
    fail(p, ".data_parallel_min_rows: expected a non-negative integer, got ", o.data_parallel_min_rows);
  o.last_checkpoint_path = io::get_optional<std::string>(j, "last_checkpoint_path", p, "a file path", "");
  return o;
}

/// One `mtrank eval` line: {"task", "scene" (null = all rows), "count", ...metrics}.
nlohmann::ordered_json eval_line(const train::TaskMetrics& m, nlohmann::ordered_json scene) {
  nlohmann::ordered_json j = {{"task", m.name}, {"scene", std::move(scene)}};
  const nlohmann::ordered_json metrics = train::task_metrics_json(m);
  for (auto it = metrics.begin(); it != metrics.end(); ++it) j[it.key()] = *it;
  return j;
}

/// Scores every row of `d` with the predictor, in batches: probs [N, K] and fused [N].
void score_dataset(const serve::Predictor& p, const data::Dataset& d, Tensor& probs, std::vector<float>& fused) {
  const Index K = p.num_tasks(), B = 4096;
  probs.resize(Shape{d.rows, K});
  fused.resize(static_cast<std::size_t>(d.rows));
  serve::Predictor::Session s;
  data::Batch batch;
  for (Index a = 0; a < d.rows; a += B) {
    const Index e = std::min(d.rows, a + B);
    d.slice(a, e, batch);
    serve::Scores r = p.score(batch, s);
    for (Index i = 0; i < e - a; ++i) {
      std::memcpy(probs.data() + (a + i) * K, r.probs.row(i), sizeof(float) * static_cast<std::size_t>(K));
      fused[static_cast<std::size_t>(a + i)] = r.fused[static_cast<std::size_t>(i)];
    }
  }
}

/// The data a checkpointed model is evaluated on: --config's data section, else the checkpoint's.
data::Dataset eval_data(const serve::Predictor& p, const std::string& config_path, const std::string& data_dir,
                        const std::string& split) {
  json cfg = config_path.empty() ? p.model().config() : read_json(config_path);
  if (!cfg.contains("data")) fail("config.data: missing (the checkpoint's config has no data section; pass --config)");
  const data::FeatureSchema& schema = p.schema();
  cli::TrainTestData d = cli::load_data(cfg["data"], &schema, data_dir_or_default(data_dir));
  data::Dataset& out = split == "train" ? d.train : split == "valid" ? d.valid : d.test;
  if (out.rows == 0)
    fail("--split ", split, ": the data section gives no ", split, " rows",
         split == "valid" ? " (add \"valid\" or \"valid_fraction\" to config.data)" : "");
  json have = out.schema, want = schema;
  if (have != want) fail("data: the dataset's schema differs from the model's (", have.dump().substr(0, 200), "...)");
  return std::move(out);
}

// ---- subcommands ----

struct TrainArgs {
  std::string config, out, metrics, data_dir, last, resume, progress = "auto";
  Index epochs = 0;
  int threads = 1;
  bool force = false;
};

int cmd_train(const TrainArgs& a) {
  // Checkpoints hold hours of training: a rerun of the same command must not replace them silently.
  if (!a.force && a.resume.empty())
    for (const std::string& p : {a.out, a.last})
      if (!p.empty() && fs::exists(p))
        fail(p, " exists: to continue that training pass --resume ", a.last.empty() ? a.out : a.last,
             "; to start over and overwrite it pass --force");
  // Temporary files of writers killed mid-save (kill -9, power loss) are removed now.
  for (const std::string& p : {a.out, a.last})
    if (!p.empty())
      for (const auto& t : io::remove_stale_temp_files(p))
        std::fprintf(stderr, "mtrank train: removed %s, left by a checkpoint write that did not finish\n", t.c_str());
  set_num_threads(a.threads);
  json cfg = read_json(a.config);
  if (!cfg.is_object()) fail(a.config, ": expected a JSON object");
  std::unique_ptr<data::FeatureSchema> cs;
  if (cfg.contains("schema")) cs = std::make_unique<data::FeatureSchema>(cfg["schema"].get<data::FeatureSchema>());
  cli::TrainTestData d = cli::load_data(cfg.contains("data") ? cfg["data"] : json(nullptr), cs.get(), data_dir_or_default(a.data_dir));
  cfg["schema"] = d.train.schema;  // readers define the schema; csv keeps the config's
  auto model = models::build_model(cfg);
  auto opt = train::make_optimizer(cfg.value("optimizer", json{{"type", "adam"}, {"lr", 1e-3}}), "config.optimizer");
  train::TrainerOptions t = parse_trainer(cfg.value("trainer", json(nullptr)), d.train.schema);
  if (a.epochs > 0) t.epochs = a.epochs;
  t.metrics_path = a.metrics;
  t.checkpoint_path = a.out;
  if (!a.last.empty()) t.last_checkpoint_path = a.last;
  if (!t.last_checkpoint_path.empty() && fs::absolute(t.last_checkpoint_path) == fs::absolute(a.out))
    fail("--last: must differ from -o (", a.out, "): -o holds the best epoch, --last the last one");
  t.progress = a.progress == "bar" ? 1 : a.progress == "plain" ? 0 : a.progress == "none" ? 2 : -1;
  // Every record goes to stdout as the same JSON line as in the --metrics file.
  t.on_record = [](const nlohmann::ordered_json& r) { std::cout << r.dump() << "\n" << std::flush; };
  train::Trainer trainer(*model, *opt, t);
  if (!a.resume.empty()) trainer.resume(a.resume);
  std::fprintf(stderr, "mtrank train: %s, %lld trainable parameters, %lld train / %lld valid / %lld test rows, %d thread%s%s\n",
               cfg["model"].value("type", "?").c_str(), (long long)model->arena().num_trainable(), (long long)d.train.rows,
               (long long)d.valid.rows, (long long)d.test.rows, a.threads, a.threads == 1 ? "" : "s",
               a.threads > 1 && !openmp_waits_passively() ? " (OpenMP threads spin when idle)" : "");
  if (d.valid.rows == 0)
    std::fprintf(stderr,
                 "mtrank train: no validation split (config.data.valid or valid_fraction): no model selection and no "
                 "early stopping; %s holds the last epoch. The test split is scored once, at the end.\n",
                 a.out.c_str());
  trainer.fit(d.train, d.valid.rows ? &d.valid : nullptr);
  if (!fs::exists(a.out)) trainer.save_checkpoint(a.out);  // no epoch ran now (e.g. resumed at the end)
  if (d.test.rows) trainer.test(d.test);
  std::fprintf(stderr, "mtrank train: %s holds epoch %lld%s\n", a.out.c_str(),
               (long long)(trainer.best_epoch() > 0 ? trainer.best_epoch() : trainer.epoch()),
               trainer.best_epoch() > 0 ? " (best on the validation split)" : " (the last)");
  return 0;
}

struct EvalArgs {
  std::string checkpoint, config, data_dir, split = "test", format = "json", weights = "f32";
};

int cmd_eval(const EvalArgs& a) {
  auto p = serve::Predictor::from_checkpoint(a.checkpoint, {.weights = parse_serving_weights(a.weights)});
  data::Dataset d = eval_data(*p, a.config, a.data_dir, a.split);
  Tensor probs;
  std::vector<float> fused;
  score_dataset(*p, d, probs, fused);
  std::vector<train::TaskKind> kinds;
  std::vector<std::string> names;
  for (auto& t : p->schema().tasks) {
    kinds.push_back(t.kind == data::TaskKind::binary ? train::TaskKind::binary : train::TaskKind::regression);
    names.push_back(t.name);
  }
  auto ms = train::evaluate_tasks(probs.matrix(), d.labels.matrix(), d.label_mask.matrix(), d.user, kinds, names);
  // Multi-scene models: the same metrics per scene.
  std::vector<train::SceneMetrics> scenes;
  const auto S = static_cast<std::int32_t>(p->schema().num_scenes);
  if (S > 1 && static_cast<Index>(d.scene.size()) == d.rows && d.rows > 0)
    scenes = train::evaluate_tasks_by_scene(probs.matrix(), d.labels.matrix(), d.label_mask.matrix(), d.user, d.scene,
                                            S, kinds, names);
  if (a.format == "table") {
    std::printf("%-14s %6s %8s %8s %8s %8s %9s %10s\n", "task", "scene", "count", "AUC", "GAUC", "logloss", "calib", "MSE");
    auto row = [](const train::TaskMetrics& m, const std::string& scene) {
      std::printf("%-14s %6s %8lld %8.4f %8.4f %8.4f %9.4f %10.5f\n", m.name.c_str(), scene.c_str(), (long long)m.count,
                  m.auc, m.gauc, m.log_loss, m.calibration, m.mse);
    };
    for (auto& m : ms) row(m, "all");
    for (auto& sc : scenes)
      for (auto& m : sc.tasks) row(m, std::to_string(sc.scene));
  } else {
    for (auto& m : ms) std::cout << eval_line(m, nullptr).dump() << "\n";
    for (auto& sc : scenes)
      for (auto& m : sc.tasks) std::cout << eval_line(m, sc.scene).dump() << "\n";
  }
  return 0;
}

struct PredictArgs {
  std::string checkpoint, config, data_dir, out, split = "test", weights = "f32";
};

int cmd_predict(const PredictArgs& a) {
  auto p = serve::Predictor::from_checkpoint(a.checkpoint, {.weights = parse_serving_weights(a.weights)});
  data::Dataset d = eval_data(*p, a.config, a.data_dir, a.split);
  Tensor probs;
  std::vector<float> fused;
  score_dataset(*p, d, probs, fused);
  const Index K = p->num_tasks();
  if (fs::path(a.out).extension() == ".npy") {
    io::save_npy(a.out, probs);  // [N, K]
  } else {
    std::ofstream f(a.out);
    if (!f) fail("--out: cannot write '", a.out, "'");
    f << "row";
    for (auto& t : p->schema().tasks) f << "," << t.name;
    f << ",fused\n";
    char buf[32];
    for (Index i = 0; i < d.rows; ++i) {
      f << i;
      for (Index k = 0; k < K; ++k) {
        std::snprintf(buf, sizeof buf, ",%.9g", double(probs[i * K + k]));
        f << buf;
      }
      std::snprintf(buf, sizeof buf, ",%.9g\n", double(fused[static_cast<std::size_t>(i)]));
      f << buf;
    }
    if (!f.flush()) fail("--out: write to '", a.out, "' failed");
  }
  std::fprintf(stderr, "mtrank predict: %lld rows x %lld tasks written to %s\n", (long long)d.rows, (long long)K, a.out.c_str());
  return 0;
}

struct InspectArgs {
  std::string checkpoint;
  bool json_out = false;
};

int cmd_inspect(const InspectArgs& a) {
  auto f = io::SafetensorsFile::load(a.checkpoint);
  json out = {{"file", a.checkpoint}, {"tensors", json::array()}};
  Index params = 0, optim = 0;
  for (const auto& e : f.entries()) {
    const bool is_optim = e.name.rfind(io::kOptimPrefix, 0) == 0;
    (is_optim ? optim : params) += e.shape.numel();
    out["tensors"].push_back({{"name", e.name}, {"dtype", io::dtype_name(e.dtype)}, {"shape", std::vector<Index>(e.shape.begin(), e.shape.end())}});
  }
  out["parameter_count"] = params;
  out["optimizer_state_count"] = optim;
  json meta = json::object();
  for (auto& [k, v] : f.metadata()) {
    if (k == "mtrank.config" || k == "mtrank.train_state") {
      try {
        meta[k] = json::parse(v);
      } catch (const json::exception&) {
        meta[k] = v;
      }
    } else {
      meta[k] = v;
    }
  }
  out["metadata"] = meta;
  if (a.json_out) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (meta.contains("mtrank.config")) std::cout << "config:\n" << meta["mtrank.config"].dump(2) << "\n";
  if (meta.contains("mtrank.train_state")) std::cout << "train_state: " << meta["mtrank.train_state"].dump() << "\n";
  std::cout << "tensors:\n";
  for (const auto& e : f.entries())
    std::printf("  %-48s %-5s %s\n", e.name.c_str(), io::dtype_name(e.dtype), e.shape.str().c_str());
  std::printf("parameters (excluding optimiser state): %lld\noptimiser state values: %lld\n", (long long)params, (long long)optim);
  return 0;
}

struct ConvertArgs {
  std::string from, config, map, out;
};

/// PyTorch state_dict (safetensors) -> mtrank checkpoint. The map file:
///   {"rename": {"<torch name>": "<mtrank name>", ...}, "ignore": ["<torch name prefix>", ...]}
/// Tensors not renamed keep their name. Every mtrank parameter must be found with its exact shape,
/// and every torch tensor must be used or ignored.
int cmd_convert(const ConvertArgs& a) {
  json cfg = read_json(a.config);
  auto model = models::build_model(cfg);
  const io::NameMap map = a.map.empty() ? io::NameMap{} : io::parse_name_map(read_json(a.map), "map");
  io::load_mapped(model->arena(), io::SafetensorsFile::load(a.from), map);
  io::CheckpointData data;
  data.config = cfg;
  io::save_checkpoint(a.out, model->arena(), data);
  std::fprintf(stderr, "mtrank convert: %zu tensors -> %s\n", model->arena().parameters().size(), a.out.c_str());
  return 0;
}

struct ExportArgs {
  std::string checkpoint, out;
};

int cmd_export(const ExportArgs& a) {
  const train::ExportReport r = train::export_serving_weights(a.checkpoint, a.out);
  std::size_t optim = 0;
  for (auto& n : r.dropped) optim += n.rfind(io::kOptimPrefix, 0) == 0;
  std::string other;
  for (auto& n : r.dropped)
    if (n.rfind(io::kOptimPrefix, 0) != 0) other += (other.empty() ? "" : ", ") + n;
  std::fprintf(stderr, "mtrank export: %zu tensors (%lld values) -> %s; left out %zu optimiser tensors%s%s\n", r.tensors,
               (long long)r.values, a.out.c_str(), optim, other.empty() ? "" : " and ", other.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Idle OpenMP threads sleep instead of spinning unless OMP_WAIT_POLICY/GOMP_SPINCOUNT say
  // otherwise (re-executes once; core/threading.hpp).
  mtrank::use_passive_openmp_wait(argc, argv);
  CLI::App app{"mtrank: multi-task ranking models (train, eval, predict, inspect, convert, export)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mtrank 0.1.0");

  TrainArgs ta;
  auto* train = app.add_subcommand("train", "train a model: config JSON (schema/model/optimizer/trainer/data) -> checkpoint");
  train->add_option("-c,--config", ta.config, "config JSON")->required()->check(CLI::ExistingFile);
  train->add_option("-o,--out", ta.out,
                    "checkpoint of the selected model: the best epoch on the validation split (the last epoch without one)")
      ->required();
  train->add_option("--last", ta.last, "also write the last epoch's full state here after every epoch (for --resume)");
  train->add_option("--resume", ta.resume, "continue training from a checkpoint written by -o or --last")
      ->check(CLI::ExistingFile);
  train->add_flag("--force", ta.force, "overwrite existing -o / --last files (without it, train refuses to replace them)");
  train->add_option("--metrics", ta.metrics, "metrics JSON lines file (one record per epoch, then the test record)");
  train->add_option("--epochs", ta.epochs, "override trainer.epochs")->check(CLI::PositiveNumber);
  train->add_option("--data-dir", ta.data_dir, "base for relative data paths (default $MTRANK_DATA_DIR or .)");
  train->add_option("--progress", ta.progress, "auto | bar | plain | none")->check(CLI::IsMember({"auto", "bar", "plain", "none"}));
  train->add_option("--threads", ta.threads, "intra-op threads")->check(CLI::PositiveNumber);

  EvalArgs ea;
  auto* eval = app.add_subcommand(
      "eval", "per-task (and per-scene) AUC, GAUC, log loss, calibration (MSE for regression) of a checkpoint");
  eval->add_option("-m,--checkpoint", ea.checkpoint, "checkpoint")->required()->check(CLI::ExistingFile);
  eval->add_option("-c,--config", ea.config, "config whose data section to use (default: the checkpoint's)");
  eval->add_option("--data-dir", ea.data_dir, "base for relative data paths");
  eval->add_option("--split", ea.split, "test | valid | train")->check(CLI::IsMember({"test", "valid", "train"}));
  eval->add_option("--format", ea.format, "json | table")->check(CLI::IsMember({"json", "table"}));
  // bf16 applies to batches of <= 8 rows only, and eval scores large batches: not offered here.
  eval->add_option("--weight-format", ea.weights, "inference weight format: f32 | int8")
      ->check(CLI::IsMember({"f32", "int8"}));

  PredictArgs pa;
  auto* predict = app.add_subcommand("predict", "score a dataset: per-task predictions and fused score to CSV (or [N, K] .npy)");
  predict->add_option("-m,--checkpoint", pa.checkpoint, "checkpoint")->required()->check(CLI::ExistingFile);
  predict->add_option("-c,--config", pa.config, "config whose data section to use (default: the checkpoint's)");
  predict->add_option("--data-dir", pa.data_dir, "base for relative data paths");
  predict->add_option("--split", pa.split, "test | valid | train")->check(CLI::IsMember({"test", "valid", "train"}));
  predict->add_option("-o,--out", pa.out, "output .csv or .npy")->required();
  predict->add_option("--weight-format", pa.weights, "inference weight format: f32 | bf16 (small batches) | int8")
      ->check(CLI::IsMember({"f32", "bf16", "int8"}));

  InspectArgs ia;
  auto* inspect = app.add_subcommand("inspect", "config, train state, tensors, shapes and parameter count of a checkpoint");
  inspect->add_option("checkpoint", ia.checkpoint, "checkpoint or safetensors file")->required()->check(CLI::ExistingFile);
  inspect->add_flag("--json", ia.json_out, "machine-readable output");

  ConvertArgs ca;
  auto* convert = app.add_subcommand("convert", "PyTorch state_dict (safetensors) -> mtrank checkpoint");
  convert->add_option("--from", ca.from, "PyTorch-exported safetensors")->required()->check(CLI::ExistingFile);
  convert->add_option("-c,--config", ca.config, "mtrank model config JSON")->required()->check(CLI::ExistingFile);
  convert->add_option("--map", ca.map, "name map JSON {\"rename\": {torch: mtrank}, \"ignore\": [prefix]}")->check(CLI::ExistingFile);
  convert->add_option("-o,--out", ca.out, "checkpoint to write")->required();

  ExportArgs xa;
  auto* exp = app.add_subcommand("export", "training checkpoint -> weights-only serving file (no optimiser state)");
  exp->add_option("-m,--checkpoint", xa.checkpoint, "training checkpoint")->required()->check(CLI::ExistingFile);
  exp->add_option("-o,--out", xa.out, "serving file to write (safetensors)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help / the usage error
    return rc == 0 ? 0 : 2;
  }
  try {
    if (*train) return cmd_train(ta);
    if (*eval) return cmd_eval(ea);
    if (*predict) return cmd_predict(pa);
    if (*inspect) return cmd_inspect(ia);
    if (*convert) return cmd_convert(ca);
    if (*exp) return cmd_export(xa);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mtrank: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
