// UCI Adult with the two tasks of the MMoE paper's census experiment: income > 50K and
// marital status = never married (data::read_uci_adult). Trains SharedBottom, MMoE and PLE on
// adult.data, evaluates on adult.test and prints test AUC per task (mean ± std over seeds).
// Skips with exit code 0 when the data folder is absent.
//
//   train_adult [--models shared_bottom,mmoe,ple] [--seeds 3] [--epochs 10] [--data-dir DIR]
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "data_dir.hpp"
#include "experiment_util.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/data/readers.hpp"

using namespace mtrank;
using examples::json;

namespace {

// Comparable sizes (about 15–20k parameters in the dense part; the program prints the totals).
json model_config(const std::string& type) {
  const json tower = {{"hidden", {16}}};
  if (type == "shared_bottom") return {{"type", type}, {"bottom", {{"layers", {64, 32}}}}, {"tower", tower}};
  if (type == "mmoe") return {{"type", type}, {"num_experts", 4}, {"expert", {{"layers", {32, 16}}}}, {"tower", tower}};
  if (type == "ple")
    return {{"type", type},
            {"levels", json::array({{{"num_task_experts", 1}, {"num_shared_experts", 2}, {"expert", {{"layers", {32, 16}}}}}})},
            {"tower", tower}};
  fail("--models: unknown model '", type, "' (expected shared_bottom, mmoe, ple)");
}

}  // namespace

int main(int argc, char** argv) try {
  mtrank::use_passive_openmp_wait(argc, argv);  // idle OpenMP threads sleep (core/threading.hpp)
  examples::Flags flags(argc, argv, "train_adult: SharedBottom / MMoE / PLE on UCI Adult (income, never_married)",
                        {{"models", "shared_bottom,mmoe,ple"},
                         {"seeds", "3"},
                         {"epochs", "10"},
                         {"batch", "256"},
                         {"optimizer", "adam:0.001"},
                         {"emb-dim", "8"},
                         {"data-dir", ""}});
  if (flags.help()) return 0;
  const auto dir = examples::find_data_dir(flags.str("data-dir"));
  if (dir.empty() || !std::filesystem::exists(dir / "uci-adult" / "adult.data")) {
    std::printf("train_adult: skipped (no uci-adult data; set --data-dir or MTRANK_DATA_DIR)\n");
    return 0;
  }
  std::printf("# train_adult %s\n", flags.summary().c_str());
  data::TabularReaderOptions ro;
  ro.dim = flags.integer("emb-dim");
  const auto train = data::read_uci_adult(dir / "uci-adult" / "adult.data", ro);
  const auto test = data::read_uci_adult(dir / "uci-adult" / "adult.test", ro);
  std::printf("# %lld train rows, %lld test rows\n", (long long)train.rows, (long long)test.rows);

  std::printf("\n| model | params | task | test AUC | test logloss |\n|---|---|---|---|---|\n");
  for (const auto& type : flags.list("models")) {
    std::vector<std::vector<double>> auc, ll;
    std::vector<std::string> names;
    Index params = 0;
    for (Index s = 1; s <= flags.integer("seeds"); ++s) {
      json config = {{"name", "adult-" + type}, {"seed", s}, {"schema", train.schema}, {"model", model_config(type)}};
      train::TrainerOptions topt;
      topt.epochs = flags.integer("epochs");
      topt.batch_size = flags.integer("batch");
      topt.seed = static_cast<std::uint64_t>(s);
      topt.progress = 2;
      const auto r = examples::train_and_evaluate(config, examples::optimizer_spec(flags.str("optimizer")), train, test, topt);
      params = r.params;
      auc.resize(r.test.size());
      ll.resize(r.test.size());
      names.clear();
      for (std::size_t k = 0; k < r.test.size(); ++k) {
        auc[k].push_back(r.test[k].auc);
        ll[k].push_back(r.test[k].log_loss);
        names.push_back(r.test[k].name);
      }
    }
    for (std::size_t k = 0; k < names.size(); ++k) {
      const auto a = examples::mean_std(auc[k]), l = examples::mean_std(ll[k]);
      std::printf("| %s | %lld | %s | %.4f ± %.4f | %.4f ± %.4f |\n", type.c_str(), (long long)params, names[k].c_str(),
                  a.mean, a.std, l.mean, l.std);
    }
    std::fflush(stdout);
  }
  std::printf("\n(%lld seeds; mean ± sample std)\n", (long long)flags.integer("seeds"));
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_adult: error: %s\n", e.what());
  return 1;
}
