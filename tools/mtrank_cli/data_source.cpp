#include "data_source.hpp"

#include "mtrank/data/csv.hpp"
#include "mtrank/data/readers.hpp"
#include "mtrank/data/simulator.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/models/mm_fusion.hpp"

namespace mtrank::cli {

using io::get_optional;
using io::get_required;
using nlohmann::json;

namespace {

const std::string P = "config.data";

std::filesystem::path resolve(const std::filesystem::path& dir, const std::string& p) {
  std::filesystem::path q(p);
  return q.is_absolute() ? q : dir / q;
}

double test_fraction(const json& j) {
  const double f = get_optional<double>(j, "test_fraction", P, "a number in (0, 1)", 0.2);
  if (!(f > 0 && f < 1)) fail(P, ".test_fraction: expected a number in (0, 1), got ", f);
  return f;
}

data::SplitBy split_by(const json& j) {
  const std::string s = get_optional<std::string>(j, "split", P, "\"rows\" or \"per_user\"", "rows");
  if (s == "rows") return data::SplitBy::rows;
  if (s == "per_user") return data::SplitBy::per_user;
  fail(P, ".split: expected \"rows\" or \"per_user\", got \"", s, "\"");
}

Index positive(const json& j, const char* key, Index fallback) {
  const Index v = get_optional<Index>(j, key, P, "a positive integer", fallback);
  if (v <= 0) fail(P, ".", key, ": expected a positive integer, got ", v);
  return v;
}

/// "valid_fraction" / "valid_split" / "seed": splits the validation rows off d.train.
void split_valid(const json& j, TrainTestData& d, std::uint64_t default_seed) {
  if (!j.contains("valid_fraction")) {
    if (j.contains("valid_split")) fail(P, ".valid_split: only meaningful with valid_fraction");
    return;
  }
  if (j.contains("valid")) fail(P, ".valid_fraction: give either a \"valid\" file or \"valid_fraction\", not both");
  const double f = get_required<double>(j, "valid_fraction", P, "a number in (0, 1)");
  if (!(f > 0 && f < 1)) fail(P, ".valid_fraction: expected a number in (0, 1), got ", f);
  const std::string how = get_optional<std::string>(j, "valid_split", P, "\"random\" or \"rows\"", "random");
  const std::uint64_t seed = get_optional<std::uint64_t>(j, "seed", P, "a non-negative integer", default_seed);
  std::pair<data::Dataset, data::Dataset> parts;
  if (how == "random") parts = data::random_split(d.train, f, seed);
  else if (how == "rows") parts = data::train_test_split(d.train, f, data::SplitBy::rows);
  else fail(P, ".valid_split: expected \"random\" or \"rows\", got \"", how, "\"");
  if (parts.first.rows == 0 || parts.second.rows == 0)
    fail(P, ".valid_fraction: ", f, " of ", d.train.rows, " training rows leaves an empty ",
         parts.first.rows == 0 ? "training" : "validation", " split");
  d.train = std::move(parts.first);
  d.valid = std::move(parts.second);
}

/// train (+ valid file) (+ test or test_fraction) with a reader taking (path, options).
template <class Read>
TrainTestData train_and_test(const json& j, const std::filesystem::path& dir, Read read) {
  TrainTestData d;
  d.train = read(resolve(dir, get_required<std::string>(j, "train", P, "a file path")));
  if (j.contains("valid")) d.valid = read(resolve(dir, get_required<std::string>(j, "valid", P, "a file path")));
  if (j.contains("test")) {
    d.test = read(resolve(dir, get_required<std::string>(j, "test", P, "a file path")));
  } else {
    auto [a, b] = data::train_test_split(d.train, test_fraction(j), split_by(j));
    d.train = std::move(a);
    d.test = std::move(b);
  }
  split_valid(j, d, 1);
  return d;
}

TrainTestData load_source(const json& j, const data::FeatureSchema* config_schema, const std::filesystem::path& dir);

/// "tasks": ["click", ...] keeps those tasks (in that order); "fused_task": {"name": "fused",
/// "weights": {"click": 1, ...}} then appends a fused regression task (models::add_fused_task).
data::Dataset apply_task_options(data::Dataset d, const json& tasks, const json& fused) {
  if (!tasks.is_null()) {
    if (!tasks.is_array() || tasks.empty()) fail(P, ".tasks: expected a non-empty array of task names");
    std::vector<std::string> names;
    for (auto& t : tasks) {
      if (!t.is_string()) fail(P, ".tasks: expected task names (strings), got ", t.dump());
      names.push_back(t.get<std::string>());
    }
    try {
      d = data::select_tasks(d, names);
    } catch (const Error& e) {
      fail(P, ".tasks: ", e.what());
    }
  }
  if (!fused.is_null()) {
    const std::string fp = P + ".fused_task";
    if (!fused.is_object()) fail(fp, ": expected {\"name\": \"fused\", \"weights\": {\"<task>\": w, ...}}");
    io::reject_unknown_keys(fused, {"name", "weights"}, fp);
    const std::string name = get_optional<std::string>(fused, "name", fp, "a task name", "fused");
    auto w = fused.find("weights");
    if (w == fused.end() || !w->is_object() || w->empty())
      fail(fp, ".weights: expected a non-empty object {\"<task>\": weight, ...}");
    std::vector<std::pair<std::string, double>> weights;
    for (auto it = w->begin(); it != w->end(); ++it) {
      if (!it->is_number()) fail(fp, ".weights.", it.key(), ": expected a number, got ", it->dump());
      weights.emplace_back(it.key(), it->get<double>());
    }
    try {
      d = models::add_fused_task(d, name, weights);
    } catch (const Error& e) {
      fail(fp, ": ", e.what());
    }
  }
  return d;
}

}  // namespace

TrainTestData load_data(const json& j, const data::FeatureSchema* config_schema, const std::filesystem::path& dir) {
  if (!j.is_object()) fail(P, ": missing or not an object (expected {\"source\": \"simulator\" | \"csv\" | ...})");
  if (!j.contains("tasks") && !j.contains("fused_task")) return load_source(j, config_schema, dir);
  // Task options apply to every source, after reading: the reader sees the section without them.
  json source = j;
  source.erase("tasks");
  source.erase("fused_task");
  // A model's schema (eval/predict of a checkpoint) already holds the fused task: the reader must
  // not look for its column.
  data::FeatureSchema stripped;
  if (config_schema && j.contains("fused_task") && j["fused_task"].is_object()) {
    const std::string name = j["fused_task"].value("name", "fused");
    stripped = *config_schema;
    std::erase_if(stripped.tasks, [&](const data::TaskSpec& t) { return t.name == name; });
    config_schema = &stripped;
  }
  TrainTestData d = load_source(source, config_schema, dir);
  const json none;
  const json& tasks = j.contains("tasks") ? j["tasks"] : none;
  const json& fused = j.contains("fused_task") ? j["fused_task"] : none;
  d.train = apply_task_options(std::move(d.train), tasks, fused);
  d.test = apply_task_options(std::move(d.test), tasks, fused);
  if (d.valid.rows > 0) d.valid = apply_task_options(std::move(d.valid), tasks, fused);
  return d;
}

namespace {

TrainTestData load_source(const json& j, const data::FeatureSchema* config_schema, const std::filesystem::path& dir) {
  const std::string source = get_required<std::string>(j, "source", P, "a data source name");
  if (source == "simulator") {
    io::reject_unknown_keys(j, {"source", "impressions", "users", "items", "categories", "authors", "embedding_dim",
                                "max_seq_len", "seed", "test_fraction", "split", "valid_fraction", "valid_split"},
                            P);
    data::FeedSimulatorOptions o;
    o.impressions = positive(j, "impressions", 20000);
    o.users = positive(j, "users", o.users);
    o.items = positive(j, "items", o.items);
    o.categories = positive(j, "categories", o.categories);
    o.authors = positive(j, "authors", o.authors);
    o.embedding_dim = positive(j, "embedding_dim", o.embedding_dim);
    o.max_seq_len = positive(j, "max_seq_len", o.max_seq_len);
    o.seed = get_optional<std::uint64_t>(j, "seed", P, "a non-negative integer", o.seed);
    auto [a, b] = data::train_test_split(data::make_feed_dataset(o), test_fraction(j), split_by(j));
    TrainTestData d{std::move(a), {}, std::move(b)};
    split_valid(j, d, o.seed);
    return d;
  }
  if (source == "csv") {
    io::reject_unknown_keys(j, {"source", "train", "valid", "test", "test_fraction", "split", "valid_fraction",
                                "valid_split", "seed", "delimiter", "user_column", "scene_column", "max_rows",
                                "dense_missing"},
                            P);
    if (!config_schema) fail("config.schema: the csv data source needs the feature schema in the config");
    data::CsvOptions o;
    const std::string delim = get_optional<std::string>(j, "delimiter", P, "a one-character string", ",");
    if (delim.size() != 1) fail(P, ".delimiter: expected one character, got \"", delim, "\"");
    o.delimiter = delim[0];
    o.user_column = get_optional<std::string>(j, "user_column", P, "a column name", "");
    o.scene_column = get_optional<std::string>(j, "scene_column", P, "a column name", "");
    o.max_rows = get_optional<Index>(j, "max_rows", P, "an integer", -1);
    const std::string miss = get_optional<std::string>(j, "dense_missing", P, "\"error\" or \"fill\"", "error");
    if (miss == "fill") o.dense_missing = data::MissingPolicy::fill;
    else if (miss != "error") fail(P, ".dense_missing: expected \"error\" or \"fill\", got \"", miss, "\"");
    const data::FeatureSchema schema = *config_schema;
    return train_and_test(j, dir, [&](const std::filesystem::path& f) { return data::read_csv(f, schema, o); });
  }
  const std::initializer_list<const char*> tabular_keys = {"source",         "train",       "valid", "test",
                                                           "test_fraction",  "split",       "dim",   "hash_vocab",
                                                           "valid_fraction", "valid_split", "seed"};
  auto tabular = [&](data::TabularReaderOptions o) {
    io::reject_unknown_keys(j, tabular_keys, P);
    o.dim = positive(j, "dim", o.dim);
    o.hash_vocab = positive(j, "hash_vocab", o.hash_vocab);
    return o;
  };
  if (source == "uci_adult") {
    auto o = tabular({});
    return train_and_test(j, dir, [&](const std::filesystem::path& f) { return data::read_uci_adult(f, o); });
  }
  if (source == "census_income_raw") {
    auto o = tabular({});
    return train_and_test(j, dir, [&](const std::filesystem::path& f) { return data::read_census_income_raw(f, o); });
  }
  if (source == "census_income_rechub") {
    auto o = tabular({});
    return train_and_test(j, dir, [&](const std::filesystem::path& f) { return data::read_census_income_rechub(f, o); });
  }
  if (source == "ali_ccp") {
    auto o = tabular({.dim = 8, .hash_vocab = 100000});
    return train_and_test(j, dir, [&](const std::filesystem::path& f) { return data::read_ali_ccp(f, o); });
  }
  if (source == "criteo") {
    auto o = tabular({.dim = 8, .hash_vocab = 100000});
    return train_and_test(j, dir, [&](const std::filesystem::path& f) { return data::read_criteo(f, o); });
  }
  if (source == "movielens_100k") {
    io::reject_unknown_keys(j, {"source", "dir", "dim", "max_seq_len", "test_per_user", "positive_rating", "rating_task",
                                "valid_fraction", "valid_split", "seed"},
                            P);
    data::MovieLensOptions o;
    o.dim = positive(j, "dim", o.dim);
    o.max_seq_len = positive(j, "max_seq_len", o.max_seq_len);
    o.test_per_user = positive(j, "test_per_user", o.test_per_user);
    o.positive_rating = static_cast<int>(positive(j, "positive_rating", o.positive_rating));
    o.rating_task = get_optional<bool>(j, "rating_task", P, "a boolean", false);
    auto tt = data::read_movielens_100k(resolve(dir, get_required<std::string>(j, "dir", P, "a directory")), o);
    TrainTestData d{std::move(tt.train), {}, std::move(tt.test)};
    split_valid(j, d, 1);
    return d;
  }
  if (source == "sasrec") {
    if (j.contains("valid_fraction") || j.contains("valid"))
      fail(P, ".", j.contains("valid") ? "valid" : "valid_fraction",
           ": the sasrec source has its own validation split (each user's second-to-last event)");
    io::reject_unknown_keys(j, {"source", "file", "dim", "max_seq_len", "train_negatives", "eval_negatives", "max_users", "seed"}, P);
    data::SequenceReaderOptions o;
    o.dim = positive(j, "dim", o.dim);
    o.max_seq_len = positive(j, "max_seq_len", o.max_seq_len);
    o.train_negatives = positive(j, "train_negatives", o.train_negatives);
    o.eval_negatives = positive(j, "eval_negatives", o.eval_negatives);
    o.max_users = get_optional<Index>(j, "max_users", P, "a non-negative integer", 0);
    o.seed = get_optional<std::uint64_t>(j, "seed", P, "a non-negative integer", o.seed);
    auto tvt = data::read_sasrec_sequences(resolve(dir, get_required<std::string>(j, "file", P, "a file path")), o);
    return {std::move(tvt.train), std::move(tvt.valid), std::move(tvt.test)};
  }
  fail(P, ".source: unknown data source \"", source,
       "\" (expected one of: simulator, csv, uci_adult, census_income_raw, census_income_rechub, ali_ccp, criteo, "
       "movielens_100k, sasrec)");
}

}  // namespace

}  // namespace mtrank::cli
