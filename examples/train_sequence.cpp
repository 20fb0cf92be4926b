// train_sequence: interest / sequence models (DIN, DMT, SIM; models/interest_model.hpp) against
// pooling baselines on the feed simulator, MovieLens-100K and Amazon Video Games.
//
//   train_sequence --data sim --model din --max-len 50
//   train_sequence --data movielens --model mean
//   train_sequence --data amazon --model dmt --max-users 3000
//   train_sequence --data sim --model '{"type": "din", "sequences": [...]}'
//
// Prints one result line: AUC / GAUC of serve() predictions on the test set (bias networks
// dropped), log loss, training cost (ms per 1k training samples, wall clock) and serving cost
// (ms per 1k scored samples); for the simulator also the oracle's AUC / GAUC.
#include <cstdio>
#include <string>

#include "data_dir.hpp"
#include "experiment_util.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/data/readers.hpp"
#include "mtrank/data/simulator.hpp"
#include "mtrank/train/metrics.hpp"

using namespace mtrank;
using examples::json;

namespace {

struct Fields {
  std::vector<std::string> seqs;   // aligned sequence fields
  std::vector<std::string> query;  // candidate fields matching them
  std::string category_seq;        // for SIM hard search
};

json preset(const std::string& name, const Fields& f, Index max_len) {
  const json bottom = json::parse(R"({"layers": [64, 32]})");
  const json tower = json::parse(R"({"hidden": [16]})");
  json unit{{"name", "hist"}, {"fields", f.seqs}, {"query", f.query}, {"max_len", max_len}};
  json m;
  if (name == "mean" || name == "sum") {
    m = {{"type", "shared_bottom"}, {"sequence_pooling", name}, {"bottom", bottom}};
  } else if (name == "din" || name == "din_norm" || name == "din_softmax") {
    unit["hidden"] = {32, 16};
    if (name == "din_norm") unit["normalize_by_length"] = true;
    if (name == "din_softmax") unit["softmax"] = true;
    m = {{"type", "din"}, {"bottom", bottom}, {"sequences", {unit}}};
  } else if (name == "dmt" || name == "dmt_gru") {
    unit["heads"] = 2;
    if (name == "dmt") {
      unit["ff"] = 64;
      unit["position"] = "time_gap";
    } else {
      unit["kind"] = "gru";
    }
    m = {{"type", "dmt"}, {"num_experts", 2}, {"expert", bottom}, {"sequences", {unit}}};
  } else if (name == "sim_hard" || name == "sim_soft") {
    unit["heads"] = 2;
    unit["top_k"] = 20;
    unit["search"] = name == "sim_hard" ? "hard" : "soft";
    if (name == "sim_hard") {
      if (f.category_seq.empty()) fail("--model sim_hard: this data set has no behaviour category sequence");
      unit["category_field"] = f.category_seq;
    }
    m = {{"type", "sim"}, {"bottom", bottom}, {"sequences", {unit}}};
  } else {
    fail("--model: unknown preset '", name, "' (mean, sum, din, din_norm, din_softmax, dmt, dmt_gru, sim_hard, sim_soft, or a JSON object)");
  }
  m["tower"] = tower;
  return m;
}

}  // namespace

int main(int argc, char** argv) try {
  mtrank::use_passive_openmp_wait(argc, argv);  // idle OpenMP threads sleep (core/threading.hpp)
  examples::Flags flags(argc, argv, "train_sequence: DIN / DMT / SIM vs pooling baselines",
                        {{"data", "sim"}, {"data-dir", ""}, {"model", "din"}, {"max-len", "20"}, {"impressions", "60000"},
                         {"users", "2000"}, {"items", "5000"}, {"epochs", "2"}, {"lr", "0.003"}, {"batch", "256"},
                         {"max-users", "3000"}, {"seed", "7"}, {"dim", "8"}, {"label", ""}});
  if (flags.help()) return 0;
  const std::string which = flags.str("data");
  const Index max_len = flags.integer("max-len");
  data::Dataset train, test;
  Fields f;
  std::vector<train::TaskMetrics> oracle;
  if (which == "sim") {
    data::FeedSimulatorOptions o;
    o.impressions = flags.integer("impressions");
    o.users = flags.integer("users");
    o.items = flags.integer("items");
    o.max_seq_len = max_len;
    o.embedding_dim = flags.integer("dim");
    auto d = data::make_feed_dataset(o);
    std::tie(train, test) = data::train_test_split(d, 0.2);
    oracle = data::oracle_metrics(test);
    f = {{"click_seq", "click_cat_seq"}, {"item_id", "category"}, "click_cat_seq"};
  } else {
    const auto dir = examples::find_data_dir(flags.str("data-dir"));
    if (dir.empty()) fail("--data ", which, ": ../shared/data not found (set --data-dir)");
    if (which == "movielens") {
      auto tt = data::read_movielens_100k(dir / "movielens-100k", {.dim = flags.integer("dim"), .max_seq_len = max_len});
      train = std::move(tt.train);
      test = std::move(tt.test);
      f = {{"hist_items", "hist_genres"}, {"item_id", "genre"}, "hist_genres"};
    } else if (which == "amazon") {
      auto tvt = data::read_sasrec_sequences(dir / "amazon-sasrec-video-games" / "Video.txt",
                                             {.dim = flags.integer("dim"), .max_seq_len = max_len,
                                              .max_users = flags.integer("max-users")});
      train = std::move(tvt.train);
      test = std::move(tvt.test);
      f = {{"hist_items"}, {"item_id"}, ""};
    } else {
      fail("--data: expected sim, movielens or amazon, got '", which, "'");
    }
  }
  const std::string mname = flags.str("model");
  json model_json = mname.rfind("{", 0) == 0 ? json::parse(mname) : preset(mname, f, max_len);
  json config{{"schema", json(train.schema)}, {"model", model_json}, {"seed", flags.integer("seed")}};
  auto model = models::build_model(config);
  Index params = 0;
  for (auto& p : model->arena().parameters()) params += p.numel();

  auto opt = train::make_optimizer(json{{"type", "adam"}, {"lr", flags.num("lr")}});
  train::Trainer trainer(*model, *opt,
                         {.batch_size = flags.integer("batch"), .epochs = flags.integer("epochs"), .seed = 3, .progress = 2});
  examples::Stopwatch sw;
  trainer.fit(train);
  const double train_s = sw.seconds();
  const double trained_rows = double(train.rows) * double(flags.integer("epochs"));

  // serve() on the test set in batches of 1024.
  auto ws = model->make_workspace();
  const Index K = test.schema.num_tasks();
  Tensor probs(Shape{test.rows, K});
  data::Batch b;
  examples::Stopwatch sw2;
  for (Index s = 0; s < test.rows; s += 1024) {
    const Index e = std::min(test.rows, s + 1024);
    test.slice(s, e, b);
    model->predict(b, *ws, probs.matrix().row_block(s, e - s));
  }
  const double serve_s = sw2.seconds();
  std::vector<train::TaskKind> kinds;
  std::vector<std::string> names;
  for (auto& t : test.schema.tasks) {
    kinds.push_back(t.kind);
    names.push_back(t.name);
  }
  auto m = train::evaluate_tasks(probs.matrix(), test.labels.matrix(), test.label_mask.matrix(), test.user, kinds, names);
  std::string label = flags.str("label").empty() ? mname : flags.str("label");
  double mean_len = 0;
  for (Index r = 0; r < test.rows; ++r) mean_len += double(test.sequences[0].length(r));
  mean_len /= double(std::max<Index>(test.rows, 1));
  std::printf("%-12s data=%s max_len=%lld mean_len=%.1f train=%lld test=%lld params=%lld | %s AUC %.4f GAUC %.4f logloss %.4f",
              label.c_str(), which.c_str(), (long long)max_len, mean_len, (long long)train.rows, (long long)test.rows,
              (long long)params, m[0].name.c_str(), m[0].auc, m[0].gauc, m[0].log_loss);
  if (!oracle.empty()) std::printf(" | oracle AUC %.4f GAUC %.4f", oracle[0].auc, oracle[0].gauc);
  std::printf(" | train %.1f ms/1k, serve %.1f ms/1k\n", 1e6 * train_s / trained_rows, 1e6 * serve_s / double(test.rows));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_sequence: %s\n", e.what());
  return 1;
}
