#include "mtrank/io/name_map.hpp"

#include <set>

#include "mtrank/core/error.hpp"
#include "mtrank/io/json_util.hpp"

namespace mtrank::io {

NameMap parse_name_map(const nlohmann::json& m, const std::string& path) {
  NameMap map;
  if (m.is_null()) return map;
  if (!m.is_object()) fail(path, ": expected an object {\"rename\": {...}, \"ignore\": [...]}");
  reject_unknown_keys(m, {"rename", "ignore"}, path);
  if (auto r = m.find("rename"); r != m.end()) {
    if (!r->is_object()) fail(path, ".rename: expected an object {\"torch name\": \"mtrank name\"}");
    for (auto it = r->begin(); it != r->end(); ++it) {
      if (!it->is_string()) fail(path, ".rename.", it.key(), ": expected a string");
      if (!map.source_of.emplace(it->get<std::string>(), it.key()).second)
        fail(path, ".rename.", it.key(), ": mtrank name '", it->get<std::string>(), "' is the target of two tensors");
    }
  }
  if (auto ig = m.find("ignore"); ig != m.end()) {
    if (!ig->is_array()) fail(path, ".ignore: expected an array of name prefixes");
    for (const auto& e : *ig) {
      if (!e.is_string()) fail(path, ".ignore: expected an array of strings");
      map.ignore.push_back(e.get<std::string>());
    }
  }
  return map;
}

void load_mapped(ParameterArena& arena, const SafetensorsFile& f, const NameMap& map) {
  auto source = [&](const std::string& name) -> const std::string& {
    auto it = map.source_of.find(name);
    return it == map.source_of.end() ? name : it->second;
  };
  std::set<std::string> used;
  for (auto& prm : arena.parameters()) {  // check everything first
    const std::string& tn = source(prm.name);
    const SafetensorsEntry* e = f.find(tn);
    if (!e) fail(f.what(), ": no tensor '", tn, "' for parameter '", prm.name, "' (add it to map.rename)");
    if (!(e->shape == prm.shape))
      fail(f.what(), ": tensor '", tn, "' has shape ", e->shape, ", parameter '", prm.name, "' needs ", prm.shape);
    if (!is_float_dtype(e->dtype))
      fail(f.what(), ": tensor '", tn, "' has dtype ", dtype_name(e->dtype), " (expected a float dtype)");
    used.insert(tn);
  }
  for (const auto& e : f.entries()) {
    if (used.count(e.name)) continue;
    bool ignored = false;
    for (const auto& pre : map.ignore) ignored = ignored || e.name.rfind(pre, 0) == 0;
    if (!ignored) fail(f.what(), ": tensor '", e.name, "' matches no parameter (rename it or list a prefix in map.ignore)");
  }
  for (auto& prm : arena.parameters())
    f.read_float(f.at(source(prm.name)), prm.value, static_cast<std::size_t>(prm.numel()));
  if (!arena.parameters().empty()) arena.mark_weights_changed();
}

}  // namespace mtrank::io
