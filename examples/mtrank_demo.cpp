// The README's demo: simulate a two-scene feed with known click / interaction / long-dwell
// probabilities, train a multi-task model on the first 80% of the impressions (time order) and
// print per-task AUC, GAUC and log loss on the last 20% next to the simulator's oracle (the
// values a model that knew the true probabilities would reach).
//
//   mtrank_demo [--model mmoe|shared_bottom|ple|snr_trans|...] [--epochs N] [--impressions N]
//               [--config file.json] [--metrics out.jsonl] [--checkpoint out.safetensors]
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "mtrank/core/threading.hpp"
#include "mtrank/data/simulator.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/train/trainer.hpp"

using nlohmann::json;

namespace {

json with_type(json j, const std::string& type) {
  j["type"] = type;
  j["dot_interactions"] = true;
  return j;
}

json default_model(const std::string& type) {
  // Comparable sizes: ~128-wide first layers, 64-wide representations, 32-wide towers.
  if (type == "shared_bottom" || type == "dnn")
    return with_type(json::parse(R"({"bottom": {"layers": [128, 64]}, "tower": {"hidden": [32]}})"), type);
  if (type == "mmoe")
    return with_type(json::parse(R"({"num_experts": 4, "expert": {"layers": [128, 64]}, "tower": {"hidden": [32]}})"), type);
  if (type == "ple" || type == "cgc")
    return with_type(json::parse(R"({"levels": [{"num_task_experts": 1, "num_shared_experts": 2, "expert": {"layers": [128, 64]}},
                                      {"num_task_experts": 1, "num_shared_experts": 2, "expert": {"layers": [64]}}],
                           "tower": {"hidden": [32]}})"),
                     type);
  if (type == "snr_trans" || type == "snr_aver")
    return with_type(json::parse(R"({"stages": [{"num_subnets": 3, "subnet": {"layers": [128]}},
                                      {"num_subnets": 3, "subnet": {"layers": [64]}}],
                           "task_subnet": [0, 1, 2], "code": {"log_alpha_mean": 2.0}, "tower": {"hidden": [32]}})"),
                     type);
  return {{"type", type}};
}

int usage() {
  std::fprintf(stderr,
               "usage: mtrank_demo [--model TYPE] [--epochs N] [--impressions N] [--config FILE] [--metrics FILE]\n"
               "                   [--checkpoint FILE] [--seed N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) try {
  mtrank::use_passive_openmp_wait(argc, argv);  // idle OpenMP threads sleep (core/threading.hpp)
  std::string model_type = "mmoe", config_path, metrics_path, checkpoint_path;
  mtrank::Index epochs = 1, impressions = 2000000;  // more distinct impressions close the oracle gap best (docs/results.md)
  std::uint64_t seed = 42;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw mtrank::Error(std::string(argv[i]) + ": missing value");
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--model")) model_type = next();
    else if (!std::strcmp(argv[i], "--epochs")) epochs = std::stoll(next());
    else if (!std::strcmp(argv[i], "--impressions")) impressions = std::stoll(next());
    else if (!std::strcmp(argv[i], "--config")) config_path = next();
    else if (!std::strcmp(argv[i], "--metrics")) metrics_path = next();
    else if (!std::strcmp(argv[i], "--checkpoint")) checkpoint_path = next();
    else if (!std::strcmp(argv[i], "--seed")) seed = std::stoull(next());
    else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) return usage(), 0;
    else return usage();
  }

  mtrank::data::FeedSimulatorOptions sim;
  sim.impressions = impressions;
  sim.seed = seed;
  std::fprintf(stderr, "simulating %lld impressions (2 scenes, tasks click / interaction / long_dwell)...\n",
               (long long)impressions);
  auto dataset = mtrank::data::make_feed_dataset(sim);
  auto [rest, test] = mtrank::data::train_test_split(dataset, 0.2);
  // 10% of the training rows for validation: epochs are chosen on it, never on the test split.
  auto [train, valid] = mtrank::data::random_split(rest, 0.1, seed);

  json config;
  if (!config_path.empty()) {
    std::ifstream f(config_path);
    if (!f) throw mtrank::Error("--config: cannot open '" + config_path + "'");
    std::stringstream ss;
    ss << f.rdbuf();
    config = json::parse(ss.str());
    config["schema"] = dataset.schema;
  } else {
    config = {{"name", "demo"}, {"seed", seed}, {"schema", dataset.schema}, {"model", default_model(model_type)}};
  }
  auto model = mtrank::models::build_model(config);
  auto optimizer = mtrank::train::make_optimizer(config.value("optimizer", json{{"type", "adam"}, {"lr", 2e-3}}));
  mtrank::train::TrainerOptions topt;
  topt.epochs = epochs;
  topt.batch_size = 512;
  topt.seed = seed;
  topt.metrics_path = metrics_path;
  topt.checkpoint_path = checkpoint_path;
  mtrank::train::Trainer trainer(*model, *optimizer, topt);
  std::fprintf(stderr, "model %s: %lld trainable parameters; %lld train rows, %lld valid rows, %lld test rows\n",
               config["model"]["type"].get<std::string>().c_str(), (long long)model->arena().num_trainable(),
               (long long)train.rows, (long long)valid.rows, (long long)test.rows);
  trainer.fit(train, &valid);  // the model ends with the best validation epoch's weights

  const auto metrics = trainer.test(test).test.tasks;  // scored once; the final --metrics record
  const auto oracle = mtrank::data::oracle_metrics(test);
  std::printf("\n%-12s %9s %9s %9s   %9s %9s %9s\n", "task", "AUC", "GAUC", "logloss", "oracleAUC", "oracleGAUC",
              "oracleLL");
  for (std::size_t k = 0; k < metrics.size(); ++k)
    std::printf("%-12s %9.4f %9.4f %9.4f   %9.4f %9.4f %9.4f\n", metrics[k].name.c_str(), metrics[k].auc,
                metrics[k].gauc, metrics[k].log_loss, oracle[k].auc, oracle[k].gauc, oracle[k].log_loss);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "mtrank_demo: error: %s\n", e.what());
  return 1;
}
