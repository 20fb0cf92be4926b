// libFuzzer target: the CSV reader on arbitrary text with a fixed schema (sparse, hashed sparse,
// dense, sequence, two labels). Malformed input must end in mtrank::Error.
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "mtrank/data/csv.hpp"

namespace {
const mtrank::data::FeatureSchema& schema() {
  static const auto s = nlohmann::json::parse(R"({
    "sparse": [{"name": "user", "vocab": 50, "dim": 4}, {"name": "city", "vocab": 16, "dim": 4, "hash": true}],
    "dense": [{"name": "age"}],
    "sequences": [{"name": "hist", "vocab": 100, "dim": 4, "max_len": 5}],
    "tasks": [{"name": "click"}, {"name": "buy"}]})").get<mtrank::data::FeatureSchema>();
  return s;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (int variant = 0; variant < 2; ++variant) {
    mtrank::data::CsvOptions o;
    o.user_column = "user";
    if (variant == 1) {
      o.delimiter = '\t';
      o.dense_missing = mtrank::data::MissingPolicy::fill;
      o.label_missing = mtrank::data::MissingPolicy::fill;
      o.comment_prefix = "#";
    }
    try {
      auto d = mtrank::data::parse_csv(text, "<fuzz>", schema(), o);
      d.validate();
    } catch (const mtrank::Error&) {
    }
  }
  return 0;
}
