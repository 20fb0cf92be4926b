#include "mtrank/data/schema.hpp"

#include <set>
#include <string_view>
#include <unordered_set>

#include "mtrank/io/json_util.hpp"

namespace mtrank::data {

using io::get_optional;
using io::get_required;
using io::json;

const char* task_kind_name(TaskKind k) { return k == TaskKind::binary ? "binary" : "regression"; }

const char* field_side_name(FieldSide s) {
  switch (s) {
    case FieldSide::user: return "user";
    case FieldSide::item: return "item";
    case FieldSide::context: return "context";
    default: return "unspecified";
  }
}

std::int64_t hash_string(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return static_cast<std::int64_t>(h);
}

bool canonical_integer_id(std::string_view t, std::int64_t& out) {
  const std::size_t i = !t.empty() && t[0] == '-' ? 1 : 0;
  const std::size_t digits = t.size() - i;
  if (digits == 0 || digits > 19 || (t[i] == '0' && (digits > 1 || i == 1))) return false;
  std::uint64_t v = 0;
  for (std::size_t k = i; k < t.size(); ++k) {
    if (t[k] < '0' || t[k] > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(t[k] - '0');  // at most 19 digits: < 10^19 < 2^64, no wrap
  }
  const std::uint64_t limit = i ? (std::uint64_t{1} << 63) : (std::uint64_t{1} << 63) - 1;
  if (v > limit) return false;
  out = i ? static_cast<std::int64_t>(0 - v) : static_cast<std::int64_t>(v);
  return true;
}

std::int64_t id_from_text(std::string_view t) {
  std::int64_t v;
  return canonical_integer_id(t, v) ? v : hash_string(t);
}

FeatureSchema::IdTable FeatureSchema::sequence_table(std::size_t q) const {
  const SequenceField& f = sequences.at(q);
  if (!f.table.empty()) {
    const int t = sparse_index(f.table);
    require(t >= 0, "schema.sequences[", q, "].table: no sparse field named '", f.table, "'");
    const SparseField& s = sparse[static_cast<std::size_t>(t)];
    return {s.vocab, s.hash, s.oov_row};
  }
  return {f.vocab, f.hash, f.oov_row};
}

bool FeatureSchema::sides_declared() const {
  for (const auto& f : sparse)
    if (f.side == FieldSide::unspecified) return false;
  for (const auto& f : dense)
    if (f.side == FieldSide::unspecified) return false;
  return true;
}

namespace {
FieldSide parse_side(const json& f, const std::string& w) {
  const auto v = get_optional<std::string>(f, "side", w, "\"user\", \"item\" or \"context\"", "");
  if (v.empty()) return FieldSide::unspecified;
  if (v == "user") return FieldSide::user;
  if (v == "item") return FieldSide::item;
  if (v == "context") return FieldSide::context;
  fail(w, ".side: expected \"user\", \"item\" or \"context\", got \"", v, "\"");
}
}  // namespace

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
    require(sparse[i].oov_row >= -1 && sparse[i].oov_row < sparse[i].vocab, w, ".oov_row: expected -1 (none) or a row in [0, ",
            sparse[i].vocab, "), got ", sparse[i].oov_row);
    require(sparse[i].oov_row < 0 || !sparse[i].hash, w, ".oov_row: a hashed field (hash: true) has no out-of-vocabulary ids");
  }
  for (std::size_t i = 0; i < dense.size(); ++i) unique(dense[i].name, "schema.dense[" + std::to_string(i) + "]");
  // Sparse field names once (sparse_index per sequence was quadratic in the number of fields).
  std::unordered_set<std::string_view> sparse_names;
  for (const auto& f : sparse) sparse_names.insert(f.name);
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    const std::string w = "schema.sequences[" + std::to_string(i) + "]";
    const auto& s = sequences[i];
    unique(s.name, w);
    require(s.max_len > 0, w, ".max_len: expected > 0, got ", s.max_len);
    if (!s.table.empty()) {
      require(sparse_names.count(s.table) > 0, w, ".table: no sparse field named '", s.table, "'");
      require(s.oov_row == -1, w, ".oov_row: a sequence sharing table '", s.table, "' uses that field's oov_row");
    } else {
      require(s.vocab > 0, w, ".vocab: expected > 0, got ", s.vocab);
      require(s.dim > 0, w, ".dim: expected > 0, got ", s.dim);
      require(s.oov_row >= -1 && s.oov_row < s.vocab, w, ".oov_row: expected -1 (none) or a row in [0, ", s.vocab,
              "), got ", s.oov_row);
      require(s.oov_row < 0 || !s.hash, w, ".oov_row: a hashed field (hash: true) has no out-of-vocabulary ids");
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
  for (auto& f : s.sparse) {
    json e = {{"name", f.name}, {"vocab", f.vocab}, {"dim", f.dim}, {"hash", f.hash}};
    if (f.side != FieldSide::unspecified) e["side"] = field_side_name(f.side);
    if (f.oov_row >= 0) e["oov_row"] = f.oov_row;
    j["sparse"].push_back(std::move(e));
  }
  j["dense"] = json::array();
  for (auto& f : s.dense) {
    json e = {{"name", f.name}};
    if (f.side != FieldSide::unspecified) e["side"] = field_side_name(f.side);
    j["dense"].push_back(std::move(e));
  }
  j["sequences"] = json::array();
  for (auto& f : s.sequences) {
    json e = {{"name", f.name}, {"vocab", f.vocab}, {"dim", f.dim}, {"max_len", f.max_len}, {"table", f.table}, {"hash", f.hash}};
    if (f.oov_row >= 0) e["oov_row"] = f.oov_row;
    j["sequences"].push_back(std::move(e));
  }
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
    io::reject_unknown_keys(f, {"name", "vocab", "dim", "hash", "side", "oov_row"}, w);
    SparseField sf;
    sf.name = get_required<std::string>(f, "name", w, "a string");
    sf.vocab = get_required<Index>(f, "vocab", w, "an integer");
    sf.dim = get_optional<Index>(f, "dim", w, "an integer", 8);
    sf.hash = get_optional<bool>(f, "hash", w, "a boolean", false);
    sf.side = parse_side(f, w);
    sf.oov_row = get_optional<Index>(f, "oov_row", w, "an integer", -1);
    s.sparse.push_back(std::move(sf));
  }
  i = 0;
  for (auto& f : arr("dense")) {
    const std::string w = p + ".dense[" + std::to_string(i++) + "]";
    if (f.is_string()) s.dense.push_back({f.get<std::string>()});
    else {
      io::reject_unknown_keys(f, {"name", "side"}, w);
      s.dense.push_back({get_required<std::string>(f, "name", w, "a string"), parse_side(f, w)});
    }
  }
  i = 0;
  for (auto& f : arr("sequences")) {
    const std::string w = p + ".sequences[" + std::to_string(i++) + "]";
    io::reject_unknown_keys(f, {"name", "vocab", "dim", "max_len", "table", "hash", "oov_row"}, w);
    SequenceField q;
    q.name = get_required<std::string>(f, "name", w, "a string");
    q.vocab = get_optional<Index>(f, "vocab", w, "an integer", 0);
    q.dim = get_optional<Index>(f, "dim", w, "an integer", 8);
    q.max_len = get_optional<Index>(f, "max_len", w, "an integer", 50);
    q.table = get_optional<std::string>(f, "table", w, "a string", "");
    q.hash = get_optional<bool>(f, "hash", w, "a boolean", false);
    q.oov_row = get_optional<Index>(f, "oov_row", w, "an integer", -1);
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
