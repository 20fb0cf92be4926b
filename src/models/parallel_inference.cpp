#include "mtrank/models/parallel_inference.hpp"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "mtrank/core/threading.hpp"

namespace mtrank::models {

int row_slice_count(Index rows, int threads, Index min_rows) {
  require(threads >= 1, "row_slice_count: expected threads >= 1, got ", threads);
  require(min_rows >= 1, "row_slice_count: expected min_rows >= 1, got ", min_rows);
  return static_cast<int>(std::clamp<Index>(rows / min_rows, 1, threads));
}

namespace detail {
namespace {

std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

void run_row_slices(Index rows, int slices, RowSliceFn fn, void* state) {
  require(rows >= 0, "run_row_slices: expected rows >= 0, got ", rows);
  require(slices >= 1, "run_row_slices: expected slices >= 1, got ", slices);
  if (slices == 1) {
    fn(state, 0, 0, rows);
    return;
  }
  // The lowest failing slice wins, so the error reported does not depend on thread timing.
  int failed = slices;
  std::exception_ptr error;
#pragma omp parallel num_threads(slices)
  {
    // A team smaller than asked (OMP_THREAD_LIMIT, OMP_DYNAMIC) still covers every slice.
    for (int s = omp_get_thread_num(); s < slices; s += omp_get_num_threads()) {
      try {
        fn(state, s, slice_begin(rows, slices, s), slice_begin(rows, slices, s + 1));
      } catch (...) {
#pragma omp critical(mtrank_row_slice_error)
        if (s < failed) {
          failed = s;
          error = std::current_exception();
        }
      }
    }
  }
  if (error)
    fail("rows [", slice_begin(rows, slices, failed), ", ", slice_begin(rows, slices, failed + 1), ") of ", rows,
         " (slice ", failed, " of ", slices, "): ", describe(error));
}

}  // namespace detail

ParallelInference::ParallelInference(const Model& model, ParallelInferenceOptions opt) : model_(model), opt_(opt) {
  require(opt_.min_rows_per_slice >= 1, "ParallelInference: min_rows_per_slice must be >= 1, got ",
          opt_.min_rows_per_slice);
  ws_.push_back(model_.make_workspace());
}

ConstMat ParallelInference::forward(const data::Batch& batch) { return run(batch, false); }
ConstMat ParallelInference::serve(const data::Batch& batch) { return run(batch, true); }

ConstMat ParallelInference::run(const data::Batch& batch, bool serve) {
  const Index B = batch.size;
  const int slices = row_slice_count(B, num_threads(), opt_.min_rows_per_slice);
  last_slices_ = slices;
  auto score = [&](const data::Batch& b, Model::Workspace& ws) {
    return serve ? model_.serve(b, ws) : model_.forward(b, ws, Context::inference());
  };
  if (slices == 1) return score(batch, *ws_[0]);

  while (static_cast<int>(ws_.size()) < slices) ws_.push_back(model_.make_workspace());
  if (static_cast<int>(slices_.size()) < slices) slices_.resize(static_cast<std::size_t>(slices));
  slice_out_.assign(static_cast<std::size_t>(slices), ConstMat{});
  for_each_row_slice(B, slices, [&](int s, Index begin, Index end) {
    data::Batch& part = slices_[static_cast<std::size_t>(s)];
    data::slice_batch(batch, begin, end, part);
    slice_out_[static_cast<std::size_t>(s)] = score(part, *ws_[static_cast<std::size_t>(s)]);
  });

  const Index K = slice_out_[0].cols;
  for (int s = 0; s < slices; ++s) {
    const ConstMat& y = slice_out_[static_cast<std::size_t>(s)];
    const Index rows = slice_begin(B, slices, s + 1) - slice_begin(B, slices, s);
    require(y.rows == rows && y.cols == K, "ParallelInference: slice ", s, " returned [", y.rows, ", ", y.cols,
            "], expected [", rows, ", ", K, "]");
  }
  out_.resize(Shape{B, K});
  for (int s = 0; s < slices; ++s) {
    const ConstMat& y = slice_out_[static_cast<std::size_t>(s)];
    const Index r0 = slice_begin(B, slices, s);
    for (Index r = 0; r < y.rows; ++r)
      std::memcpy(out_.data() + (r0 + r) * K, y.row(r), sizeof(float) * static_cast<std::size_t>(K));
  }
  return out_.matrix();
}

}  // namespace mtrank::models
