// Batch-parallel inference: one large batch scored by num_threads() threads, each running the
// model on a contiguous slice of rows with its own workspace.
//
// Intra-op threading (mtrank::set_num_threads) otherwise only parallelises inside each GEMM;
// everything between GEMMs (activations, gates, mixtures, embedding lookups, per-sample DIN
// attention) runs on one thread. Cutting the batch into row slices parallelises all of it.
//
// Threads: the slices run on an OpenMP team of `slices` threads. Kernels called inside the team
// run single-threaded: oneDNN (sgemm and primitives) runs sequentially when omp_in_parallel() is
// true, and libgomp's default max-active-levels is 1, so no nested teams are started (checked
// with oneDNN 2.6 / GCC 12 libgomp, also with OMP_MAX_ACTIVE_LEVELS=4).
//
// Determinism: the split depends only on the batch size, the thread count and min_rows_per_slice,
// and each slice runs single-threaded, so the same batch and thread count give bit-identical
// outputs. Equality with the one-thread forward is not guaranteed bit for bit (a GEMM could pick
// a different kernel or summation order for a slice's M than for the whole batch's M), but with
// the GEMMs as of this writing (oneDNN sgemm) it held exactly: mmoe, ple, mmoe_full, din_L50 and
// din_L200 of bench/model_cases.hpp at batch 100 and 1024 with 2 and 3 threads, and the mmoe of
// tests/models/test_parallel_inference.cpp (which checks a 1e-5 relative tolerance and reports
// whether the outputs were exact).
#pragma once
#include <exception>
#include <memory>
#include <type_traits>
#include <vector>

#include "mtrank/core/tensor.hpp"
#include "mtrank/data/batch.hpp"
#include "mtrank/models/model.hpp"

namespace mtrank::models {

/// Number of row slices for `rows` rows on `threads` threads when every slice needs at least
/// `min_rows` rows: clamp(rows / min_rows, 1, threads). Slice s covers rows
/// [slice_begin(rows, slices, s), slice_begin(rows, slices, s + 1)): sizes differ by at most one.
int row_slice_count(Index rows, int threads, Index min_rows);
inline Index slice_begin(Index rows, int slices, int s) { return rows * s / slices; }

namespace detail {
using RowSliceFn = void (*)(void* state, int slice, Index begin, Index end);
void run_row_slices(Index rows, int slices, RowSliceFn fn, void* state);
}  // namespace detail

/// Calls fn(slice, begin, end) for every slice of [0, rows) cut into `slices` slices, the slices
/// in parallel on an OpenMP team of `slices` threads (one slice: called on the calling thread).
/// Exceptions never leave a thread: each slice's is caught, and after all slices finished the one
/// of the lowest failing slice is rethrown as mtrank::Error naming its rows. No allocation beyond
/// what fn does (fn is called through a function pointer, not a std::function).
template <class Fn>
void for_each_row_slice(Index rows, int slices, Fn&& fn) {
  using F = std::remove_reference_t<Fn>;
  detail::run_row_slices(
      rows, slices, [](void* state, int s, Index b, Index e) { (*static_cast<F*>(state))(s, b, e); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

struct ParallelInferenceOptions {
  /// Smallest slice: batches with fewer than 2 * min_rows_per_slice rows run as one slice on the
  /// calling thread (with the GEMMs' own intra-op threads, exactly as Model::forward).
  Index min_rows_per_slice = 64;
};

/// Scores batches of one model with num_threads() threads (read at every call). Owns one
/// workspace and one slice batch per thread and the [B, K] output, all reused across calls: no
/// allocation once it has seen the largest batch at the current thread count. The model is only
/// read (many ParallelInference objects may share one model); one object serves one caller at a
/// time.
class ParallelInference {
 public:
  explicit ParallelInference(const Model& model, ParallelInferenceOptions opt = {});

  /// Model::forward(batch, ws, Context::inference()) as [B, K]. The view is valid until the next call.
  ConstMat forward(const data::Batch& batch);
  /// Model::serve(batch, ws) as [B, K] (training-only terms dropped). Valid until the next call.
  ConstMat serve(const data::Batch& batch);

  /// Slices the last call ran (1: the whole batch in place on the calling thread).
  int last_slices() const { return last_slices_; }
  const Model& model() const { return model_; }
  const ParallelInferenceOptions& options() const { return opt_; }

 private:
  ConstMat run(const data::Batch& batch, bool serve);
  const Model& model_;
  ParallelInferenceOptions opt_;
  std::vector<std::unique_ptr<Model::Workspace>> ws_;  // one per slice
  std::vector<data::Batch> slices_;                    // one per slice
  std::vector<ConstMat> slice_out_;                    // each slice's output, a view into its workspace
  Tensor out_;
  int last_slices_ = 0;
};

}  // namespace mtrank::models
