// Readers for the public sample datasets in ../shared/data (see each folder's README.md and
// docs/data.md for the schemas). Every reader returns validated Datasets and throws
// mtrank::Error naming the file and line on malformed input.
#pragma once
#include <cstdint>
#include <filesystem>

#include "mtrank/data/batch.hpp"

namespace mtrank::data {

struct TabularReaderOptions {
  Index dim = 8;             // SparseField::dim of every field
  Index hash_vocab = 1024;   // rows of each hashed field's table
};

/// UCI Adult: adult.data or adult.test (the banner line and the trailing '.' of adult.test's
/// labels are handled). Tasks as in the MMoE paper's census experiment: income (> 50K) and
/// never_married (marital-status == Never-married); marital-status is not a feature.
Dataset read_uci_adult(const std::filesystem::path& file, const TabularReaderOptions& options = {});

/// Census-Income (KDD), raw UCI layout as in DeepCTR's census-income.sample (43 columns, no
/// header, first column a row number). Tasks: income (50000+.), never_married.
Dataset read_census_income_raw(const std::filesystem::path& file, const TabularReaderOptions& options = {});
/// Census-Income (KDD), torch-rechub's preprocessed CSV (label-encoded categoricals, min-max
/// scaled continuous columns). Tasks: income, never_married.
Dataset read_census_income_rechub(const std::filesystem::path& file, const TabularReaderOptions& options = {});

/// Ali-CCP (torch-rechub preprocessed): 23 sparse id fields (hashed), 8 dense, user = field
/// "101". Tasks: click, purchase (ESMM: purchase implies click).
Dataset read_ali_ccp(const std::filesystem::path& file, const TabularReaderOptions& options = {.dim = 8, .hash_vocab = 100000});

/// Criteo DAC in DeepCTR's CSV layout (label, I1..I13, C1..C26). Dense I_k -> sign(x)·log1p(|x|),
/// missing -> 0; C_k hashed strings (missing = one bucket). Task: click.
Dataset read_criteo(const std::filesystem::path& file, const TabularReaderOptions& options = {.dim = 8, .hash_vocab = 100000});

struct MovieLensOptions {
  Index dim = 8;
  Index max_seq_len = 20;     // hist_items / hist_genres keep the most recent ratings
  Index test_per_user = 10;   // each user's last ratings (by time) form the test set
  int positive_rating = 4;    // like = rating >= positive_rating
  bool rating_task = false;   // add a regression task "rating" (1..5)
};

struct TrainTest {
  Dataset train, test;
};

/// MovieLens-100K from a folder holding u.data, u.user, u.item, u.occupation. Rows are ordered by
/// (user, time); each row's sequences are the user's earlier ratings (all ratings, not only
/// likes), oldest first, with `times` = days before the rating.
TrainTest read_movielens_100k(const std::filesystem::path& dir, const MovieLensOptions& options = {});

struct SequenceReaderOptions {
  Index dim = 8;
  Index max_seq_len = 50;
  Index train_negatives = 1;  // sampled negatives per training positive
  Index eval_negatives = 20;  // sampled negatives per validation/test positive
  Index max_users = 0;        // 0 = all users
  std::uint64_t seed = 7;
};

struct TrainValidTest {
  Dataset train, valid, test;
};

/// SASRec-style "user item" file (one event per line, grouped by user, time-ordered), e.g.
/// amazon-sasrec-video-games/Video.txt. Next-item task with sampled negatives: for a user with
/// n >= 3 events, targets 0..n-3 train, n-2 valid, n-1 test (users with fewer events: all
/// train). Each positive row (label 1, history = the user's earlier items) is followed by its
/// negatives (label 0, same history; items the user never interacted with).
TrainValidTest read_sasrec_sequences(const std::filesystem::path& file, const SequenceReaderOptions& options = {});

}  // namespace mtrank::data
