// Readers on the real samples in ../shared/data: row and label counts from the folders' READMEs,
// and malformed copies written to a temporary directory.
#include <fstream>
#include <set>

#include "mtrank/data/csv.hpp"
#include "mtrank/data/readers.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::data;
namespace fs = std::filesystem;

namespace {

double label_sum(const Dataset& d, Index k) {
  double s = 0;
  for (Index r = 0; r < d.rows; ++r) s += d.labels[r * d.schema.num_tasks() + k];
  return s;
}

// Copies `src` to `dst`, replacing its line `line_no` (1-based) with `replacement`.
void write_broken_copy(const fs::path& src, const fs::path& dst, Index line_no, const std::string& replacement) {
  const std::string text = read_text_file(src);
  std::ofstream out(dst, std::ios::binary);
  Index line = 1;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t e = text.find('\n', pos);
    if (e == std::string::npos) e = text.size();
    out << (line == line_no ? replacement : text.substr(pos, e - pos));
    if (e < text.size()) out << '\n';
    pos = e + 1;
    ++line;
  }
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("readers: UCI Adult", "[data][readers]") {
  auto dir = testing::shared_data_dir();
  MTRANK_SKIP_WITHOUT_DATA(dir);
  Dataset train = read_uci_adult(dir / "uci-adult" / "adult.data");
  Dataset test = read_uci_adult(dir / "uci-adult" / "adult.test");
  CHECK(train.rows == 32561);
  CHECK(test.rows == 16281);
  CHECK(label_sum(train, 0) == 7841);
  CHECK(label_sum(test, 0) == 3846);
  const double nm = label_sum(train, 1) / double(train.rows);  // Never-married: about a third
  CHECK(nm > 0.25);
  CHECK(nm < 0.40);
  CHECK(train.schema.sparse.size() == 7);
  CHECK(train.schema.dense.size() == 6);
  CHECK(train.schema.sparse_index("marital_status") < 0);  // a label, not a feature
  // '?' workclass rows share one bucket: the hash of "".
  const int wc = train.schema.sparse_index("workclass");
  std::set<std::int64_t> workclasses;
  for (Index r = 0; r < train.rows; ++r) workclasses.insert(train.sparse[r * 7 + wc]);
  CHECK(workclasses.size() == 9);  // 8 categories + missing

  auto tmp = testing::temp_dir("adult");
  write_broken_copy(dir / "uci-adult" / "adult.data", tmp / "adult.data", 5,
                    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40");
  auto msg = error_of([&] { read_uci_adult(tmp / "adult.data"); });
  CHECK(msg.find("adult.data:5: expected 15 columns, got 13") != std::string::npos);
  write_broken_copy(dir / "uci-adult" / "adult.data", tmp / "adult.data", 7,
                    "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, "
                    "United-States, maybe");
  msg = error_of([&] { read_uci_adult(tmp / "adult.data"); });
  CHECK(msg.find("adult.data:7: column 'income' (#14): cannot map 'maybe' to a label for task 'income'") != std::string::npos);
  write_broken_copy(dir / "uci-adult" / "adult.data", tmp / "adult.data", 9,
                    "x39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, "
                    "United-States, <=50K");
  msg = error_of([&] { read_uci_adult(tmp / "adult.data"); });
  CHECK(msg.find("adult.data:9: column 'age' (#0): cannot parse 'x39'") != std::string::npos);
  fs::remove_all(tmp);
}

TEST_CASE("readers: Census-Income KDD samples", "[data][readers]") {
  auto dir = testing::shared_data_dir();
  MTRANK_SKIP_WITHOUT_DATA(dir);
  const auto base = dir / "census-income-kdd-sample";
  Dataset raw = read_census_income_raw(base / "deepctr_census-income.sample");
  CHECK(raw.rows == 200);
  CHECK(label_sum(raw, 0) == 12);
  CHECK(label_sum(raw, 1) > 30);
  CHECK(label_sum(raw, 1) < 120);
  CHECK(raw.schema.dense.size() == 7);
  CHECK(raw.schema.sparse.size() == 32);  // 42 columns - 7 continuous - weight - income - marital

  struct Split {
    const char* file;
    Index rows, income, never_married;
  };
  for (Split s : {Split{"rechub_census_income_train_sample.csv", 80, 5, 27}, Split{"rechub_census_income_val_sample.csv", 20, 2, 3},
                  Split{"rechub_census_income_test_sample.csv", 20, 2, 6}}) {
    Dataset d = read_census_income_rechub(base / s.file);
    INFO(s.file);
    CHECK(d.rows == s.rows);
    CHECK(label_sum(d, 0) == s.income);
    CHECK(label_sum(d, 1) == s.never_married);
    CHECK(d.schema.sparse.size() == raw.schema.sparse.size());
  }
  auto tmp = testing::temp_dir("census");
  write_broken_copy(base / "rechub_census_income_train_sample.csv", tmp / "c.csv", 3, "0.1,1,2");
  auto msg = error_of([&] { read_census_income_rechub(tmp / "c.csv"); });
  CHECK(msg.find("c.csv:3: expected 41 columns, got 3") != std::string::npos);
  fs::remove_all(tmp);
}

TEST_CASE("readers: Ali-CCP and Criteo samples", "[data][readers]") {
  auto dir = testing::shared_data_dir();
  MTRANK_SKIP_WITHOUT_DATA(dir);
  struct Split {
    const char* file;
    Index rows, click, purchase;
  };
  for (Split s : {Split{"ali_ccp_train_sample.csv", 100, 7, 1}, Split{"ali_ccp_val_sample.csv", 50, 3, 1},
                  Split{"ali_ccp_test_sample.csv", 50, 2, 1}}) {
    Dataset d = read_ali_ccp(dir / "ali-ccp-sample" / s.file);
    INFO(s.file);
    CHECK(d.rows == s.rows);
    CHECK(label_sum(d, 0) == s.click);
    CHECK(label_sum(d, 1) == s.purchase);
    CHECK(d.schema.sparse.size() == 23);
    CHECK(d.schema.dense.size() == 8);
  }
  Dataset c = read_criteo(dir / "criteo-sample" / "deepctr_criteo_sample.txt");
  CHECK(c.rows == 200);
  CHECK(label_sum(c, 0) == 49);
  CHECK(c.schema.dense.size() == 13);
  CHECK(c.schema.sparse.size() == 26);
  CHECK(c.dense[0] == 0.0f);                                 // I1 missing in row 1
  CHECK(c.dense[2] == Approx(std::log1p(260.0f)));           // I3 = 260.0
  CHECK(c.dense[13 + 1] == Approx(-std::log1p(1.0f)));        // row 2: I2 = -1
  CHECK(c.sparse[0] == hash_string("05db9164"));

  auto tmp = testing::temp_dir("criteo");
  write_broken_copy(dir / "criteo-sample" / "deepctr_criteo_sample.txt", tmp / "c.txt", 4,
                    "0,,abc,260.0,,17668.0,,,33.0,,,,0.0,,05db9164,08d6d899,9143c832,f56b7dd5,25c83c98,7e0ccccf,df5c2d18,"
                    "0b153874,a73ee510,8f48ce11,a7b606c4,ae1bb660,eae197fd,b28479f6,bfef54b3,bad5ee18,e5ba7672,87c6f83c,,,"
                    "0429f84b,,3a171ecb,c0d61a5c,,");
  auto msg = error_of([&] { read_criteo(tmp / "c.txt"); });
  CHECK(msg.find("c.txt:4: column 'I2' (#2): cannot parse 'abc' as a number") != std::string::npos);
  write_broken_copy(dir / "ali-ccp-sample" / "ali_ccp_train_sample.csv", tmp / "a.csv", 2,
                    "0,1,1,1,1,1,1,0,1,1,1,0,1,1,1,0,1,0,0,0,1,1,1,1,1,0.4734,0.562,0.0856,0.1902,0.07556,0.0,0.0,0.0");
  msg = error_of([&] { read_ali_ccp(tmp / "a.csv"); });
  CHECK(msg.find("purchase = 1 without a click") != std::string::npos);
  fs::remove_all(tmp);
}

TEST_CASE("readers: MovieLens-100K", "[data][readers]") {
  auto dir = testing::shared_data_dir();
  MTRANK_SKIP_WITHOUT_DATA(dir);
  const auto base = dir / "movielens-100k";
  MovieLensOptions o;
  o.rating_task = true;
  TrainTest d = read_movielens_100k(base, o);
  CHECK(d.train.rows == 90570);
  CHECK(d.test.rows == 9430);
  CHECK(label_sum(d.train, 0) + label_sum(d.test, 0) == 34174 + 21201);  // ratings 4 and 5
  CHECK(d.train.schema.num_tasks() == 2);
  std::set<std::int64_t> test_users(d.test.user.begin(), d.test.user.end());
  CHECK(test_users.size() == 943);
  // Sequences: a test row's history is the user's previous ratings, at most max_len = 20 and at
  // least 10 (every user has >= 20 ratings); times are non-negative and non-increasing.
  const auto& h = d.test.sequences[0];
  for (Index r = 0; r < d.test.rows; ++r) {
    REQUIRE(h.length(r) <= 20);
    REQUIRE(h.length(r) >= 10);
    for (auto j = h.offsets[r]; j < h.offsets[r + 1]; ++j) {
      REQUIRE(h.times[j] >= 0.0f);
      if (j > h.offsets[r]) REQUIRE(h.times[j] <= h.times[j - 1]);
    }
  }
  // The first training row of each user has an empty history.
  CHECK(d.train.sequences[0].length(0) == 0);
  // Sequence i+1 of the same user ends with row i's item.
  CHECK(d.train.user[1] == d.train.user[0]);
  const auto& th = d.train.sequences[0];
  CHECK(th.ids[th.offsets[2] - 1] == d.train.sparse[0 * 6 + 1]);

  auto tmp = testing::temp_dir("ml100k");
  for (const char* f : {"u.user", "u.item", "u.occupation"}) fs::copy_file(base / f, tmp / f);
  write_broken_copy(base / "u.data", tmp / "u.data", 17, "196\t242\tthree\t881250949");
  auto msg = error_of([&] { read_movielens_100k(tmp); });
  CHECK(msg.find("u.data:17: rating: cannot parse 'three' as an integer") != std::string::npos);
  write_broken_copy(base / "u.data", tmp / "u.data", 3, "196\t99999\t3\t881250949");
  msg = error_of([&] { read_movielens_100k(tmp); });
  CHECK(msg.find("u.data:3: item_id 99999 not in [1, 1682]") != std::string::npos);
  write_broken_copy(base / "u.user", tmp / "u.user", 2, "2|53|F|other");
  msg = error_of([&] { read_movielens_100k(tmp); });
  CHECK(msg.find("u.user:2: expected 5 '|'-separated fields, got 4") != std::string::npos);
  fs::remove(tmp / "u.user");
  msg = error_of([&] { read_movielens_100k(tmp); });
  CHECK(msg.find("cannot open") != std::string::npos);
  fs::remove_all(tmp);
}

TEST_CASE("readers: Amazon Video Games sequences (SASRec format)", "[data][readers]") {
  auto dir = testing::shared_data_dir();
  MTRANK_SKIP_WITHOUT_DATA(dir);
  const auto file = dir / "amazon-sasrec-video-games" / "Video.txt";
  SequenceReaderOptions o;
  o.train_negatives = 1;
  o.eval_negatives = 1;
  TrainValidTest d = read_sasrec_sequences(file, o);
  // 31,013 users, 112 of them with fewer than 3 events (README): valid/test have one positive
  // (plus one negative) per remaining user; all other events are training positives.
  const Index eval_users = 31013 - 112;
  CHECK(d.valid.rows == 2 * eval_users);
  CHECK(d.test.rows == 2 * eval_users);
  CHECK(d.train.rows == 2 * (287107 - 2 * eval_users));
  CHECK(label_sum(d.train, 0) == 287107 - 2 * eval_users);
  CHECK(d.train.schema.sparse[0].vocab == 31014);
  CHECK(d.train.schema.sparse[1].vocab == 23716);
  // A test row's history is the user's events before the last one (capped at max_len), its
  // negative shares the history and is an item the user never touched.
  const auto& h = d.test.sequences[0];
  CHECK(h.length(0) == h.length(1));
  CHECK(d.test.user[0] == d.test.user[1]);
  CHECK(d.test.labels[0] == 1.0f);
  CHECK(d.test.labels[1] == 0.0f);
  // Determinism.
  o.max_users = 200;
  auto a = read_sasrec_sequences(file, o), b = read_sasrec_sequences(file, o);
  CHECK(a.train.sparse == b.train.sparse);
  std::set<std::int64_t> users(a.train.user.begin(), a.train.user.end());
  CHECK(users.size() == 200);

  auto tmp = testing::temp_dir("sasrec");
  write_broken_copy(file, tmp / "v.txt", 11, "2 3 4");
  auto msg = error_of([&] { read_sasrec_sequences(tmp / "v.txt", o); });
  CHECK(msg.find("v.txt:11: expected 2 space-separated fields (user item), got 3") != std::string::npos);
  write_broken_copy(file, tmp / "v.txt", 20, "1 5");  // user 1 again after user 2
  msg = error_of([&] { read_sasrec_sequences(tmp / "v.txt", o); });
  CHECK(msg.find("v.txt:20: user 1 appears again") != std::string::npos);
  fs::remove_all(tmp);
}
