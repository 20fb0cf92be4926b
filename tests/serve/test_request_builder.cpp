// RequestBuilder: a request by field name equals the JSON request and the positional Request.
#include "mtrank/serve/request.hpp"
#include "mtrank/serve/request_builder.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;
using Catch::Matchers::Contains;
using nlohmann::json;

TEST_CASE("serve: RequestBuilder builds by name what the JSON request says", "[serve][builder]") {
  auto p = mtrank::testing::feed_predictor();
  serve::RequestBuilder rb(*p);
  rb.set_user("user_id", 3).set_user("user_activity", 0.5).set_user("hour_sin", 0).set_user("hour_cos", 1.0f)
      .set_user("scene", "1").set_scene(1)
      .set_sequence("click_seq", {4, 5, 6}, {3.5f, 1.0f, 0.0f})
      .set_sequence("click_cat_seq", {1, 2, 3});
  rb.add_candidate({{"item_id", 4}, {"category", 1}, {"author", 2}, {"log_item_pop", 0.1}, {"item_age", 2}});
  rb.add_candidate({{"item_age", 2.0}, {"item_id", "5"}, {"category", 1u}, {"author", std::int64_t{2}}, {"log_item_pop", 0.1f}}, 0);
  const serve::Request& built = rb.request();

  serve::Request parsed;
  serve::RequestEcho echo;
  serve::parse_request(R"({"scene_id": 1, "user_id": 3, "user_activity": 0.5, "hour_sin": 0, "hour_cos": 1, "scene": 1,
      "click_seq": {"ids": [4, 5, 6], "times": [3.5, 1, 0]}, "click_cat_seq": [1, 2, 3],
      "candidates": [{"item_id": 4, "category": 1, "author": 2, "log_item_pop": 0.1, "item_age": 2},
                     {"scene_id": 0, "item_id": 5, "category": 1, "author": 2, "log_item_pop": 0.1, "item_age": 2}]})",
                       p->schema(), p->serving(), parsed, echo);
  CHECK(built.user_sparse == parsed.user_sparse);
  CHECK(built.user_dense == parsed.user_dense);
  CHECK(built.sequences == parsed.sequences);
  CHECK(built.sequence_times == parsed.sequence_times);
  CHECK(built.scene == parsed.scene);
  CHECK(built.cand_scene == parsed.cand_scene);
  CHECK(built.cand_scene == std::vector<std::int32_t>{1, 0});
  CHECK(built.cand_sparse == parsed.cand_sparse);
  CHECK(built.cand_dense == parsed.cand_dense);
  CHECK(built.num_candidates == 2);
  serve::Predictor::Session s1, s2;
  const serve::Scores a = p->score(built, s1), b = p->score(parsed, s2);
  for (Index i = 0; i < 2; ++i)
    for (Index k = 0; k < 3; ++k) CHECK(a.probs(i, k) == b.probs(i, k));

  rb.clear();
  CHECK_THROWS_WITH(rb.request(), Contains("user/context fields not set: user_id, scene, user_activity, hour_sin, hour_cos"));
}

TEST_CASE("serve: RequestBuilder names the field and the expectation", "[serve][builder]") {
  auto p = mtrank::testing::feed_predictor();
  serve::RequestBuilder rb(*p);
  CHECK_THROWS_WITH(rb.set_user("item_id", 1), Contains("request field 'item_id': an item-side field"));
  CHECK_THROWS_WITH(rb.set_user("colour", 1), Contains("request field 'colour': no user- or context-side field"));
  CHECK_THROWS_WITH(rb.set_user("click_seq", 1), Contains("a sequence field; use set_sequence"));
  CHECK_THROWS_WITH(rb.set_user("user_id", 60), Contains("request field 'user_id': id 60 out of range [0, 60)"));
  CHECK_THROWS_WITH(rb.set_user("user_id", "07"), Contains("expected an integer id (or its decimal text)"));
  CHECK_THROWS_WITH(rb.set_user("user_id", 1.5), Contains("expected an integer id"));
  CHECK_THROWS_WITH(rb.set_user("user_activity", "x"), Contains("expected a number for a dense field"));
  CHECK_THROWS_WITH(rb.set_user("user_activity", 1e300), Contains("not a finite float"));
  CHECK_THROWS_WITH(rb.set_user("user_activity", 3e38), Contains("serving.max_abs_dense"));
  CHECK_THROWS_WITH(rb.set_user("user_id", std::uint64_t{1} << 63), Contains("does not fit"));
  CHECK_THROWS_WITH(rb.set_scene(2), Contains("request scene: 2 not in [0, 2)"));
  CHECK_THROWS_WITH(rb.set_sequence("click_seq", {1, 2}, {1.0f}), Contains("1 times for 2 ids"));
  CHECK_THROWS_WITH(rb.set_sequence("click_seq", {1, 2}, {1.0f, -2.0f}), Contains("times[1] = -2"));
  CHECK_THROWS_WITH(rb.set_sequence("click_seq", {1, 9999}), Contains("request sequence 'click_seq'[1]: id 9999 out of range"));
  CHECK_THROWS_WITH(rb.set_sequence("nope", {1}), Contains("no sequence field"));
  CHECK_THROWS_WITH(rb.add_candidate({{"item_id", 4}}), Contains("candidate 0: missing field 'category'"));
  CHECK_THROWS_WITH(rb.add_candidate({{"item_id", 4}, {"item_id", 5}}), Contains("candidate 0 field 'item_id': given twice"));
  CHECK_THROWS_WITH(rb.add_candidate({{"user_id", 4}}), Contains("candidate 0 field 'user_id': not an item-side field"));
  CHECK_THROWS_WITH(rb.add_candidate({{"item_id", 4}, {"category", 1}, {"author", 2}, {"log_item_pop", 0.1}, {"item_age", 2}}, 3),
                    Contains("candidate 0: scene 3 not in [0, 2)"));
  // A failed call leaves no partial candidate behind.
  rb.set_user("user_id", 1).set_user("scene", 0).set_user("user_activity", 0).set_user("hour_sin", 0).set_user("hour_cos", 0);
  CHECK(rb.request().num_candidates == 0);
  CHECK(rb.request().cand_sparse.empty());
}
