// The request path carries everything a model reads, with the training path's meaning: one id
// rule (804 and "804" are one id, in the CSV reader and in requests), out-of-vocabulary rows,
// scenes (per request and per candidate), behaviour times, and a layout that follows the
// schema's field sides.
#include <cmath>

#include "mtrank/data/csv.hpp"
#include "mtrank/serve/request.hpp"
#include "model_types.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

void require_equal(ConstMat a, ConstMat b) {
  REQUIRE(a.rows == b.rows);
  REQUIRE(a.cols == b.cols);
  for (Index r = 0; r < a.rows; ++r)
    for (Index c = 0; c < a.cols; ++c) REQUIRE(a(r, c) == b(r, c));
}

Tensor copy_of(ConstMat m) {
  Tensor t(Shape{m.rows, m.cols});
  copy(m, t.matrix());
  return t;
}

/// Rows [first, first + n) of the feed with the user side of row `first` (model_types.hpp),
/// with or without the behaviour times.
data::Batch user_batch(const data::Dataset& d, const serve::Predictor& p, Index first, Index n,
                       std::vector<std::int32_t> scenes, bool times) {
  std::vector<Index> rows(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = first + i;
  data::Batch b = mtrank::testing::user_side_batch(d, p.serving().layout, first, rows, scenes);
  if (!times)
    for (auto& col : b.sequences) col.times.clear();
  return b;
}

serve::Request user_request(const data::Dataset& d, const serve::Predictor& p, Index first, Index n, bool times) {
  std::vector<Index> rows(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) rows[static_cast<std::size_t>(i)] = first + i;
  serve::Request r = mtrank::testing::rows_request(d, p.serving().layout, first, rows, 0, {});
  if (!times)
    for (auto& t : r.sequence_times) t.clear();
  return r;
}

/// A bigger feed with longer histories (for the sequence models).
const data::Dataset& seq_feed() {
  static const data::Dataset d = [] {
    data::FeedSimulatorOptions o;
    o.users = 80;
    o.items = 300;
    o.categories = 12;
    o.authors = 20;
    o.impressions = 4000;
    o.max_seq_len = 12;
    o.seed = 9;
    return data::make_feed_dataset(o);
  }();
  return d;
}

json with_schema(const data::FeatureSchema& s, json model) {
  return {{"schema", json(s)}, {"model", std::move(model)}, {"seed", 5}};
}

}  // namespace

TEST_CASE("ids: an integer and its decimal text are one id", "[serve][ids]") {
  std::int64_t v = 0;
  CHECK((data::canonical_integer_id("804", v) && v == 804));
  CHECK((data::canonical_integer_id("0", v) && v == 0));
  CHECK((data::canonical_integer_id("-3", v) && v == -3));
  CHECK((data::canonical_integer_id("9223372036854775807", v) && v == INT64_MAX));
  CHECK((data::canonical_integer_id("-9223372036854775808", v) && v == INT64_MIN));
  for (const char* t : {"", "-", "-0", "0804", "+8", " 8", "8 ", "9223372036854775808", "1e3", "0x10", "12a"}) {
    CAPTURE(t);
    CHECK_FALSE(data::canonical_integer_id(t, v));
    CHECK(data::id_from_text(t) == data::hash_string(t));
  }
  CHECK(data::id_from_text("804") == 804);
  CHECK(data::id_from_text("abc") == data::hash_string("abc"));

  // The CSV reader and the request parser make the same raw id of the same cell / value.
  data::FeatureSchema s;
  s.sparse = {{.name = "city", .vocab = 97, .dim = 2, .hash = true, .side = data::FieldSide::user},
              {.name = "item", .vocab = 10, .dim = 2, .hash = false, .side = data::FieldSide::item}};
  s.tasks = {{"click"}};
  const data::Dataset d = data::parse_csv("city,item,click\n804,3,1\nParis,4,0\n", "t.csv", s);
  CHECK(d.sparse[0] == 804);
  CHECK(d.sparse[2] == data::hash_string("Paris"));

  serve::Predictor p(models::build_model(with_schema(s, json::parse(R"({"type": "dnn", "tower": {"hidden": [4]}})"))));
  serve::Request r;
  serve::RequestEcho echo;
  for (const char* body : {R"({"city": 804, "candidates": [{"item": 3}]})", R"({"city": "804", "candidates": [{"item": "3"}]})"}) {
    serve::parse_request(body, p.schema(), p.serving(), r, echo);
    CHECK(r.user_sparse == std::vector<std::int64_t>{804});
    CHECK(r.cand_sparse == std::vector<std::int64_t>{3});
  }
  // Same row, same score: the CSV row and the integer request.
  serve::parse_request(R"({"city": 804, "candidates": [{"item": 3}]})", p.schema(), p.serving(), r, echo);
  const float from_request = p.score(r).probs(0, 0);
  data::Batch b;
  d.slice(0, 1, b);
  CHECK(p.score(b).probs(0, 0) == from_request);
  // A vocabulary field takes integers or their decimal text only.
  CHECK_THROWS_WITH(serve::parse_request(R"({"city": 1, "candidates": [{"item": "03"}]})", p.schema(), p.serving(), r, echo),
                    Contains("request.candidates[0].item: expected an integer id (or its decimal text)"));
}

TEST_CASE("ids: out-of-vocabulary ids go to the field's oov_row, or are an error naming the field, id and vocabulary", "[serve][ids]") {
  data::FeatureSchema s;
  s.sparse = {{.name = "user", .vocab = 8, .dim = 3, .side = data::FieldSide::user, .oov_row = 0},
              {.name = "item", .vocab = 10, .dim = 3, .side = data::FieldSide::item}};
  s.sequences = {{.name = "hist", .dim = 3, .max_len = 4, .table = "user"}};
  s.tasks = {{"click"}};
  auto model = models::build_model(with_schema(s, json::parse(R"({"type": "dnn", "tower": {"hidden": [4]}, "embedding_init_std": 0.5})")));
  serve::Predictor p(std::move(model));
  serve::Request r;
  serve::RequestEcho echo;
  serve::parse_request(R"({"user": 12345, "hist": [99, 1], "candidates": [{"item": 2}]})", p.schema(), p.serving(), r, echo);
  const float unseen = p.score(r).probs(0, 0);
  serve::parse_request(R"({"user": 0, "hist": [0, 1], "candidates": [{"item": 2}]})", p.schema(), p.serving(), r, echo);
  CHECK(p.score(r).probs(0, 0) == unseen);  // 12345 and 99 both read row 0
  serve::parse_request(R"({"user": 3, "hist": [0, 1], "candidates": [{"item": 2}]})", p.schema(), p.serving(), r, echo);
  CHECK(p.score(r).probs(0, 0) != unseen);
  CHECK_THROWS_WITH(serve::parse_request(R"({"user": 1, "hist": [], "candidates": [{"item": 10}]})", p.schema(), p.serving(), r, echo),
                    Contains("request.candidates[0].item: id 10 out of range [0, 10) for field 'item' (vocabulary size 10, no oov_row)"));
  // The CSV reader accepts the unseen id of an oov field and still range-checks the others.
  CHECK(data::parse_csv("user,item,hist,click\n12345,2,99|1,1\n", "t.csv", s).sparse[0] == 12345);
  CHECK_THROWS_WITH(data::parse_csv("user,item,hist,click\n1,10,,1\n", "t.csv", s), Contains("id 10 of field 'item' not in [0, 10)"));
  // Schema validation of oov_row.
  data::FeatureSchema bad = s;
  bad.sparse[0].oov_row = 8;
  CHECK_THROWS_WITH(bad.validate(), Contains("schema.sparse[0].oov_row: expected -1 (none) or a row in [0, 8)"));
  bad = s;
  bad.sparse[1].hash = true;
  bad.sparse[1].oov_row = 1;
  CHECK_THROWS_WITH(bad.validate(), Contains("schema.sparse[1].oov_row: a hashed field"));
  json j = s;
  CHECK(j["sparse"][0]["oov_row"] == 0);
  CHECK(j["sparse"][0]["side"] == "user");
  data::FeatureSchema back = j.get<data::FeatureSchema>();
  CHECK(back.sparse[0].oov_row == 0);
  CHECK(back.sparse[1].side == data::FieldSide::item);
}

TEST_CASE("serve: the request layout follows the schema's sides", "[serve][layout]") {
  const auto& d = mtrank::testing::feed();
  json cfg = mtrank::testing::feed_config();
  cfg.erase("serving");
  serve::Predictor from_sides(models::build_model(cfg));
  CHECK(from_sides.serving().layout_error.empty());
  CHECK(from_sides.serving().candidate_fields ==
        std::vector<std::string>{"item_id", "category", "author", "log_item_pop", "item_age"});
  // candidate_fields must agree with the declared sides.
  auto serving_error = [&](json serving) {
    try {
      serve::Predictor p(models::build_model(cfg), {.serving = serving});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(serving_error(json{{"candidate_fields", {"item_id", "category", "author", "log_item_pop"}}}),
             Contains("'item_age' is declared side \"item\" in the schema but is not listed"));
  CHECK_THAT(serving_error(json{{"candidate_fields", {"item_id", "category", "author", "log_item_pop", "item_age", "hour_sin"}}}),
             Contains("'hour_sin' is declared side \"context\" in the schema, but candidate fields are item-side"));
  // No sides and no candidate_fields: batches score, requests are refused naming the fields.
  data::FeatureSchema plain = d.schema;
  for (auto& f : plain.sparse) f.side = data::FieldSide::unspecified;
  plain.dense[1].side = data::FieldSide::unspecified;
  json pc = cfg;
  pc["schema"] = plain;
  serve::Predictor p(models::build_model(pc));
  CHECK_THAT(p.serving().layout_error, Contains("fields user_id, item_id, category, author, scene, user_activity declare no side"));
  data::Batch b;
  d.slice(0, 4, b);
  CHECK(p.score(b).probs.rows == 4);
  serve::Request r;
  serve::RequestEcho echo;
  CHECK_THROWS_WITH(p.score(r), Contains("declare no side"));
  CHECK_THROWS_WITH(serve::parse_request("{}", p.schema(), p.serving(), r, echo), Contains("declare no side"));
  CHECK_THAT(p.metadata().dump(), Contains("layout_error"));
  // A field named like a reserved request key.
  data::FeatureSchema reserved = d.schema;
  reserved.sparse[4].name = "scene_id";
  pc["schema"] = reserved;
  serve::Predictor q(models::build_model(pc));
  CHECK_THAT(q.serving().layout_error, Contains("schema field 'scene_id' has the name of a reserved request key"));
}

TEST_CASE("serve: metadata names the model, tasks, sides, sequences and the serving plan", "[serve][layout]") {
  auto p = mtrank::testing::feed_predictor();
  const json m = p->metadata();
  CHECK(m["model"] == "mmoe");
  CHECK(m["tasks"].size() == 3);
  CHECK(m["tasks"][0]["name"] == "click");
  CHECK(m["num_scenes"] == 2);
  CHECK(m["weights"] == "f32");
  REQUIRE(m["candidate_fields"].size() == 5);
  CHECK(m["candidate_fields"][0]["name"] == "item_id");
  CHECK(m["candidate_fields"][0]["kind"] == "sparse");
  CHECK(m["candidate_fields"][0]["side"] == "item");
  CHECK(m["user_fields"].size() == 5);
  CHECK(m["sequences"][0]["name"] == "click_seq");
  CHECK(m["fusion"]["weights"]["interaction"] == 2.0);
}

TEST_CASE("serve: request JSON carries scenes, times and candidate ids, echoed as sent", "[serve][request]") {
  auto p = mtrank::testing::feed_predictor();
  serve::Request r;
  serve::RequestEcho echo;
  const std::string body = R"({"request_id": 17, "scene_id": 1, "user_id": 3, "user_activity": 0.5, "hour_sin": 0, "hour_cos": 1,
      "scene": 1, "click_seq": {"ids": [4, 5, 6], "times": [3.5, 1, 0]}, "click_cat_seq": [1, 2, 3],
      "candidates": [{"candidate_id": "v-4", "item_id": 4, "category": 1, "author": 2, "log_item_pop": 0.1, "item_age": 2},
                     {"scene_id": 0, "item_id": 5, "category": 1, "author": 2, "log_item_pop": 0.1, "item_age": 2}]})";
  serve::parse_request(body, p->schema(), p->serving(), r, echo);
  CHECK(r.scene == 1);
  CHECK(r.cand_scene == std::vector<std::int32_t>{1, 0});
  CHECK(r.sequences[0] == std::vector<std::int64_t>{4, 5, 6});
  CHECK(r.sequence_times[0] == std::vector<float>{3.5f, 1.0f, 0.0f});
  CHECK(r.sequence_times[1].empty());
  CHECK(echo.request_id == "17");
  CHECK(echo.candidate_ids == std::vector<std::string>{"\"v-4\"", ""});
  std::string out;
  serve::write_response(p->score(r), p->schema(), echo, out);
  const json resp = json::parse(out);
  CHECK(resp["request_id"].is_number_integer());
  CHECK(resp["request_id"] == 17);
  CHECK(resp["scores"][0]["candidate_id"] == "v-4");
  CHECK_FALSE(resp["scores"][1].contains("candidate_id"));

  auto err = [&](const std::string& from, const std::string& to) {
    std::string b = body;
    const auto at = b.find(from);
    REQUIRE(at != std::string::npos);
    b.replace(at, from.size(), to);
    try {
      serve::parse_request(b, p->schema(), p->serving(), r, echo);
    } catch (const serve::RequestError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(err(R"("scene_id": 1)", R"("scene_id": 2)"), Contains("request.scene_id: unknown scene 2 (the model has scenes 0..1)"));
  CHECK_THAT(err(R"("scene_id": 1)", R"("scene_id": -1)"), Contains("request.scene_id: unknown scene -1"));
  CHECK_THAT(err(R"("scene_id": 1)", R"("scene_id": "1")"), Contains("request.scene_id: expected an integer scene id"));
  CHECK_THAT(err(R"({"scene_id": 0,)", R"({"scene_id": 7,)"), Contains("request.candidates[1].scene_id: unknown scene 7"));
  CHECK_THAT(err("[3.5, 1, 0]", "[3.5, -1, 0]"), Contains("request.click_seq.times[1]: -1 is in the future"));
  CHECK_THAT(err("[3.5, 1, 0]", "[3.5, 1]"), Contains("request.click_seq.times: 2 times for 3 ids"));
  CHECK_THAT(err("[3.5, 1, 0]", "[3.5, 1e999, 0]"), Contains("invalid JSON"));
  CHECK_THAT(err("[3.5, 1, 0]", "[3.5, 1e300, 0]"), Contains("request.click_seq.times[1]") && Contains("not a finite float"));
  CHECK_THAT(err("[3.5, 1, 0]", R"([3.5, "1", 0])"), Contains("request.click_seq.times[1]: expected a number"));
  CHECK_THAT(err(R"("times")", R"("when")"), Contains("request.click_seq.when: unknown key"));
  CHECK_THAT(err(R"({"ids": [4, 5, 6], "times": [3.5, 1, 0]})", R"({"times": []})"), Contains("request.click_seq: missing \"ids\""));
  CHECK_THAT(err(R"("candidate_id": "v-4")", R"("candidate_id": [1])"), Contains("request.candidates[0].candidate_id: expected a string or an integer"));
  CHECK_THAT(err(R"("item_id": 4)", R"("item_id": 4.0)"), Contains("request.candidates[0].item_id: expected an integer id"));
  CHECK_THAT(err(R"("user_id": 3)", R"("user_id": true)"), Contains("request.user_id: expected an integer id"));
  // The C++ request is checked the same way.
  serve::parse_request(body, p->schema(), p->serving(), r, echo);
  r.sequence_times[0][2] = std::nanf("");
  CHECK_THROWS_WITH(p->score(r), Contains("sequence 'click_seq' times[2] = nan"));
  r.sequence_times[0].pop_back();
  CHECK_THROWS_WITH(p->score(r), Contains("sequence 'click_seq' has 3 ids but 2 times"));
  r.sequence_times[0].push_back(0.0f);
  r.scene = 5;
  CHECK_THROWS_WITH(p->score(r), Contains("request: scene 5 not in [0, 2)"));
}

TEST_CASE("serve: multi-scene and timed sequence models score requests as the batch with the same scenes and times", "[serve][request]") {
  const auto& d = seq_feed();
  const json md = json::parse(R"({"type": "multi_domain", "scene_dim": 4,
      "stages": [{"num_subnets": 3, "subnet": {"layers": [16]}}, {"num_subnets": 3, "subnet": {"layers": [8]}}],
      "tower": {"hidden": [8]}, "embedding_init_std": 0.3})");
  const json dmt = json::parse(R"({"type": "dmt", "num_experts": 2, "expert": {"layers": [16]}, "tower": {"hidden": [8]},
      "embedding_init_std": 0.3,
      "sequences": [{"name": "click", "fields": ["click_seq", "click_cat_seq"], "heads": 2, "ff": 16,
                     "position": "time_gap", "time_buckets": 12}]})");
  const json sim = json::parse(R"({"type": "sim", "bottom": {"layers": [16]}, "tower": {"hidden": [8]},
      "embedding_init_std": 0.3,
      "sequences": [{"name": "long", "fields": ["click_seq", "click_cat_seq"], "search": "hard", "top_k": 6, "heads": 2,
                     "time_buckets": 8}]})");
  for (const auto& [name, m] : std::vector<std::pair<std::string, json>>{{"multi_domain", md}, {"dmt", dmt}, {"sim", sim}}) {
    CAPTURE(name);
    serve::Predictor p(models::build_model(with_schema(d.schema, m)));  // warm-up runs with a scene
    Index first = 0;
    while (d.sequences[0].length(first) < 3) ++first;
    const Index n = 5;
    for (bool times : {true, false}) {
      CAPTURE(times);
      for (std::int32_t scene : {0, 1}) {
        serve::Request r = user_request(d, p, first, n, times);
        r.scene = scene;
        const Tensor got = copy_of(p.score(r).probs);
        const Tensor want = copy_of(p.score(user_batch(d, p, first, n, std::vector<std::int32_t>(n, scene), times)).probs);
        require_equal(got.matrix(), want.matrix());
      }
      serve::Request r = user_request(d, p, first, n, times);
      r.cand_scene = {0, 1, 1, 0, 1};
      require_equal(copy_of(p.score(r).probs).matrix(),
                    copy_of(p.score(user_batch(d, p, first, n, r.cand_scene, times)).probs).matrix());
    }
    // Scenes change multi-domain scores; times change the time-gap models' scores.
    serve::Request a = user_request(d, p, first, n, true), b = a;
    if (name == "multi_domain") b.scene = 1;
    else b.sequence_times.assign(b.sequences.size(), {});
    const Tensor sa = copy_of(p.score(a).probs), sb = copy_of(p.score(b).probs);
    bool differ = false;
    for (Index i = 0; i < sa.numel(); ++i) differ = differ || sa[i] != sb[i];
    CHECK(differ);
  }
}
