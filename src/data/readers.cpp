#include "mtrank/data/readers.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <unordered_map>
#include <unordered_set>

#include "data/text_util.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/data/csv.hpp"

namespace mtrank::data {

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string snake(std::string s) {
  for (auto& c : s)
    if (c == ' ' || c == '-') c = '_';
  return s;
}

float signed_log1p(float x) { return x >= 0 ? std::log1p(x) : -std::log1p(-x); }

// A label transform mapping `pos` values to 1 and `neg` values to 0; anything else is NaN (error).
std::function<float(std::string_view)> one_of(std::vector<std::string> pos, std::vector<std::string> neg) {
  return [pos = std::move(pos), neg = std::move(neg)](std::string_view v) {
    for (const auto& p : pos)
      if (v == p) return 1.0f;
    for (const auto& n : neg)
      if (v == n) return 0.0f;
    return kNaN;
  };
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// UCI Adult

Dataset read_uci_adult(const std::filesystem::path& file, const TabularReaderOptions& o) {
  CsvOptions c;
  c.header = false;
  c.column_names = {"age",          "workclass",    "fnlwgt",       "education",      "education-num",
                    "marital-status", "occupation", "relationship", "race",           "sex",
                    "capital-gain", "capital-loss", "hours-per-week", "native-country", "income"};
  c.comment_prefix = "|";  // adult.test's banner line "|1x3 Cross validator"
  c.missing_values = {"", "?"};
  FeatureSchema s;
  for (const char* f : {"workclass", "education", "occupation", "relationship", "race", "sex", "native-country"})
    s.sparse.push_back({.name = snake(f), .vocab = o.hash_vocab, .dim = o.dim, .hash = true});
  for (const char* f : {"workclass", "education", "occupation", "relationship", "race", "sex", "native-country"})
    c.columns[snake(f)] = f;
  s.dense = {{"age"}, {"log_fnlwgt"}, {"education_num"}, {"log_capital_gain"}, {"log_capital_loss"}, {"hours_per_week"}};
  c.columns["log_fnlwgt"] = "fnlwgt";
  c.columns["education_num"] = "education-num";
  c.columns["log_capital_gain"] = "capital-gain";
  c.columns["log_capital_loss"] = "capital-loss";
  c.columns["hours_per_week"] = "hours-per-week";
  // Roughly standardised (constants from adult.data's means and spreads).
  c.dense_transform["age"] = [](float x) { return (x - 38.6f) / 13.6f; };
  c.dense_transform["log_fnlwgt"] = [](float x) { return std::log(std::max(x, 1.0f)) - 11.98f; };
  c.dense_transform["education_num"] = [](float x) { return (x - 10.1f) / 2.6f; };
  c.dense_transform["log_capital_gain"] = [](float x) { return std::log1p(std::max(x, 0.0f)) / 4.0f; };
  c.dense_transform["log_capital_loss"] = [](float x) { return std::log1p(std::max(x, 0.0f)) / 4.0f; };
  c.dense_transform["hours_per_week"] = [](float x) { return (x - 40.4f) / 12.3f; };
  s.tasks = {{"income"}, {"never_married"}};
  c.labels = {{.task = "income", .column = "income", .transform = one_of({">50K", ">50K."}, {"<=50K", "<=50K."})},
              {.task = "never_married", .column = "marital-status", .transform = [](std::string_view v) {
                 return v.empty() || v == "?" ? kNaN : (v == "Never-married" ? 1.0f : 0.0f);
               }}};
  return read_csv(file, s, c);
}

// ---------------------------------------------------------------------------------------------
// Census-Income (KDD)

namespace {

const std::vector<std::string>& census_columns() {
  static const std::vector<std::string> cols = {
      "age", "class of worker", "industry code", "occupation code", "education", "wage per hour",
      "enrolled in edu inst last wk", "marital status", "major industry code", "major occupation code", "race",
      "hispanic origin", "sex", "member of a labor union", "reason for unemployment",
      "full or part time employment stat", "capital gains", "capital losses", "divdends from stocks",
      "tax filer status", "region of previous residence", "state of previous residence",
      "detailed household and family stat", "detailed household summary in household", "instance weight",
      "migration code-change in msa", "migration code-change in reg", "migration code-move within reg",
      "live in this house 1 year ago", "migration prev res in sunbelt", "num persons worked for employer",
      "family members under 18", "country of birth father", "country of birth mother", "country of birth self",
      "citizenship", "own business or self employed", "fill inc questionnaire for veterans admin",
      "veterans benefits", "weeks worked in year", "year", "income"};
  return cols;
}

const std::vector<std::string>& census_continuous() {
  static const std::vector<std::string> cols = {"age",          "wage per hour",  "capital gains",
                                                "capital losses", "divdends from stocks",
                                                "num persons worked for employer", "weeks worked in year"};
  return cols;
}

bool is_census_categorical(const std::string& c) {
  const auto& cont = census_continuous();
  return std::find(cont.begin(), cont.end(), c) == cont.end() && c != "instance weight" && c != "income" &&
         c != "marital status";
}

}  // namespace

Dataset read_census_income_raw(const std::filesystem::path& file, const TabularReaderOptions& o) {
  CsvOptions c;
  c.header = false;
  c.column_names = {"row"};
  for (const auto& n : census_columns()) c.column_names.push_back(n);
  c.missing_values = {""};  // '?' is a category of its own in this data
  FeatureSchema s;
  for (const auto& n : census_columns())
    if (is_census_categorical(n)) {
      s.sparse.push_back({.name = snake(n), .vocab = o.hash_vocab, .dim = o.dim, .hash = true});
      c.columns[snake(n)] = n;
    }
  for (const auto& n : census_continuous()) {
    s.dense.push_back({snake(n)});
    c.columns[snake(n)] = n;
  }
  c.dense_transform["age"] = [](float x) { return x / 100.0f; };
  for (const char* money : {"wage per hour", "capital gains", "capital losses", "divdends from stocks"})
    c.dense_transform[snake(money)] = [](float x) { return std::log1p(std::max(x, 0.0f)) / 10.0f; };
  c.dense_transform["num_persons_worked_for_employer"] = [](float x) { return x / 6.0f; };
  c.dense_transform["weeks_worked_in_year"] = [](float x) { return x / 52.0f; };
  s.tasks = {{"income"}, {"never_married"}};
  c.labels = {{.task = "income", .column = "income", .transform = one_of({"50000+."}, {"- 50000."})},
              {.task = "never_married", .column = "marital status",
               .transform = [](std::string_view v) { return v.empty() ? kNaN : (v == "Never married" ? 1.0f : 0.0f); }}};
  return read_csv(file, s, c);
}

Dataset read_census_income_rechub(const std::filesystem::path& file, const TabularReaderOptions& o) {
  CsvOptions c;  // header row with the column names
  FeatureSchema s;
  for (const auto& n : census_columns())
    if (is_census_categorical(n)) {
      // Label-encoded: every column of the full data has fewer than 64 categories.
      s.sparse.push_back({.name = snake(n), .vocab = 64, .dim = o.dim, .hash = false});
      c.columns[snake(n)] = n;
    }
  for (const auto& n : census_continuous()) {
    s.dense.push_back({snake(n)});
    c.columns[snake(n)] = n;
  }
  s.tasks = {{"income"}, {"never_married"}};
  c.labels = {{.task = "income", .column = "income", .transform = {}},
              {.task = "never_married", .column = "marital status", .transform = {}}};
  return read_csv(file, s, c);
}

// ---------------------------------------------------------------------------------------------
// Ali-CCP, Criteo

Dataset read_ali_ccp(const std::filesystem::path& file, const TabularReaderOptions& o) {
  CsvOptions c;
  FeatureSchema s;
  for (const char* f : {"101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216",
                        "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14"}) {
    s.sparse.push_back({.name = std::string("f") + f, .vocab = o.hash_vocab, .dim = o.dim, .hash = true});
    c.columns[std::string("f") + f] = f;
    c.id_parse[std::string("f") + f] = IdParse::integer;  // raw id = the integer index (0 = missing)
  }
  for (const char* f : {"D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"}) s.dense.push_back({f});
  s.tasks = {{"click"}, {"purchase"}};
  c.user_column = "101";
  Dataset d = read_csv(file, s, c);
  for (Index r = 0; r < d.rows; ++r)
    if (d.labels[r * 2 + 1] > d.labels[r * 2])
      fail(file.string(), ": data row ", r + 1, ": purchase = 1 without a click (ESMM data requires purchase <= click)");
  return d;
}

Dataset read_criteo(const std::filesystem::path& file, const TabularReaderOptions& o) {
  CsvOptions c;
  FeatureSchema s;
  for (int k = 1; k <= 13; ++k) {
    const std::string n = "I" + std::to_string(k);
    s.dense.push_back({n});
    c.dense_transform[n] = signed_log1p;
  }
  for (int k = 1; k <= 26; ++k) s.sparse.push_back({.name = "C" + std::to_string(k), .vocab = o.hash_vocab, .dim = o.dim, .hash = true});
  s.tasks = {{"click"}};
  c.labels = {{.task = "click", .column = "label", .transform = {}}};
  c.dense_missing = MissingPolicy::fill;
  c.dense_fill = 0.0f;
  return read_csv(file, s, c);
}

// ---------------------------------------------------------------------------------------------
// MovieLens-100K

namespace {

struct Rating {
  std::int32_t user, item, rating;
  std::int64_t time;
};

// Splits `text` into lines of exactly `fields` fields separated by `delim`; fn(line_no, fields).
template <class Fn>
void read_delimited(const std::string& text, const std::string& source, char delim, std::size_t fields, Fn&& fn) {
  std::vector<std::string_view> parts;
  detail::for_each_line(text, [&](std::int64_t line, std::string_view l) {
    if (detail::trim(l).empty()) return;
    detail::split(l, delim, parts);
    if (parts.size() != fields)
      fail(source, ":", line, ": expected ", fields, " '", delim == '\t' ? std::string("\\t") : std::string(1, delim),
           "'-separated fields, got ", parts.size());
    fn(line, parts);
  });
}

std::int64_t int_field(std::string_view v, const std::string& source, std::int64_t line, const char* what, std::int64_t lo,
                       std::int64_t hi) {
  std::int64_t x = 0;
  if (!detail::parse_int(v, x)) fail(source, ":", line, ": ", what, ": cannot parse '", v, "' as an integer");
  if (x < lo || x > hi) fail(source, ":", line, ": ", what, " ", x, " not in [", lo, ", ", hi, "]");
  return x;
}

}  // namespace

TrainTest read_movielens_100k(const std::filesystem::path& dir, const MovieLensOptions& o) {
  require(o.test_per_user >= 0, "read_movielens_100k: test_per_user must be >= 0");
  require(o.max_seq_len > 0, "read_movielens_100k: max_seq_len must be > 0");
  // Occupations.
  std::map<std::string, int> occupation;
  {
    const auto path = dir / "u.occupation";
    const std::string text = read_text_file(path);
    detail::for_each_line(text, [&](std::int64_t, std::string_view l) {
      l = detail::trim(l);
      if (!l.empty()) occupation.emplace(std::string(l), static_cast<int>(occupation.size()));
    });
    require(!occupation.empty(), path.string(), ": no occupations");
  }
  // Users: id | age | gender | occupation | zip.
  struct User {
    int age = -1, gender = 0, occupation = 0;
  };
  std::vector<User> users(1);
  {
    const auto path = dir / "u.user";
    const std::string src = path.string();
    read_delimited(read_text_file(path), src, '|', 5, [&](std::int64_t line, const std::vector<std::string_view>& f) {
      // Ids index the user and item tables: at most 2^20 (MovieLens-100K has 943 users and 1682
      // movies; 2^30 made a 40-byte line allocate 12 GB).
      const auto id = int_field(f[0], src, line, "user_id", 1, 1 << 20);
      if (id >= static_cast<std::int64_t>(users.size())) users.resize(static_cast<std::size_t>(id + 1));
      User& u = users[static_cast<std::size_t>(id)];
      u.age = static_cast<int>(int_field(f[1], src, line, "age", 0, 150));
      if (f[2] == "M") u.gender = 0;
      else if (f[2] == "F") u.gender = 1;
      else fail(src, ":", line, ": gender: expected M or F, got '", f[2], "'");
      auto it = occupation.find(std::string(detail::trim(f[3])));
      if (it == occupation.end()) fail(src, ":", line, ": occupation '", f[3], "' is not listed in u.occupation");
      u.occupation = it->second;
    });
  }
  // Items: id | title | release date | video date | url | 19 genre flags.
  struct Item {
    int genre = 0;
    float year = 0;  // (release year - 1990) / 10, 0 when unknown
  };
  std::vector<Item> items(1);
  {
    const auto path = dir / "u.item";
    const std::string src = path.string();
    read_delimited(read_text_file(path), src, '|', 24, [&](std::int64_t line, const std::vector<std::string_view>& f) {
      const auto id = int_field(f[0], src, line, "movie_id", 1, 1 << 20);  // (see user_id)
      if (id >= static_cast<std::int64_t>(items.size())) items.resize(static_cast<std::size_t>(id + 1));
      Item& it = items[static_cast<std::size_t>(id)];
      for (int g = 0; g < 19; ++g)
        if (int_field(f[5 + g], src, line, "genre flag", 0, 1) == 1) {
          it.genre = g;
          break;
        }
      const auto date = detail::trim(f[2]);  // dd-Mon-yyyy
      std::int64_t year = 0;
      if (date.size() >= 4 && detail::parse_int(date.substr(date.size() - 4), year)) it.year = (float(year) - 1990.0f) / 10.0f;
    });
  }
  // Ratings.
  std::vector<Rating> ratings;
  {
    const auto path = dir / "u.data";
    const std::string src = path.string();
    ratings.reserve(100000);
    read_delimited(read_text_file(path), src, '\t', 4, [&](std::int64_t line, const std::vector<std::string_view>& f) {
      Rating r;
      r.user = static_cast<std::int32_t>(int_field(f[0], src, line, "user_id", 1, static_cast<std::int64_t>(users.size()) - 1));
      r.item = static_cast<std::int32_t>(int_field(f[1], src, line, "item_id", 1, static_cast<std::int64_t>(items.size()) - 1));
      r.rating = static_cast<std::int32_t>(int_field(f[2], src, line, "rating", 1, 5));
      r.time = int_field(f[3], src, line, "timestamp", 0, std::numeric_limits<std::int64_t>::max());
      if (users[r.user].age < 0) fail(src, ":", line, ": user ", r.user, " is not in u.user");
      ratings.push_back(r);
    });
  }
  std::stable_sort(ratings.begin(), ratings.end(), [](const Rating& a, const Rating& b) {
    return a.user != b.user ? a.user < b.user : (a.time != b.time ? a.time < b.time : a.item < b.item);
  });
  const Index N = static_cast<Index>(ratings.size());
  // Split: each user's last test_per_user ratings (all of them go to test if fewer).
  std::vector<std::uint8_t> is_test(static_cast<std::size_t>(N), 0);
  for (Index b = 0; b < N;) {
    Index e = b;
    while (e < N && ratings[e].user == ratings[b].user) ++e;
    for (Index r = std::max(b, e - o.test_per_user); r < e; ++r) is_test[r] = 1;
    b = e;
  }
  // Item popularity from the training part only.
  std::vector<Index> pop(items.size(), 0);
  for (Index r = 0; r < N; ++r)
    if (!is_test[r]) ++pop[ratings[r].item];

  FeatureSchema s;
  const auto user = FieldSide::user, item = FieldSide::item;
  s.sparse = {{.name = "user_id", .vocab = static_cast<Index>(users.size()), .dim = o.dim, .hash = false, .side = user},
              {.name = "item_id", .vocab = static_cast<Index>(items.size()), .dim = o.dim, .hash = false, .side = item},
              {.name = "gender", .vocab = 2, .dim = o.dim, .hash = false, .side = user},
              {.name = "age_bucket", .vocab = 7, .dim = o.dim, .hash = false, .side = user},
              {.name = "occupation", .vocab = static_cast<Index>(occupation.size()), .dim = o.dim, .hash = false, .side = user},
              {.name = "genre", .vocab = 19, .dim = o.dim, .hash = false, .side = item}};
  s.dense = {{"user_age", user}, {"release_year", item}, {"log_item_pop", item}, {"log_hist_len", user}};
  s.sequences = {{.name = "hist_items", .vocab = 0, .dim = o.dim, .max_len = o.max_seq_len, .table = "item_id", .hash = false},
                 {.name = "hist_genres", .vocab = 0, .dim = o.dim, .max_len = o.max_seq_len, .table = "genre", .hash = false}};
  s.tasks = {{"like", TaskKind::binary}};
  if (o.rating_task) s.tasks.push_back({"rating", TaskKind::regression});
  const Index K = s.num_tasks(), NS = 6, ND = 4;

  auto age_bucket = [](int a) { return a < 18 ? 0 : a < 25 ? 1 : a < 35 ? 2 : a < 45 ? 3 : a < 50 ? 4 : a < 56 ? 5 : 6; };
  TrainTest out;
  Dataset* parts[2] = {&out.train, &out.test};
  Index counts[2] = {0, 0};
  for (Index r = 0; r < N; ++r) ++counts[is_test[r]];
  for (int p = 0; p < 2; ++p) {
    Dataset& d = *parts[p];
    d.schema = s;
    d.rows = counts[p];
    d.dense.resize(Shape{d.rows, ND});
    d.sparse.resize(static_cast<std::size_t>(d.rows * NS));
    d.labels.resize(Shape{d.rows, K});
    d.label_mask.resize(Shape{d.rows, K});
    d.label_mask.fill(1.0f);
    d.user.resize(static_cast<std::size_t>(d.rows));
    d.sequences.assign(2, SequenceColumn{});
  }
  Index next[2] = {0, 0};
  Index user_begin = 0;
  for (Index r = 0; r < N; ++r) {
    const Rating& x = ratings[r];
    if (r > 0 && ratings[r - 1].user != x.user) user_begin = r;
    const int p = is_test[r];
    Dataset& d = *parts[p];
    const Index row = next[p]++;
    const User& u = users[x.user];
    const Item& it = items[x.item];
    std::int64_t* sp = &d.sparse[static_cast<std::size_t>(row * NS)];
    sp[0] = x.user;
    sp[1] = x.item;
    sp[2] = u.gender;
    sp[3] = age_bucket(u.age);
    sp[4] = u.occupation;
    sp[5] = it.genre;
    const Index hist = r - user_begin;
    float* dn = d.dense.data() + row * ND;
    dn[0] = float(u.age) / 50.0f;
    dn[1] = it.year;
    dn[2] = std::log1p(float(pop[x.item])) / 6.0f;
    dn[3] = std::log1p(float(hist)) / 5.0f;
    d.labels[row * K] = x.rating >= o.positive_rating ? 1.0f : 0.0f;
    if (o.rating_task) d.labels[row * K + 1] = float(x.rating);
    d.user[row] = x.user;
    const Index from = std::max(user_begin, r - o.max_seq_len);
    for (int q = 0; q < 2; ++q) {
      auto& col = d.sequences[q];
      for (Index j = from; j < r; ++j) {
        col.ids.push_back(q == 0 ? ratings[j].item : items[ratings[j].item].genre);
        col.times.push_back(float(x.time - ratings[j].time) / 86400.0f);
      }
      col.offsets.push_back(static_cast<std::int64_t>(col.ids.size()));
    }
  }
  out.train.validate();
  out.test.validate();
  return out;
}

// ---------------------------------------------------------------------------------------------
// SASRec-style sequences

TrainValidTest read_sasrec_sequences(const std::filesystem::path& file, const SequenceReaderOptions& o) {
  require(o.train_negatives >= 0 && o.eval_negatives >= 0, "read_sasrec_sequences: negatives must be >= 0");
  require(o.max_seq_len > 0, "read_sasrec_sequences: max_seq_len must be > 0");
  const std::string src = file.string();
  const std::string text = read_text_file(file);
  std::vector<std::int64_t> user_of, item_of;  // events in file order
  std::vector<std::int64_t> first_line;
  std::int64_t max_user = 0, max_item = 0;
  {
    std::vector<std::string_view> parts;
    std::unordered_set<std::int64_t> finished;
    std::int64_t current = -1;
    detail::for_each_line(text, [&](std::int64_t line, std::string_view l) {
      if (detail::trim(l).empty()) return;
      detail::split(detail::trim(l), ' ', parts);
      if (parts.size() != 2) fail(src, ":", line, ": expected 2 space-separated fields (user item), got ", parts.size());
      const auto u = int_field(parts[0], src, line, "user_id", 1, std::int64_t{1} << 40);
      const auto i = int_field(parts[1], src, line, "item_id", 1, std::int64_t{1} << 40);
      if (u != current) {
        if (finished.count(u)) fail(src, ":", line, ": user ", u, " appears again after other users (lines must be grouped by user)");
        if (current >= 0) finished.insert(current);
        current = u;
      }
      user_of.push_back(u);
      item_of.push_back(i);
      max_user = std::max(max_user, u);
      max_item = std::max(max_item, i);
    });
  }
  require(!user_of.empty(), src, ": no events");

  FeatureSchema s;
  s.sparse = {{.name = "user_id", .vocab = max_user + 1, .dim = o.dim, .hash = false, .side = FieldSide::user},
              {.name = "item_id", .vocab = max_item + 1, .dim = o.dim, .hash = false, .side = FieldSide::item}};
  s.dense = {{"log_hist_len", FieldSide::user}};
  s.sequences = {{.name = "hist_items", .vocab = 0, .dim = o.dim, .max_len = o.max_seq_len, .table = "item_id", .hash = false}};
  s.tasks = {{"interact", TaskKind::binary}};

  TrainValidTest out;
  Dataset* parts[3] = {&out.train, &out.valid, &out.test};
  std::vector<float> dense[3], labels[3];
  for (auto* d : parts) {
    d->schema = s;
    d->sequences.assign(1, SequenceColumn{});
  }
  Rng rng(o.seed);
  std::unordered_set<std::int64_t> seen;
  auto emit = [&](int part, std::int64_t user, std::int64_t item, const std::int64_t* hist, Index len, float label) {
    Dataset& d = *parts[part];
    d.sparse.push_back(user);
    d.sparse.push_back(item);
    d.user.push_back(user);
    dense[part].push_back(std::log1p(float(len)) / 4.0f);
    labels[part].push_back(label);
    auto& col = d.sequences[0];
    const Index from = std::max<Index>(0, len - o.max_seq_len);
    col.ids.insert(col.ids.end(), hist + from, hist + len);
    col.offsets.push_back(static_cast<std::int64_t>(col.ids.size()));
    ++d.rows;
  };
  const Index E = static_cast<Index>(user_of.size());
  Index users_done = 0;
  for (Index b = 0; b < E;) {
    Index e = b;
    while (e < E && user_of[e] == user_of[b]) ++e;
    if (o.max_users > 0 && users_done >= o.max_users) break;
    ++users_done;
    const std::int64_t u = user_of[b];
    const Index n = e - b;
    const std::int64_t* seq = item_of.data() + b;
    seen.clear();
    seen.insert(seq, seq + n);
    if (static_cast<std::int64_t>(seen.size()) >= max_item)
      fail(src, ": user ", u, " interacted with every item; cannot sample negatives");
    for (Index t = 0; t < n; ++t) {
      const int part = n < 3 ? 0 : (t < n - 2 ? 0 : (t == n - 2 ? 1 : 2));
      emit(part, u, seq[t], seq, t, 1.0f);
      const Index negs = part == 0 ? o.train_negatives : o.eval_negatives;
      for (Index k = 0; k < negs; ++k) {
        std::int64_t neg;
        do neg = 1 + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(max_item)));
        while (seen.count(neg));
        emit(part, u, neg, seq, t, 0.0f);
      }
    }
    b = e;
  }
  for (int p = 0; p < 3; ++p) {
    Dataset& d = *parts[p];
    d.dense.resize(Shape{d.rows, 1});
    std::copy(dense[p].begin(), dense[p].end(), d.dense.data());
    d.labels.resize(Shape{d.rows, 1});
    std::copy(labels[p].begin(), labels[p].end(), d.labels.data());
    d.label_mask.resize(Shape{d.rows, 1});
    d.label_mask.fill(1.0f);
    d.validate();
  }
  return out;
}

}  // namespace mtrank::data
