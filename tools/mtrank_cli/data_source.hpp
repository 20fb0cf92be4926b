// The "data" section of a CLI config: which dataset to train/evaluate on, as (train, valid, test).
//
//   {"source": "simulator", "impressions": 20000, "users": 2000, "items": 5000, "seed": 42,
//    "test_fraction": 0.2, "split": "rows" | "per_user"}
//   {"source": "csv", "train": "a.csv", "test": "b.csv" | "test_fraction": 0.2, "delimiter": ",",
//    "user_column": "uid", "scene_column": "", "max_rows": -1, "dense_missing": "error" | "fill"}
//        (the schema is the config's "schema"; sparse/dense/sequence fields read the columns named
//         like them, task t reads column t as a float label)
//   {"source": "uci_adult", "train": "uci-adult/adult.data", "test": "uci-adult/adult.test", "dim": 8}
//   {"source": "census_income_raw" | "census_income_rechub" | "ali_ccp" | "criteo",
//    "train": "...", "test": "..." | "test_fraction": 0.2, "dim": 8, "hash_vocab": N}
//   {"source": "movielens_100k", "dir": "movielens-100k", "dim": 8, "max_seq_len": 20,
//    "test_per_user": 10, "rating_task": false}
//   {"source": "sasrec", "file": "amazon-sasrec-video-games/Video.txt", "max_users": 0, ...}
// Validation split (early stopping and model selection watch it; never the test split):
//   "valid": "v.csv"          a file, for the file-based sources (csv, uci_adult, census_*,
//                             ali_ccp, criteo), read like "train"
//   "valid_fraction": 0.1     rows split off the training rows (after the test split), every
//                             source but sasrec (whose reader has its own leave-one-out valid
//                             split); "valid_split": "random" (default: a uniform sample drawn
//                             from the data seed, "seed" of the section, default 1) or "rows"
//                             (the last fraction of the training rows, i.e. train | valid | test
//                             in time for time-ordered data)
// Without either the valid split is empty (sasrec: the reader's).
// Every source also takes two task options, applied to every split after reading, in this order:
//   "tasks": ["click"]       keep only these tasks, in this order (data::select_tasks): a
//                            single-task model (dnn) or ESMM's (ctr, ctcvr) pair from the simulator
//   "fused_task": {"name": "fused", "weights": {"click": 1, "interaction": 2}}
//                            append a regression task whose label is the weighted mean of those
//                            labels (models::add_fused_task): the MM model's fused target
// Relative paths are resolved against the data directory (--data-dir, else $MTRANK_DATA_DIR,
// else the current directory).
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "mtrank/data/batch.hpp"

namespace mtrank::cli {

struct TrainTestData {
  data::Dataset train, valid, test;  // valid.rows == 0: no validation split configured
};

/// Loads the data section; errors name the JSON path ("config.data.source: ...").
TrainTestData load_data(const nlohmann::json& section, const data::FeatureSchema* config_schema,
                        const std::filesystem::path& data_dir);

}  // namespace mtrank::cli
