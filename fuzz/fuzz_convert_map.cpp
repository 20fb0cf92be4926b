// libFuzzer target: the name map of `mtrank convert` with a PyTorch-style weights file.
//
// The map parser lives only in tools/mtrank_cli/main.cpp (cmd_convert), which has main() and
// cannot be linked into a fuzzer. This target runs the same steps with the same library calls,
// in the same order: io::parse_json on the map text, io::reject_unknown_keys, the "rename" /
// "ignore" rules, SafetensorsFile (here parse(), in memory) find / read_float, then
// io::save_checkpoint; and it checks the result: the written checkpoint must load back with
// io::load_checkpoint into a fresh model with exactly the values converted.
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
#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"

namespace {

using namespace mtrank;
using nlohmann::json;

const json& config() {
  static const json c = json::parse(fuzz::kConvertMapConfig);
  return c;
}

// cmd_convert's map handling (tools/mtrank_cli/main.cpp), on the library's helpers.
void convert(const std::string& map_text, const std::string& weights, models::Model& model) {
  std::map<std::string, std::string> to_torch;  // mtrank name -> torch name
  std::vector<std::string> ignore;
  if (!map_text.empty()) {
    json m = io::parse_json(map_text, "map.json");
    io::reject_unknown_keys(m, {"rename", "ignore"}, "map");
    if (m.contains("rename")) {
      if (!m["rename"].is_object()) fail("map.rename: expected an object {\"torch name\": \"mtrank name\"}");
      for (auto it = m["rename"].begin(); it != m["rename"].end(); ++it) {
        if (!it->is_string()) fail("map.rename.", it.key(), ": expected a string");
        if (!to_torch.emplace(it->get<std::string>(), it.key()).second)
          fail("map.rename.", it.key(), ": mtrank name '", it->get<std::string>(), "' is the target of two tensors");
      }
    }
    if (m.contains("ignore")) {
      if (!m["ignore"].is_array()) fail("map.ignore: expected an array of name prefixes");
      for (auto& e : m["ignore"]) {
        if (!e.is_string()) fail("map.ignore: expected an array of strings");
        ignore.push_back(e.get<std::string>());
      }
    }
  }
  auto f = io::SafetensorsFile::parse(weights, "torch.safetensors");
  std::set<std::string> used;
  for (auto& prm : model.arena().parameters()) {
    auto it = to_torch.find(prm.name);
    const std::string tn = it == to_torch.end() ? prm.name : it->second;
    const io::SafetensorsEntry* e = f.find(tn);
    if (!e) fail(f.what(), ": no tensor '", tn, "' for parameter '", prm.name, "' (add it to map.rename)");
    if (!(e->shape == prm.shape)) fail(f.what(), ": tensor '", tn, "' has shape ", e->shape, ", parameter '", prm.name, "' needs ", prm.shape);
    if (!io::is_float_dtype(e->dtype)) fail(f.what(), ": tensor '", tn, "' has dtype ", io::dtype_name(e->dtype), " (expected a float dtype)");
    used.insert(tn);
  }
  for (const auto& e : f.entries()) {
    if (used.count(e.name)) continue;
    bool ig = false;
    for (auto& pre : ignore) ig = ig || e.name.rfind(pre, 0) == 0;
    if (!ig) fail(f.what(), ": tensor '", e.name, "' matches no parameter (rename it or list a prefix in map.ignore)");
  }
  for (auto& prm : model.arena().parameters()) {
    auto it = to_torch.find(prm.name);
    f.read_float(f.at(it == to_torch.end() ? prm.name : it->second), prm.value, static_cast<std::size_t>(prm.numel()));
  }
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
