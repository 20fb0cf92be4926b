// Loader smoke tests on the tiny real samples in ../shared/data: Census-Income (KDD) in the
// raw UCI layout (200 rows: the first 150 train, the last 50 test) and torch-rechub's
// preprocessed CSVs (80 train / 20 test), and Ali-CCP (100 train / 50 test). Each is read by
// its data:: reader, a small multi-task model trains a few epochs and the test AUC per task is
// printed with the number of positives. The samples are far too small for the AUCs to mean
// anything about the models: this only shows that reading, training and evaluation run end to
// end on real files. Skips with exit code 0 when the data folder is absent.
//
//   train_samples [--epochs 20] [--data-dir DIR]
#include <cstdio>
#include <string>
#include <vector>

#include "data_dir.hpp"
#include "experiment_util.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/data/readers.hpp"

using namespace mtrank;
using examples::json;

namespace {

json model_config(const std::string& type) {
  if (type == "mmoe")
    return {{"type", type}, {"num_experts", 3}, {"expert", {{"layers", {32, 16}}}}, {"tower", {{"hidden", {8}}}}};
  if (type == "esmm") return {{"type", type}, {"tower", {{"hidden", {32, 16}}}}};
  return {{"type", type}, {"bottom", {{"layers", {32, 16}}}}, {"tower", {{"hidden", {8}}}}};
}

void run(const std::string& name, const data::Dataset& train, const data::Dataset& test, const std::string& type,
         Index epochs) {
  train::TrainerOptions topt;
  topt.epochs = epochs;
  topt.batch_size = 16;
  topt.seed = 1;
  topt.progress = 2;
  const json config = {{"name", name}, {"seed", 1}, {"schema", train.schema}, {"model", model_config(type)}};
  const auto r = examples::train_and_evaluate(config, {{"type", "adam"}, {"lr", 3e-3}}, train, test, topt);
  for (std::size_t k = 0; k < r.test.size(); ++k) {
    const double pos = r.test[k].mean_label * double(r.test[k].count);
    std::printf("| %s | %s | %lld | %lld | %s | %.0f / %lld | %.4f | %.4f |\n", name.c_str(), type.c_str(),
                (long long)train.rows, (long long)r.params, r.test[k].name.c_str(), pos, (long long)r.test[k].count,
                r.test[k].auc, r.test[k].log_loss);
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) try {
  mtrank::use_passive_openmp_wait(argc, argv);  // idle OpenMP threads sleep (core/threading.hpp)
  examples::Flags flags(argc, argv, "train_samples: loader smoke tests on the tiny Census-Income and Ali-CCP samples",
                        {{"epochs", "20"}, {"data-dir", ""}});
  if (flags.help()) return 0;
  const auto dir = examples::find_data_dir(flags.str("data-dir"));
  if (dir.empty()) {
    std::printf("train_samples: skipped (no shared data folder; set --data-dir or MTRANK_DATA_DIR)\n");
    return 0;
  }
  std::printf("# train_samples %s\n", flags.summary().c_str());
  const Index epochs = flags.integer("epochs");
  std::printf("\n| sample | model | train rows | params | task | test positives / rows | test AUC | test logloss |\n"
              "|---|---|---|---|---|---|---|---|\n");
  const auto census = dir / "census-income-kdd-sample";
  if (std::filesystem::exists(census / "deepctr_census-income.sample")) {
    const auto all = data::read_census_income_raw(census / "deepctr_census-income.sample");
    const auto train = all.subset(0, 150), test = all.subset(150, all.rows);
    for (const char* t : {"shared_bottom", "mmoe"}) run("census-kdd raw", train, test, t, epochs);
  } else {
    std::printf("# census-income raw sample absent: skipped\n");
  }
  if (std::filesystem::exists(census / "rechub_census_income_train_sample.csv")) {
    const auto train = data::read_census_income_rechub(census / "rechub_census_income_train_sample.csv");
    const auto test = data::read_census_income_rechub(census / "rechub_census_income_test_sample.csv");
    for (const char* t : {"shared_bottom", "mmoe"}) run("census-kdd rechub", train, test, t, epochs);
  } else {
    std::printf("# census-income rechub sample absent: skipped\n");
  }
  const auto ali = dir / "ali-ccp-sample";
  if (std::filesystem::exists(ali / "ali_ccp_train_sample.csv")) {
    const auto train = data::read_ali_ccp(ali / "ali_ccp_train_sample.csv");
    const auto test = data::read_ali_ccp(ali / "ali_ccp_test_sample.csv");
    for (const char* t : {"mmoe", "esmm"}) run("ali-ccp", train, test, t, epochs);
  } else {
    std::printf("# ali-ccp sample absent: skipped\n");
  }
  std::printf("\n(tiny samples: the AUCs say nothing about the models, only that the pipeline runs)\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "train_samples: error: %s\n", e.what());
  return 1;
}
