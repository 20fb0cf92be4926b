#include <chrono>

#include "mtrank/serve/request.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

json request_json(Index row, Index n) {
  const auto& d = mtrank::testing::feed();
  const Index ns = 5, nd = 5;
  json j = {{"request_id", "r1"}};
  for (Index f : {0, 4}) j[d.schema.sparse[f].name] = d.sparse[row * ns + f];
  for (Index f : {1, 2, 3}) j[d.schema.dense[f].name] = d.dense[row * nd + f];
  for (std::size_t q = 0; q < d.sequences.size(); ++q) {
    const auto& c = d.sequences[q];
    j[d.schema.sequences[q].name] = std::vector<std::int64_t>(c.ids.begin() + c.offsets[row], c.ids.begin() + c.offsets[row + 1]);
  }
  j["candidates"] = json::array();
  for (Index i = row; i < row + n; ++i) {
    json c;
    for (Index f : {1, 2, 3}) c[d.schema.sparse[f].name] = d.sparse[i * ns + f];
    for (Index f : {0, 4}) c[d.schema.dense[f].name] = d.dense[i * nd + f];
    j["candidates"].push_back(c);
  }
  return j;
}

}  // namespace

TEST_CASE("serve: request parser reads the JSON request format", "[serve][request]") {
  auto p = mtrank::testing::feed_predictor();
  const auto& d = mtrank::testing::feed();
  REQUIRE(d.schema.sparse[0].name == "user_id");
  REQUIRE(d.schema.dense[0].name == "log_item_pop");
  const Index row = mtrank::testing::row_with_history(900);
  serve::Request parsed;
  serve::RequestEcho id;
  serve::parse_request(request_json(row, 6).dump(), p->schema(), p->serving(), parsed, id);
  CHECK(id.request_id == "\"r1\"");
  serve::Request expect = mtrank::testing::feed_request(*p, row, 6);
  CHECK(parsed.user_sparse == expect.user_sparse);
  CHECK(parsed.user_dense == expect.user_dense);
  CHECK(parsed.sequences == expect.sequences);
  CHECK(parsed.num_candidates == 6);
  CHECK(parsed.cand_sparse == expect.cand_sparse);
  CHECK(parsed.cand_dense == expect.cand_dense);

  serve::Scores s = p->score(parsed);
  std::string out;
  serve::write_response(s, p->schema(), id, out);
  json r = json::parse(out);
  CHECK(r["request_id"] == "r1");
  CHECK(r["tasks"] == json({"click", "interaction", "long_dwell"}));
  REQUIRE(r["scores"].size() == 6);
  CHECK(r["scores"][2]["interaction"].get<double>() == Approx(s.probs(2, 1)));
  CHECK(r["scores"][5]["fused"].get<double>() == Approx(s.fused[5]));
}

TEST_CASE("serve: bad requests get errors naming the JSON path", "[serve][request]") {
  auto p = mtrank::testing::feed_predictor();
  const Index row = mtrank::testing::row_with_history(900);
  auto err = [&](const std::string& body, serve::RequestParseOptions o = {}) {
    serve::Request r;
    serve::RequestEcho id;
    try {
      serve::parse_request(body, p->schema(), p->serving(), r, id, o);
    } catch (const serve::RequestError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto with = [&](auto edit) {
    json j = request_json(row, 3);
    edit(j);
    return err(j.dump());
  };
  CHECK(with([](json&) {}) == "no error");
  CHECK_THAT(with([](json& j) { j["colour"] = 1; }), Contains("request.colour: unknown field") && Contains("user_id"));
  CHECK_THAT(with([](json& j) { j["candidates"][1]["size"] = 1; }), Contains("request.candidates[1].size: unknown field"));
  CHECK_THAT(with([](json& j) { j["item_id"] = 1; }), Contains("request.item_id: 'item_id' is a candidate field"));
  CHECK_THAT(with([](json& j) { j["candidates"][0]["user_id"] = 1; }), Contains("candidates[0].user_id: 'user_id' is a user-side field"));
  CHECK_THAT(with([](json& j) { j["candidates"][2]["item_id"] = 300; }), Contains("request.candidates[2].item_id: id 300 out of range [0, 300)"));
  CHECK_THAT(with([](json& j) { j["user_id"] = -1; }), Contains("request.user_id: id -1 out of range"));
  CHECK_THAT(with([](json& j) { j["user_id"] = 1.5; }), Contains("request.user_id: expected an integer id"));
  CHECK_THAT(with([](json& j) { j["user_id"] = "abc"; }), Contains("expected an integer id"));
  CHECK_THAT(with([](json& j) { j["user_id"] = json::array({1, 2}); }), Contains("expected an integer id") && Contains("array"));
  CHECK_THAT(with([](json& j) { j["hour_sin"] = json::array({0.1, 0.2}); }), Contains("request.hour_sin: expected a number"));
  CHECK_THAT(with([](json& j) { j["candidates"][0]["item_age"] = "x"; }), Contains("candidates[0].item_age: expected a number"));
  CHECK_THAT(with([](json& j) { j["click_seq"] = 4; }), Contains("request.click_seq: expected an array of ids"));
  CHECK_THAT(with([](json& j) { j["click_seq"].push_back(100000); }), Contains("request.click_seq[") && Contains("out of range"));
  CHECK_THAT(with([](json& j) { j.erase("hour_cos"); }), Contains("missing user field 'hour_cos'"));
  CHECK_THAT(with([](json& j) { j["candidates"][1].erase("author"); }), Contains("candidates[1]: missing candidate field 'author'"));
  CHECK_THAT(with([](json& j) { j.erase("candidates"); }), Contains("missing field 'candidates'"));
  CHECK_THAT(with([](json& j) { j["candidates"] = json::object(); }), Contains("request.candidates: expected an array"));
  CHECK_THAT(with([](json& j) { j["candidates"][0] = 3; }), Contains("request.candidates[0]: expected an object"));
  CHECK_THAT(with([](json& j) { j["request_id"] = json::array(); }), Contains("request.request_id"));
  CHECK_THAT(with([](json& j) { j["user_id"] = 18446744073709551615ull; }), Contains("does not fit"));
  // Non-finite numbers: JSON has no NaN literal; overflowing numbers become infinities.
  CHECK_THAT(err(R"({"hour_sin": NaN})"), Contains("invalid JSON"));
  CHECK_THAT(with([](json& j) { j["hour_sin"] = 1e300; }), Contains("request.hour_sin") && Contains("not a finite float"));
  CHECK_THAT(with([](json& j) { j["hour_sin"] = 3e38; }), Contains("request.hour_sin") && Contains("beyond +-1e+09 (serving.max_abs_dense)"));
  std::string s = request_json(row, 1).dump();
  s.replace(s.find("\"hour_sin\":") + 11, 0, "1e999,\"x\":");
  CHECK_THAT(err(s), Contains("invalid JSON") && Contains("overflow"));
  CHECK_THAT(err(""), Contains("invalid JSON"));
  CHECK_THAT(err("{\"user_id\": 1,"), Contains("invalid JSON"));
  CHECK_THAT(err("[1, 2]"), Contains("expected a JSON object"));
  CHECK_THAT(err(std::string(100, '[') + std::string(100, ']')), Contains("nested deeper"));
  CHECK_THAT(err(request_json(row, 3).dump(), {.max_bytes = 50}), Contains("bytes, limit 50"));
  // Limits of the serving section.
  json many = request_json(row, 1);
  for (int i = 0; i < 10; ++i) many["candidates"].push_back(many["candidates"][0]);
  serve::Predictor small(models::build_model(mtrank::testing::feed_config()),
                         {.serving = json::parse(R"({"candidate_fields": ["item_id", "category", "author", "log_item_pop", "item_age"],
                                                     "max_candidates": 5, "max_sequence_length": 2})")});
  serve::Request r;
  serve::RequestEcho id;
  CHECK_THROWS_WITH(serve::parse_request(many.dump(), small.schema(), small.serving(), r, id), Contains("11 candidates, limit 5"));
  json long_seq = request_json(row, 1);
  long_seq["click_seq"] = {1, 2, 3};
  CHECK_THROWS_WITH(serve::parse_request(long_seq.dump(), small.schema(), small.serving(), r, id),
                    Contains("request.click_seq: 3 ids, limit 2"));
}

TEST_CASE("serve: request parsing is linear in the body size", "[serve][request]") {
  // 1 MiB of empty candidate objects: with nlohmann's parser callback (the old depth limit) each
  // closing brace rescanned its parent array, 86 s for this body; one SAX pass + a plain parse
  // take milliseconds. The body is rejected for its candidate count after a full parse.
  auto p = mtrank::testing::feed_predictor();
  std::string body = "{\"candidates\":[";
  while (body.size() < (1u << 20) - 8) body += "{},";
  body += "{}]}";
  serve::Request r;
  serve::RequestEcho id;
  const auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(serve::parse_request(body, p->schema(), p->serving(), r, id, {.max_bytes = 1 << 20}),
                    Contains("request: missing user field") || Contains("candidates, limit"));
  WARN("1 MiB of {} candidates parsed and rejected in "
       << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");
  // Deep nesting is still refused before any DOM is built.
  CHECK_THROWS_WITH(serve::parse_request(std::string(500000, '[') + std::string(500000, ']'), p->schema(), p->serving(), r, id,
                                         {.max_bytes = 1 << 20}),
                    Contains("nested deeper than 4 levels"));
}
