#include "mtrank/data/schema.hpp"

#include <set>

#include "mtrank/io/json_util.hpp"

namespace mtrank::data {

using io::get_optional;
using io::get_required;
using io::json;

const char* task_kind_name(TaskKind k) { return k == TaskKind::binary ? "binary" : "regression"; }

int FeatureSchema::sparse_index(const std::string& name) const {
  for (std::size_t i = 0; i < sparse.size(); ++i)
    if (sparse[i].name == name) return static_cast<int>(i);
  return -1;
}

void FeatureSchema::validate() const {
  std::set<std::string> names;
  auto unique = [&](const std::string& n, const std::string& where) {
    require(!n.empty(), where, ".name: must not be empty");
    require(names.insert(n).second, where, ".name: duplicate feature name '", n, "'");
  };
  for (std::size_t i = 0; i < sparse.size(); ++i) {
    const std::string w = "schema.sparse[" + std::to_string(i) + "]";
    unique(sparse[i].name, w);
    require(sparse[i].vocab > 0, w, ".vocab: expected > 0, got ", sparse[i].vocab);
    require(sparse[i].dim > 0, w, ".dim: expected > 0, got ", sparse[i].dim);
  }
  for (std::size_t i = 0; i < dense.size(); ++i) unique(dense[i].name, "schema.dense[" + std::to_string(i) + "]");
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    const std::string w = "schema.sequences[" + std::to_string(i) + "]";
    const auto& s = sequences[i];
    unique(s.name, w);
    require(s.max_len > 0, w, ".max_len: expected > 0, got ", s.max_len);
    if (!s.table.empty()) {
      const int t = sparse_index(s.table);
      require(t >= 0, w, ".table: no sparse field named '", s.table, "'");
    } else {
      require(s.vocab > 0, w, ".vocab: expected > 0, got ", s.vocab);
      require(s.dim > 0, w, ".dim: expected > 0, got ", s.dim);
    }
  }
  require(!tasks.empty(), "schema.tasks: expected at least one task");
  std::set<std::string> tn;
  for (std::size_t i = 0; i < tasks.size(); ++i)
    require(tn.insert(tasks[i].name).second && !tasks[i].name.empty(), "schema.tasks[", i,
            "].name: expected a unique non-empty name");
  require(num_scenes >= 1, "schema.num_scenes: expected >= 1, got ", num_scenes);
}

void to_json(json& j, const FeatureSchema& s) {
  j = json::object();
  j["sparse"] = json::array();
  for (auto& f : s.sparse) j["sparse"].push_back({{"name", f.name}, {"vocab", f.vocab}, {"dim", f.dim}, {"hash", f.hash}});
  j["dense"] = json::array();
  for (auto& f : s.dense) j["dense"].push_back({{"name", f.name}});
  j["sequences"] = json::array();
  for (auto& f : s.sequences)
    j["sequences"].push_back({{"name", f.name}, {"vocab", f.vocab}, {"dim", f.dim}, {"max_len", f.max_len},
                              {"table", f.table}, {"hash", f.hash}});
  j["tasks"] = json::array();
  for (auto& t : s.tasks) j["tasks"].push_back({{"name", t.name}, {"kind", task_kind_name(t.kind)}});
  j["num_scenes"] = s.num_scenes;
}

void from_json(const json& j, FeatureSchema& s) {
  const std::string p = "schema";
  io::reject_unknown_keys(j, {"sparse", "dense", "sequences", "tasks", "num_scenes"}, p);
  s = {};
  auto arr = [&](const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return json::array();
    if (!it->is_array()) fail(p, ".", key, ": expected an array");
    return *it;
  };
  std::size_t i = 0;
  for (auto& f : arr("sparse")) {
    const std::string w = p + ".sparse[" + std::to_string(i++) + "]";
    io::reject_unknown_keys(f, {"name", "vocab", "dim", "hash"}, w);
    s.sparse.push_back({get_required<std::string>(f, "name", w, "a string"), get_required<Index>(f, "vocab", w, "an integer"),
                        get_optional<Index>(f, "dim", w, "an integer", 8), get_optional<bool>(f, "hash", w, "a boolean", false)});
  }
  i = 0;
  for (auto& f : arr("dense")) {
    const std::string w = p + ".dense[" + std::to_string(i++) + "]";
    if (f.is_string()) s.dense.push_back({f.get<std::string>()});
    else {
      io::reject_unknown_keys(f, {"name"}, w);
      s.dense.push_back({get_required<std::string>(f, "name", w, "a string")});
    }
  }
  i = 0;
  for (auto& f : arr("sequences")) {
    const std::string w = p + ".sequences[" + std::to_string(i++) + "]";
    io::reject_unknown_keys(f, {"name", "vocab", "dim", "max_len", "table", "hash"}, w);
    SequenceField q;
    q.name = get_required<std::string>(f, "name", w, "a string");
    q.vocab = get_optional<Index>(f, "vocab", w, "an integer", 0);
    q.dim = get_optional<Index>(f, "dim", w, "an integer", 8);
    q.max_len = get_optional<Index>(f, "max_len", w, "an integer", 50);
    q.table = get_optional<std::string>(f, "table", w, "a string", "");
    q.hash = get_optional<bool>(f, "hash", w, "a boolean", false);
    s.sequences.push_back(q);
  }
  i = 0;
  for (auto& t : arr("tasks")) {
    const std::string w = p + ".tasks[" + std::to_string(i++) + "]";
    io::reject_unknown_keys(t, {"name", "kind"}, w);
    TaskSpec ts{get_required<std::string>(t, "name", w, "a string")};
    const auto kind = get_optional<std::string>(t, "kind", w, "\"binary\" or \"regression\"", "binary");
    if (kind == "binary") ts.kind = TaskKind::binary;
    else if (kind == "regression") ts.kind = TaskKind::regression;
    else fail(w, ".kind: expected \"binary\" or \"regression\", got \"", kind, "\"");
    s.tasks.push_back(ts);
  }
  s.num_scenes = get_optional<Index>(j, "num_scenes", p, "an integer", 1);
  s.validate();
}

}  // namespace mtrank::data
