// libFuzzer target: the name map of `mtrank convert` with a PyTorch-style weights file.
//
// The same library calls as `mtrank convert` (tools/mtrank_cli/main.cpp, cmd_convert):
// io::parse_name_map on the map text and io::load_mapped (io/name_map.hpp) with the weights
// parsed in memory, then io::save_checkpoint; and it checks the result: the written checkpoint
// must load back with io::load_checkpoint into a fresh model with exactly the values converted.
//   input: 2 bytes little-endian length L, L bytes of map JSON, the rest the weights file.
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_configs.hpp"
#include "fuzz_util.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/io/name_map.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"

namespace {

using namespace mtrank;
using nlohmann::json;

const json& config() {
  static const json c = json::parse(fuzz::kConvertMapConfig);
  return c;
}

// cmd_convert's steps (tools/mtrank_cli/main.cpp): the map parsed from text, then the weights loaded through it.
void convert(const std::string& map_text, const std::string& weights, models::Model& model) {
  const io::NameMap map = map_text.empty() ? io::NameMap{} : io::parse_name_map(io::parse_json(map_text, "map.json"), "map");
  io::load_mapped(model.arena(), io::SafetensorsFile::parse(weights, "torch.safetensors"), map);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  mtrank::fuzz::Bytes in(data, size);
  const std::size_t len = in.u16();
  const std::string map_text = in.take(len);
  const std::string weights = in.rest();
  auto model = models::build_model(config());
  try {
    convert(map_text, weights, *model);
  } catch (const Error&) {
    return 0;
  }
  // Converted: the checkpoint convert writes must load back, bit for bit.
  const auto out = mtrank::fuzz::scratch_dir("convert_map") / "converted.safetensors";
  io::CheckpointData cd;
  cd.config = config();
  io::save_checkpoint(out, model->arena(), cd);
  auto back = models::build_model(config());
  io::CheckpointData loaded = io::load_checkpoint(out, back->arena());  // throws (uncaught) if it cannot
  if (loaded.config != config()) __builtin_trap();
  const auto& a = model->arena().parameters();
  const auto& b = back->arena().parameters();
  if (a.size() != b.size()) __builtin_trap();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i].shape == b[i].shape) ||
        std::memcmp(a[i].value, b[i].value, sizeof(float) * static_cast<std::size_t>(a[i].numel())) != 0)
      __builtin_trap();
  return 0;
}
