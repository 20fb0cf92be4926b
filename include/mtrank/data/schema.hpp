// Feature schema: what a sample holds. Sparse fields carry one raw 64-bit id per sample,
// dense fields one float, sequence fields a variable-length list of ids (a user's behaviour
// sequence); tasks name the labels. Ids are either hashed into `vocab` rows or used directly
// with a range check (hash = false), where an out-of-vocabulary row may catch the rest.
//
// The id rule (one for every reader, request and model):
//   raw id   an integer id is itself; a text id is id_from_text(text): the text's integer when
//            it is the canonical decimal form of an int64 ("804", "-3"; not "0804", "+8", " 8"),
//            else the 64-bit FNV-1a hash of its bytes (hash_string). So 804 and "804" are one id.
//   row      hash = true:  hash_id(raw id, vocab), a splitmix64 mix modulo vocab;
//            hash = false: the raw id itself, which must lie in [0, vocab); an id outside goes
//                          to oov_row when the field declares one, else it is an error naming the
//                          field, the id and the vocabulary size.
//
// Each sparse and dense field says which side of a ranking request it is on ("user", "item" or
// "context"): user and context fields come once per request, item fields once per candidate.
// Sequence fields (behaviour histories) are user-side.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mtrank/core/tensor.hpp"

namespace mtrank::data {

/// Where a field comes from in a ranking request (one user, N candidates).
enum class FieldSide : std::uint8_t {
  unspecified,  // not declared: a served model then needs serving.candidate_fields
  user,         // once per request: the user's profile
  item,         // once per candidate
  context,      // once per request: time, device, page, ...
};
const char* field_side_name(FieldSide s);

struct SparseField {
  std::string name;
  Index vocab = 0;   // rows of the embedding table
  Index dim = 8;     // embedding width
  bool hash = false; // true: row = hash_id(id, vocab); false: require 0 <= id < vocab (or oov_row)
  FieldSide side = FieldSide::unspecified;
  Index oov_row = -1;  // hash = false: row for ids outside [0, vocab) (-1: such ids are an error)
};

struct DenseField {
  std::string name;
  FieldSide side = FieldSide::unspecified;
};

struct SequenceField {
  std::string name;
  Index vocab = 0;
  Index dim = 8;
  Index max_len = 50;           // longer sequences keep the most recent max_len items
  std::string table;            // share the embedding table of this sparse field ("" = own table)
  bool hash = false;
  Index oov_row = -1;           // own table, hash = false: row for ids outside [0, vocab) (-1: error)
};

enum class TaskKind { binary, regression };

struct TaskSpec {
  std::string name;
  TaskKind kind = TaskKind::binary;
};

struct FeatureSchema {
  std::vector<SparseField> sparse;
  std::vector<DenseField> dense;
  std::vector<SequenceField> sequences;
  std::vector<TaskSpec> tasks;
  Index num_scenes = 1;

  Index num_tasks() const { return static_cast<Index>(tasks.size()); }
  /// Index of a sparse field by name, or -1.
  int sparse_index(const std::string& name) const;
  /// The table a sequence field's ids index: its own, or the shared sparse field's.
  struct IdTable {
    Index vocab;
    bool hash;
    Index oov_row;
  };
  IdTable sequence_table(std::size_t sequence) const;
  /// True when every sparse and dense field declares a side.
  bool sides_declared() const;
  /// Throws mtrank::Error naming the offending field when the schema is inconsistent.
  void validate() const;
};

void to_json(nlohmann::json& j, const FeatureSchema& s);
/// Parses and validates; errors name the JSON path ("schema.sparse[2].vocab: expected > 0").
void from_json(const nlohmann::json& j, FeatureSchema& s);
const char* task_kind_name(TaskKind k);

/// 64-bit FNV-1a of a byte string (stable across platforms and runs).
std::int64_t hash_string(std::string_view s);

/// True (and `out` set) when `text` is the canonical decimal form of an int64: [-]?(0|[1-9][0-9]*), not "-0".
bool canonical_integer_id(std::string_view text, std::int64_t& out);

/// The raw id of a text id: its integer when `text` is the canonical decimal form of an int64
/// (optional '-', no leading zeros, no '+', no spaces), else hash_string(text). See the id rule above.
std::int64_t id_from_text(std::string_view text);

/// 64-bit id -> table row: splitmix-style mix then modulo (stable across platforms).
inline Index hash_id(std::int64_t id, Index vocab) {
  std::uint64_t z = static_cast<std::uint64_t>(id) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<Index>(z % static_cast<std::uint64_t>(vocab));
}

}  // namespace mtrank::data

namespace mtrank::data {

/// The table row of a raw id under the id rule (hash, range check, out-of-vocabulary row).
/// Errors: "<kind> '<name>': id <id> out of range [0, <vocab>) (vocabulary size <vocab>, no oov_row)".
inline Index map_id_to_row(std::int64_t id, Index vocab, bool hash, Index oov_row, std::string_view name,
                           std::string_view kind = "embedding") {
  if (hash) return hash_id(id, vocab);
  if (id >= 0 && id < vocab) return static_cast<Index>(id);
  if (oov_row >= 0) return oov_row;
  fail(kind, " '", name, "': id ", id, " out of range [0, ", vocab, ") (vocabulary size ", vocab, ", no oov_row)");
}

}  // namespace mtrank::data
