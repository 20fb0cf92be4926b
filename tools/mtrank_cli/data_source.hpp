// The "data" section of a CLI config: which dataset to train/evaluate on, as (train, test).
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
// Every source also takes two task options, applied to both splits after reading, in this order:
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
  data::Dataset train, test;
};

/// Loads the data section; errors name the JSON path ("config.data.source: ...").
TrainTestData load_data(const nlohmann::json& section, const data::FeatureSchema* config_schema,
                        const std::filesystem::path& data_dir);

}  // namespace mtrank::cli
