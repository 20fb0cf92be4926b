#include <cmath>
#include <fstream>

#include "mtrank/data/csv.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::data;

namespace {

FeatureSchema small_schema() {
  FeatureSchema s;
  s.sparse = {{.name = "city", .vocab = 64, .dim = 4, .hash = true}, {.name = "slot", .vocab = 5, .dim = 4}};
  s.dense = {{"age"}, {"score"}};
  s.tasks = {{"click"}, {"rich"}};
  return s;
}

CsvOptions small_options() {
  CsvOptions o;
  o.labels = {{.task = "click", .column = "clicked", .transform = {}},
              {.task = "rich", .column = "income", .transform = [](std::string_view v) { return v == ">50K" ? 1.0f : 0.0f; }}};
  return o;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("csv: quoted fields, CRLF, blank lines and labels", "[data][csv]") {
  const std::string text =
      "city,slot,age,score,clicked,income\r\n"
      "\"New York, NY\",1,30,0.5,1,>50K\r\n"
      "Paris , 4, 41.5 ,-2e-1,0,<=50K\r\n"
      "\"say \"\"hi\"\"\",0,+7,3,1,<=50K\r\n"
      "\r\n"
      "\n";
  Dataset d = parse_csv(text, "mem.csv", small_schema(), small_options());
  REQUIRE(d.rows == 3);
  CHECK(d.sparse[0] == hash_string("New York, NY"));
  CHECK(d.sparse[1] == 1);
  CHECK(d.sparse[2] == hash_string("Paris"));
  CHECK(d.sparse[3] == 4);
  CHECK(d.sparse[4] == hash_string("say \"hi\""));
  CHECK(d.dense[2] == Approx(41.5f));
  CHECK(d.dense[3] == Approx(-0.2f));
  CHECK(d.dense[4] == Approx(7.0f));
  CHECK(d.labels[0] == 1.0f);
  CHECK(d.labels[1] == 1.0f);
  CHECK(d.labels[3] == 0.0f);
  CHECK(d.labels[5] == 0.0f);
  CHECK(d.user == std::vector<std::int64_t>{0, 1, 2});
}

TEST_CASE("csv: header-less TSV with column indices, transforms, missing fill", "[data][csv]") {
  FeatureSchema s;
  s.sparse = {{.name = "c", .vocab = 100, .dim = 4, .hash = true}};
  s.dense = {{"x"}};
  s.sequences = {{.name = "hist", .vocab = 10, .dim = 4, .max_len = 2, .table = "", .hash = false}};
  s.tasks = {{.name = "y", .kind = TaskKind::regression}};
  CsvOptions o;
  o.delimiter = '\t';
  o.header = false;
  o.columns = {{"c", "#0"}, {"x", "#1"}, {"hist", "#2"}};
  o.labels = {{.task = "y", .column = "#3", .transform = {}}};
  o.dense_missing = MissingPolicy::fill;
  o.dense_fill = -1.0f;
  o.dense_transform["x"] = [](float v) { return std::log1p(v); };
  o.user_column = "#4";
  const std::string text = "a\t0\t1|2|3\t0.5\t17\nb\t\t\t1.5\tbob";  // no final newline
  Dataset d = parse_csv(text, "mem.tsv", s, o);
  REQUIRE(d.rows == 2);
  CHECK(d.dense[0] == Approx(0.0f));
  CHECK(d.dense[1] == -1.0f);
  CHECK(d.sequences[0].ids == std::vector<std::int64_t>{2, 3});  // most recent max_len = 2 kept
  CHECK(d.sequences[0].offsets == std::vector<std::int64_t>{0, 2, 2});
  CHECK(d.labels[1] == Approx(1.5f));
  CHECK(d.user[0] == 17);
  CHECK(d.user[1] == hash_string("bob"));
}

TEST_CASE("csv: errors name file, line and column", "[data][csv]") {
  const auto s = small_schema();
  const auto o = small_options();
  const std::string head = "city,slot,age,score,clicked,income\n";
  auto msg = message_of([&] { parse_csv(head + "a,1,30,0.5,1,>50K\nb,1,30,0.5,1\n", "f.csv", s, o); });
  CHECK(msg.find("f.csv:3") != std::string::npos);
  CHECK(msg.find("expected 6 columns, got 5") != std::string::npos);

  msg = message_of([&] { parse_csv(head + "a,1,thirty,0.5,1,>50K\n", "f.csv", s, o); });
  CHECK(msg.find("f.csv:2") != std::string::npos);
  CHECK(msg.find("column 'age' (#2)") != std::string::npos);
  CHECK(msg.find("'thirty'") != std::string::npos);

  msg = message_of([&] { parse_csv(head + "a,1,nan,0.5,1,>50K\n", "f.csv", s, o); });
  CHECK(msg.find("non-finite") != std::string::npos);
  msg = message_of([&] { parse_csv(head + "a,1,inf,0.5,1,>50K\n", "f.csv", s, o); });
  CHECK(msg.find("non-finite") != std::string::npos);
  msg = message_of([&] { parse_csv(head + "a,1,,0.5,1,>50K\n", "f.csv", s, o); });
  CHECK(msg.find("missing value for dense field 'age'") != std::string::npos);

  msg = message_of([&] { parse_csv(head + "a,5,3,0.5,1,>50K\n", "f.csv", s, o); });  // slot vocab 5
  CHECK(msg.find("id 5 of field 'slot' not in [0, 5)") != std::string::npos);
  msg = message_of([&] { parse_csv(head + "a,1,3,0.5,2,>50K\n", "f.csv", s, o); });
  CHECK(msg.find("binary task 'click'") != std::string::npos);
  msg = message_of([&] { parse_csv(head + "\"a,1,3,0.5,1,>50K\n", "f.csv", s, o); });
  CHECK(msg.find("f.csv:2: unterminated quoted field") != std::string::npos);

  auto o2 = o;
  o2.columns["age"] = "years";
  msg = message_of([&] { parse_csv(head + "a,1,3,0.5,1,>50K\n", "f.csv", s, o2); });
  CHECK(msg.find("dense field 'age': no column named 'years'") != std::string::npos);

  msg = message_of([&] { read_csv("/nonexistent/x.csv", s, o); });
  CHECK(msg.find("cannot open '/nonexistent/x.csv'") != std::string::npos);
}

TEST_CASE("csv: read_csv from a file, comment lines, max_rows, missing labels masked", "[data][csv]") {
  auto dir = testing::temp_dir("csv");
  const auto path = dir / "t.csv";
  {
    std::ofstream f(path);
    f << "# comment\ncity,slot,age,score,clicked,income\nx,0,1,2,1,>50K\n# another\ny,1,1,2,?,<=50K\nz,1,1,2,0,<=50K\n";
  }
  auto s = small_schema();
  auto o = small_options();
  o.comment_prefix = "#";
  o.missing_values = {"", "?"};
  o.label_missing = MissingPolicy::fill;
  Dataset d = read_csv(path, s, o);
  REQUIRE(d.rows == 3);
  CHECK(d.label_mask[2] == 0.0f);  // row 1, task click
  CHECK(d.label_mask[3] == 1.0f);
  o.max_rows = 2;
  CHECK(read_csv(path, s, o).rows == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("CSV: a UTF-8 byte-order mark before the header is not part of the first column name") {
  FeatureSchema s;
  s.sparse = {{.name = "item", .vocab = 10, .dim = 2}};
  s.tasks = {{"click"}};
  const Dataset d = parse_csv("\xEF\xBB\xBFitem,click\n3,1\n", "bom.csv", s);
  REQUIRE(d.rows == 1);
  CHECK(d.sparse[0] == 3);
}
