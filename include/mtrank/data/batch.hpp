// A mini-batch and an in-memory dataset laid out by column.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mtrank/core/tensor.hpp"
#include "mtrank/data/schema.hpp"

namespace mtrank::data {

/// Variable-length id lists for one sequence field: sample b owns
/// ids[offsets[b] .. offsets[b+1]), oldest first. `times` (optional, same length as ids)
/// holds the time gap of each behaviour to the request, for time-bucket embeddings.
struct SequenceColumn {
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> offsets{0};
  std::vector<float> times;
  Index length(Index b) const { return offsets[b + 1] - offsets[b]; }
};

struct Batch {
  Index size = 0;
  Tensor dense;                           // [B, num_dense]
  std::vector<std::int64_t> sparse;       // [B, num_sparse] raw ids, row-major
  std::vector<SequenceColumn> sequences;  // one per schema sequence field
  Tensor labels;                          // [B, K]
  Tensor label_mask{Shape{0, 0}};         // [B, K], 1 = label present, 0 = ignore in loss/metrics
  std::vector<std::int64_t> user;         // [B] user id (GAUC groups)
  std::vector<std::int32_t> scene;        // [B] scene/domain id
  Tensor oracle{Shape{0, 0}};             // [B, K] true probabilities where known (simulator); empty otherwise

  std::int64_t sparse_id(Index b, Index field, Index num_sparse) const { return sparse[b * num_sparse + field]; }
};

/// Rows [begin, end) of `in` into `out`, reusing out's buffers (no allocation once out has held
/// as many rows). Per-row columns are sliced: tensors whose leading dimension is in.size, `sparse`
/// (in.size rows of equal width), `user`/`scene` when they hold in.size entries, and every
/// sequence column (offsets rebased to start at 0; `times` sliced when present). A rank-0 tensor
/// (e.g. a default-constructed `labels`) and empty columns are copied as they are. Throws
/// mtrank::Error naming the column when a column's size does not fit in.size rows.
void slice_batch(const Batch& in, Index begin, Index end, Batch& out);

/// A dataset held as full columns; gather() assembles batches.
struct Dataset {
  FeatureSchema schema;
  Index rows = 0;
  Tensor dense;                           // [N, num_dense]
  std::vector<std::int64_t> sparse;       // [N, num_sparse]
  std::vector<SequenceColumn> sequences;  // offsets of length N + 1
  Tensor labels;                          // [N, K]
  Tensor label_mask{Shape{0, 0}};         // [N, K] or empty (= all labels present)
  std::vector<std::int64_t> user;
  std::vector<std::int32_t> scene;
  Tensor oracle{Shape{0, 0}};             // [N, K] or empty (a default Tensor is a rank-0 scalar, not empty)

  /// Rows `idx` into `out` (reuses out's buffers). Checks idx against rows.
  void gather(const std::vector<Index>& idx, Batch& out) const;
  /// Rows [begin, end).
  void slice(Index begin, Index end, Batch& out) const;
  /// Checks every column's size against rows and the schema, and the ids of non-hashed sparse and
  /// sequence fields against their vocab; throws naming the column.
  void validate() const;
  /// Splits off the rows [begin, end) into a new dataset.
  Dataset subset(Index begin, Index end) const;
  /// The rows `idx` (in that order, repeats allowed) as a new dataset.
  Dataset take(const std::vector<Index>& idx) const;
};

/// The dataset with only the tasks named in `tasks`, in that order: labels, label_mask and oracle
/// keep those columns, the schema those task specs (e.g. the simulator's click task alone for a
/// single-task model). Throws mtrank::Error naming an unknown or repeated task, or an empty list.
Dataset select_tasks(const Dataset& d, const std::vector<std::string>& tasks);

}  // namespace mtrank::data
