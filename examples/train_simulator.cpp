// Multi-task models on the built-in feed simulator (data::simulate_feed), per-task test AUC and
// GAUC next to the oracle (data::oracle_metrics: the true probabilities, the best any model can
// reach on the sample). The first 80% of impressions (time order) train, the last 20% test.
//
// Modes:
//   --mode models   every --models type, with and without DLRM dot interactions (--dot 0,1)
//   --mode scenes   the multi-domain question: one model trained on both scenes vs one model
//                   per scene (train rows of that scene only), both evaluated per scene
//   --mode sweep    one model type under the settings given (for tuning the demo's defaults)
//
//   train_simulator --mode models --impressions 500000 --epochs 3 --models shared_bottom,mmoe
//   train_simulator --mode scenes --models mmoe
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "experiment_util.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/data/simulator.hpp"

using namespace mtrank;
using examples::json;

namespace {

// The demo's comparable sizes: ~128-wide first layers, 64-wide representations, 32-wide towers.
// `width` scales the first layer (128 by default).
json model_config(const std::string& type, bool dot, Index width) {
  const Index w = width, h = width / 2;
  const json tower = {{"hidden", {32}}};
  json m;
  if (type == "shared_bottom")
    m = {{"bottom", {{"layers", {w, h}}}}, {"tower", tower}};
  else if (type == "mmoe")
    m = {{"num_experts", 4}, {"expert", {{"layers", {w, h}}}}, {"tower", tower}};
  else if (type == "ple" || type == "cgc")
    m = {{"levels", json::array({{{"num_task_experts", 1}, {"num_shared_experts", 2}, {"expert", {{"layers", {w, h}}}}},
                                 {{"num_task_experts", 1}, {"num_shared_experts", 2}, {"expert", {{"layers", {h}}}}}})},
         {"tower", tower}};
  else if (type == "snr_trans" || type == "snr_aver")
    m = {{"stages", json::array({{{"num_subnets", 3}, {"subnet", {{"layers", {w}}}}},
                                 {{"num_subnets", 3}, {"subnet", {{"layers", {h}}}}}})},
         {"task_subnet", {0, 1, 2}},
         {"code", {{"log_alpha_mean", 2.0}}},
         {"tower", tower}};
  else if (type == "multi_domain")  // SNR-Trans stages + scene embedding, slot-gate, embedding transform, K x S towers
    m = {{"stages", json::array({{{"num_subnets", 3}, {"subnet", {{"layers", {w}}}}},
                                 {{"num_subnets", 3}, {"subnet", {{"layers", {h}}}}}})},
         {"scene_dim", 8},
         {"code", {{"log_alpha_mean", 2.0}}},
         {"tower", tower}};
  else
    fail("--models: unknown model '", type, "' (expected shared_bottom, mmoe, ple, snr_trans, snr_aver, multi_domain)");
  m["type"] = type;
  m["dot_interactions"] = dot;
  return m;
}

data::Dataset rows_of_scene(const data::Dataset& d, std::int32_t scene) {
  std::vector<Index> idx;
  for (Index i = 0; i < d.rows; ++i)
    if (d.scene[static_cast<std::size_t>(i)] == scene) idx.push_back(i);
  return d.take(idx);
}

}  // namespace

int main(int argc, char** argv) try {
  mtrank::use_passive_openmp_wait(argc, argv);  // idle OpenMP threads sleep (core/threading.hpp)
  examples::Flags flags(argc, argv, "train_simulator: multi-task models on the feed simulator next to the oracle",
                        {{"mode", "models"},
                         {"models", "shared_bottom,mmoe,ple,snr_trans,snr_aver"},
                         {"dot", "0,1"},
                         {"impressions", "500000"},
                         {"epochs", "3"},
                         {"optimizer", "adam:0.002"},
                         {"batch", "512"},
                         {"emb-dim", "8"},
                         {"width", "128"},
                         {"embedding-init-std", "0.0001"},
                         {"seed", "42"}});
  if (flags.help()) return 0;
  const std::string mode = flags.str("mode");
  require(mode == "models" || mode == "scenes" || mode == "sweep", "--mode: expected models, scenes or sweep, got '",
          mode, "'");
  std::printf("# train_simulator %s\n", flags.summary().c_str());

  data::FeedSimulatorOptions sim;
  sim.impressions = flags.integer("impressions");
  sim.embedding_dim = flags.integer("emb-dim");
  sim.seed = static_cast<std::uint64_t>(flags.integer("seed"));
  const auto dataset = data::make_feed_dataset(sim);
  const auto [train, test] = data::train_test_split(dataset, 0.2);
  const auto oracle = data::oracle_metrics(test);
  std::printf("# %lld train rows, %lld test rows\n", (long long)train.rows, (long long)test.rows);

  train::TrainerOptions topt;
  topt.epochs = flags.integer("epochs");
  topt.batch_size = flags.integer("batch");
  topt.seed = static_cast<std::uint64_t>(flags.integer("seed"));
  topt.progress = 2;
  const json optimizer = examples::optimizer_spec(flags.str("optimizer"));
  auto config_for = [&](const data::Dataset& d, const std::string& type, bool dot) {
    json model = model_config(type, dot, flags.integer("width"));
    model["embedding_init_std"] = flags.num("embedding-init-std");
    return json{{"name", "sim-" + type}, {"seed", flags.integer("seed")}, {"schema", d.schema}, {"model", model}};
  };

  if (mode == "models" || mode == "sweep") {
    std::printf("\n| model | dot | params | s | task | AUC | GAUC | logloss | oracle AUC | oracle GAUC | oracle logloss |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const auto& type : flags.list("models"))
      for (double dot : flags.numbers("dot")) {
        const auto r = examples::train_and_evaluate(config_for(train, type, dot != 0), optimizer, train, test, topt);
        for (std::size_t k = 0; k < r.test.size(); ++k)
          std::printf("| %s | %d | %lld | %.0f | %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n", type.c_str(), int(dot != 0),
                      (long long)r.params, r.seconds, r.test[k].name.c_str(), r.test[k].auc, r.test[k].gauc,
                      r.test[k].log_loss, oracle[k].auc, oracle[k].gauc, oracle[k].log_loss);
        std::fflush(stdout);
      }
    return 0;
  }

  // mode == scenes
  const Index S = dataset.schema.num_scenes;
  std::vector<data::Dataset> train_s, test_s;
  std::vector<std::vector<train::TaskMetrics>> oracle_s;
  for (Index s = 0; s < S; ++s) {
    train_s.push_back(rows_of_scene(train, static_cast<std::int32_t>(s)));
    test_s.push_back(rows_of_scene(test, static_cast<std::int32_t>(s)));
    oracle_s.push_back(data::oracle_metrics(test_s.back()));
    std::printf("# scene %lld: %lld train rows, %lld test rows\n", (long long)s, (long long)train_s.back().rows,
                (long long)test_s.back().rows);
  }
  std::printf("\n| model | dot | scene | task | joint AUC | per-scene AUC | oracle AUC | joint GAUC | per-scene GAUC | oracle GAUC |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& type : flags.list("models"))
    for (double dot : flags.numbers("dot")) {
      examples::Stopwatch sw;
      auto model = models::build_model(config_for(train, type, dot != 0));
      auto opt = train::make_optimizer(optimizer);
      train::Trainer joint(*model, *opt, topt);
      joint.fit(train);
      for (Index s = 0; s < S; ++s) {
        const auto j = joint.evaluate(test_s[s]).second;
        const auto r = examples::train_and_evaluate(config_for(train_s[s], type, dot != 0), optimizer, train_s[s],
                                                    test_s[s], topt);
        for (std::size_t k = 0; k < j.size(); ++k)
          std::printf("| %s | %d | %lld | %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n", type.c_str(), int(dot != 0),
                      (long long)s, j[k].name.c_str(), j[k].auc, r.test[k].auc, oracle_s[s][k].auc, j[k].gauc,
                      r.test[k].gauc, oracle_s[s][k].gauc);
      }
      std::printf("# %s dot=%d: %.0f s for the joint model and the per-scene models\n", type.c_str(), int(dot != 0),
                  sw.seconds());
      std::fflush(stdout);
    }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_simulator: error: %s\n", e.what());
  return 1;
}
