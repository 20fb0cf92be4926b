// The name map of `mtrank convert`: a PyTorch state_dict (safetensors) into an mtrank model's
// parameters, with renames and ignored prefixes:
//   {"rename": {"<torch name>": "<mtrank name>", ...}, "ignore": ["<torch name prefix>", ...]}
// Tensors not renamed keep their name. Every parameter must be found with its exact shape and a
// float dtype, and every tensor of the file must be used or ignored; all of it is checked before
// the first value is written, so a failure leaves the arena untouched.
#pragma once
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/core/arena.hpp"
#include "mtrank/io/safetensors.hpp"

namespace mtrank::io {

struct NameMap {
  std::map<std::string, std::string> source_of;  // mtrank name -> name in the file
  std::vector<std::string> ignore;               // prefixes of file tensors that are not used
};

/// Parses a map (null: the empty map); errors name `path` and the key ("map.rename.x: ...").
NameMap parse_name_map(const nlohmann::json& j, const std::string& path = "map");

/// Copies the file's tensors into the arena's parameters through the map (see the top).
void load_mapped(ParameterArena& arena, const SafetensorsFile& file, const NameMap& map);

}  // namespace mtrank::io
