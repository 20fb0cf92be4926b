// libFuzzer target: models::build_model on arbitrary JSON text. Invalid configs must end in
// mtrank::Error (or a JSON parse error), never a crash. Integers above 256 are skipped so that the
// fuzzer explores config logic rather than asking for gigabyte-sized tables (a memory limit, not a bug).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mtrank/models/model.hpp"

namespace {
bool small_numbers(const nlohmann::json& j) {
  if (j.is_number_integer() || j.is_number_unsigned()) return j.get<long double>() <= 256;
  if (j.is_number_float()) return j.get<double>() <= 256;
  if (j.is_array() || j.is_object()) {
    if (j.size() > 64) return false;
    for (const auto& e : j)
      if (!small_numbers(e)) return false;
  }
  return true;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !small_numbers(j)) return 0;
  try {
    auto m = mtrank::models::build_model(j);
    (void)m->num_tasks();
  } catch (const mtrank::Error&) {
  }
  return 0;
}
