// Thousands of truncated and byte-flipped model configs: each either builds a model or throws
// mtrank::Error; any other exception (or a crash under the sanitizer build) fails.
#include <nlohmann/json.hpp>

#include "mtrank/io/json_util.hpp"
#include "mtrank/models/model.hpp"
#include "testing.hpp"

using namespace mtrank;

TEST_CASE("Model config loader survives truncated and corrupted JSON") {
  const std::string valid = R"({"name": "fuzz", "seed": 3,
    "schema": {"sparse": [{"name": "user_id", "vocab": 50, "dim": 4}, {"name": "item_id", "vocab": 80, "dim": 4, "hash": true}],
               "dense": ["price"], "sequences": [{"name": "clicks", "table": "item_id", "max_len": 5}],
               "tasks": [{"name": "click"}, {"name": "like", "kind": "binary"}]},
    "model": {"type": "mmoe", "num_experts": 2, "expert": {"layers": [8, 4]}, "gate": {"top_k": 0},
              "tower": {"hidden": [4]}, "dot_interactions": true}})";
  REQUIRE_NOTHROW(models::build_model(io::parse_json(valid, "config")));
  Rng rng(2024);
  int built = 0, rejected = 0;
  const char alphabet[] = "{}[]\":,0123456789-.eE aZtrufnl\\";
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text = valid;
    const int mode = static_cast<int>(rng.below(3));
    if (mode == 0) {
      text.resize(rng.below(text.size()));
    } else {
      const int flips = 1 + static_cast<int>(rng.below(4));
      for (int f = 0; f < flips; ++f) {
        const std::size_t pos = rng.below(text.size());
        text[pos] = mode == 1 ? static_cast<char>(rng.below(256)) : alphabet[rng.below(sizeof(alphabet) - 1)];
      }
    }
    try {
      auto model = models::build_model(io::parse_json(text, "config"));
      ++built;
    } catch (const Error&) {
      ++rejected;
    } catch (const std::exception& e) {
      FAIL("non-mtrank exception for input " << text << ": " << e.what());
    }
  }
  CHECK(rejected > 1000);
  CHECK(built + rejected == 3000);
}
