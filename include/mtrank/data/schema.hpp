// Feature schema: what a sample holds. Sparse fields carry one raw 64-bit id per sample,
// dense fields one float, sequence fields a variable-length list of ids (a user's behaviour
// sequence); tasks name the labels. Ids are either hashed into `vocab` rows or used directly
// with a range check (hash = false).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mtrank/core/tensor.hpp"

namespace mtrank::data {

struct SparseField {
  std::string name;
  Index vocab = 0;   // rows of the embedding table
  Index dim = 8;     // embedding width
  bool hash = false; // true: row = hash(id) % vocab; false: require 0 <= id < vocab
};

struct DenseField {
  std::string name;
};

struct SequenceField {
  std::string name;
  Index vocab = 0;
  Index dim = 8;
  Index max_len = 50;           // longer sequences keep the most recent max_len items
  std::string table;            // share the embedding table of this sparse field ("" = own table)
  bool hash = false;
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
  /// Throws mtrank::Error naming the offending field when the schema is inconsistent.
  void validate() const;
};

void to_json(nlohmann::json& j, const FeatureSchema& s);
/// Parses and validates; errors name the JSON path ("schema.sparse[2].vocab: expected > 0").
void from_json(const nlohmann::json& j, FeatureSchema& s);
const char* task_kind_name(TaskKind k);

/// 64-bit id -> table row: splitmix-style mix then modulo (stable across platforms).
inline Index hash_id(std::int64_t id, Index vocab) {
  std::uint64_t z = static_cast<std::uint64_t>(id) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<Index>(z % static_cast<std::uint64_t>(vocab));
}

}  // namespace mtrank::data
