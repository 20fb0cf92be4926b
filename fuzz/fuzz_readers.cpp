// libFuzzer target: the dataset readers of include/mtrank/data/ on arbitrary bytes.
//   byte 0: the reader   0 read_uci_adult       1 read_census_income_raw   2 read_census_income_rechub
//                        3 read_ali_ccp         4 read_criteo              5 read_movielens_100k
//                        6 read_sasrec_sequences 7 read_csv with options   8 for_each_csv_record
//   bytes 1-2: options (TabularReaderOptions, MovieLensOptions, SequenceReaderOptions, CsvOptions)
//   the rest: the file (the readers take paths: it is written to /dev/shm). MovieLens reads a
//   folder: the rest is split on NUL bytes into u.occupation, u.user, u.item and u.data.
// Malformed input must end in mtrank::Error; an accepted dataset must validate and slice.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "mtrank/data/batch.hpp"
#include "mtrank/data/csv.hpp"
#include "mtrank/data/readers.hpp"

namespace {

using namespace mtrank;
using namespace mtrank::data;

// Every accepted dataset: valid, and its first rows slice into a batch.
void check(const Dataset& d) {
  d.validate();
  Batch b;
  d.slice(0, std::min<Index>(d.rows, 3), b);
}

Index pick_index(fuzz::Bytes& in, std::initializer_list<Index> values) {
  const std::size_t k = in.pick(values.size());
  return *(values.begin() + k);
}

const FeatureSchema& csv_schema() {
  static const FeatureSchema s = nlohmann::json::parse(R"({
    "sparse": [{"name": "user", "vocab": 50, "dim": 4, "side": "user"},
               {"name": "city", "vocab": 16, "dim": 4, "hash": true, "side": "context"},
               {"name": "item", "vocab": 10, "dim": 4, "oov_row": 0, "side": "item"}],
    "dense": [{"name": "age", "side": "user"}, "price"],
    "sequences": [{"name": "hist", "vocab": 100, "dim": 4, "max_len": 5},
                  {"name": "hist_items", "max_len": 3, "table": "item"},
                  {"name": "tags", "vocab": 8, "dim": 2, "max_len": 4, "hash": true}],
    "tasks": [{"name": "click"}, {"name": "dwell", "kind": "regression"}],
    "num_scenes": 3})")
                                    .get<FeatureSchema>();
  return s;
}

CsvOptions csv_options(fuzz::Bytes& in) {
  CsvOptions o;
  const std::uint8_t a = in.u8(), b = in.u8();
  const char delims[] = {',', '\t', ';', '|', ' '};
  o.delimiter = delims[a % 5];
  o.header = !(a & 0x08);
  if (!o.header && (a & 0x10)) o.column_names = {"user", "city", "item", "age", "price", "hist", "hist_items", "tags", "click", "dwell", "scene"};
  o.quote = (a & 0x20) ? '\'' : '"';
  o.trim = !(a & 0x40);
  o.comment_prefix = (a & 0x80) ? "#" : "";
  switch (b % 4) {
    case 1: o.columns = {{"user", "#0"}, {"age", "#3"}, {"hist", "#5"}}; break;
    case 2: o.columns = {{"city", "#99"}}; break;
    case 3: o.columns = {{"price", "#x"}}; break;
    default: break;
  }
  if (b & 0x04) o.user_column = "user";
  if (b & 0x08) o.scene_column = "scene";
  if (b & 0x10) {
    o.id_parse = {{"user", IdParse::text}, {"hist", IdParse::text}, {"city", IdParse::integer}};
    o.sequence_delimiter = ';';
  }
  if (b & 0x20) {
    o.missing_values = {"", "?", "NA"};
    o.dense_missing = MissingPolicy::fill;
    o.dense_fill = (b & 0x80) ? std::numeric_limits<float>::quiet_NaN() : -1.0f;
    o.label_missing = MissingPolicy::fill;
    o.sparse_missing = (b & 0x02) ? MissingPolicy::error : MissingPolicy::fill;
    o.sparse_fill_id = (b & 0x01) ? std::numeric_limits<std::int64_t>::max() : 3;
  }
  if (b & 0x40) {
    o.labels = {{.task = "click", .column = "click", .transform = [](std::string_view v) {
                   return v == "yes" ? 1.0f : v == "no" ? 0.0f : std::numeric_limits<float>::quiet_NaN();
                 }}};
    o.dense_transform["price"] = [](float x) { return std::log1p(x); };
  }
  o.max_rows = pick_index(in, {-1, -1, 0, 1, 3});
  return o;
}

void run(fuzz::Bytes& in) {
  const auto& dir = fuzz::scratch_dir("readers");
  const std::size_t reader = in.pick(9);
  if (reader <= 4) {
    TabularReaderOptions o;
    o.dim = pick_index(in, {1, 4, 8, std::int64_t{1} << 40});
    o.hash_vocab = pick_index(in, {1, 2, 1024, 100000, std::int64_t{1} << 40, 0, -1});
    const auto file = dir / "data.csv";
    fuzz::write_bytes(file, in.rest());
    switch (reader) {
      case 0: check(read_uci_adult(file, o)); break;
      case 1: check(read_census_income_raw(file, o)); break;
      case 2: check(read_census_income_rechub(file, o)); break;
      case 3: check(read_ali_ccp(file, o)); break;
      default: check(read_criteo(file, o)); break;
    }
  } else if (reader == 5) {
    MovieLensOptions o;
    o.dim = pick_index(in, {1, 8});
    o.max_seq_len = pick_index(in, {20, 1, 0, 3});
    o.test_per_user = pick_index(in, {10, 0, 1, -1, 1000});
    const std::uint8_t b = in.u8();
    o.positive_rating = static_cast<int>(b % 7);
    o.rating_task = b & 0x80;
    const auto parts = fuzz::split_parts(in.rest(), std::string_view("\0", 1), 4);
    const char* names[] = {"u.occupation", "u.user", "u.item", "u.data"};
    for (std::size_t i = 0; i < 4; ++i) {
      const auto f = dir / names[i];
      if (i < parts.size()) fuzz::write_bytes(f, parts[i]);
      else std::filesystem::remove(f);
    }
    auto tt = read_movielens_100k(dir, o);
    check(tt.train);
    check(tt.test);
  } else if (reader == 6) {
    SequenceReaderOptions o;
    o.dim = pick_index(in, {8, 1});
    o.max_seq_len = pick_index(in, {50, 1, 0, 4});
    o.train_negatives = pick_index(in, {1, 0, 3, -1});
    o.eval_negatives = pick_index(in, {20, 0, 1});
    o.max_users = pick_index(in, {0, 1, 3});
    o.seed = in.u8();
    const auto file = dir / "seq.txt";
    fuzz::write_bytes(file, in.rest());
    auto s = read_sasrec_sequences(file, o);
    check(s.train);
    check(s.valid);
    check(s.test);
  } else if (reader == 7) {
    const CsvOptions o = csv_options(in);
    const auto file = dir / "data.csv";
    fuzz::write_bytes(file, in.rest());
    check(read_csv(file, csv_schema(), o));
  } else {
    const CsvOptions o = csv_options(in);
    const std::string text = in.rest();
    std::size_t total = 0;
    for_each_csv_record(text, "<fuzz>", o, [&](Index line, const std::vector<std::string>& cells) {
      if (line < 1 || cells.empty()) __builtin_trap();
      for (const auto& c : cells) total += c.size();
    });
    if (total > text.size()) __builtin_trap();  // cells are unquoted/trimmed pieces of the text
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mtrank::fuzz::Bytes in(data, size);
  try {
    run(in);
  } catch (const mtrank::Error& e) {
    mtrank::fuzz::note("reader", e);
  }
  return 0;
}
