#include "mtrank/core/context.hpp"

#include "mtrank/core/error.hpp"

namespace mtrank {

ServingWeights parse_serving_weights(std::string_view name) {
  if (name == "f32") return ServingWeights::f32;
  if (name == "bf16") return ServingWeights::bf16;
  if (name == "int8") return ServingWeights::int8;
  fail("serving weights: expected \"f32\", \"bf16\" or \"int8\", got \"", name, "\"");
}

const char* serving_weights_name(ServingWeights w) {
  switch (w) {
    case ServingWeights::bf16: return "bf16";
    case ServingWeights::int8: return "int8";
    default: return "f32";
  }
}

}  // namespace mtrank
