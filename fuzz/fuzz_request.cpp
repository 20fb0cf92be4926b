// libFuzzer target: the ranking server's request parser on arbitrary bytes, and, for requests it
// accepts, scoring them with a small model (so everything the parser lets through must be safe
// for the predictor). Rejections must be RequestError.
#include <cstdint>
#include <memory>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mtrank/serve/request.hpp"

namespace {
const mtrank::serve::Predictor& predictor() {
  static const auto p = [] {
    auto cfg = nlohmann::json::parse(R"({
      "seed": 1,
      "schema": {"sparse": [{"name": "user_id", "vocab": 20, "dim": 4}, {"name": "item_id", "vocab": 30, "dim": 4},
                            {"name": "tag", "vocab": 8, "dim": 4, "hash": true}],
                 "dense": [{"name": "hour"}, {"name": "pop"}],
                 "sequences": [{"name": "clicks", "vocab": 30, "dim": 4, "max_len": 4, "table": "item_id"}],
                 "tasks": [{"name": "click"}, {"name": "like"}]},
      "model": {"type": "mmoe", "num_experts": 2, "expert": {"layers": [8]}, "tower": {"hidden": [4]}, "dot_interactions": true},
      "serving": {"candidate_fields": ["item_id", "tag", "pop"], "max_candidates": 64, "max_sequence_length": 16,
                  "fusion": {"type": "product", "alpha": {"click": 0.1}, "beta": {"click": 1, "like": 0}}}})");
    return std::make_unique<mtrank::serve::Predictor>(mtrank::models::build_model(cfg));
  }();
  return *p;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static mtrank::serve::Request request;
  static mtrank::serve::Predictor::Session session;
  static mtrank::serve::RequestEcho id;
  static std::string out;
  const auto& p = predictor();
  try {
    mtrank::serve::parse_request(std::string_view(reinterpret_cast<const char*>(data), size), p.schema(), p.serving(),
                                 request, id, {.max_bytes = 1 << 16});
  } catch (const mtrank::serve::RequestError&) {
    return 0;
  }
  // Accepted: scoring must succeed (the parser checked ids, widths and values).
  auto s = p.score(request, session);
  out.clear();
  mtrank::serve::write_response(s, p.schema(), id, out);
  if (nlohmann::json::parse(out).is_discarded()) __builtin_trap();  // the response is valid JSON
  return 0;
}
