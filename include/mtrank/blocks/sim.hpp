// SIM: Search-based user Interest Modeling (Pi et al., CIKM 2020).
//
// Stage 1, GeneralSearchUnit (GSU), over a long behaviour sequence (L up to 10^4) in the padded
// layout of mtrank/nn/sequence.hpp (oldest first):
//   hard search: behaviours whose category equals the candidate's category; the most recent
//                top_k matches are kept.
//   soft search: the top_k behaviours by inner product <q_b, e_j> of the candidate's and the
//                behaviour's (GSU) embeddings; ties go to the more recent behaviour. Partial
//                selection (std::nth_element, O(L) per sample) -- never a full sort.
// Both return a Selection: per sample up to top_k positions, in chronological order (so the
// selected sub-sequence is again "first count valid, oldest first"), padded with -1.
// Selection is not differentiable: soft-search embeddings receive no gradient through it
// (as in the paper, the GSU embeddings are trained by their own auxiliary loss, if at all).
//
// Stage 2, ExactSearchUnit (ESU): multi-head target attention of the candidate over the K
// retrieved behaviours, with time-interval embeddings of the bucketised gap
// (request time - behaviour time; nn::time_gap_bucket) joined to every behaviour:
//   TimeMode::add     e_j = b_j + T[bucket_j]            width D = d, query = candidate
//   TimeMode::concat  e_j = [b_j ; T[bucket_j]]          width D = d + time_dim, query =
//                     [candidate ; 0] (the candidate carries no time part)
//   y = MHA(query, e)  -> [B, D], zero for a sample with nothing retrieved.
// Parameters: "<prefix>.time_embedding.weight" [time_buckets, d or time_dim] (sparse rows),
// "<prefix>.attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias}".
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/nn/attention.hpp"
#include "mtrank/nn/sequence.hpp"

namespace mtrank::blocks {

/// Per-sample selected positions: index[b*k + i] for i < count[b], then -1; k = min(top_k, the
/// longest window of the batch) (never more slots than behaviours, whatever top_k says).
struct Selection {
  Index batch = 0;
  Index k = 0;
  std::vector<std::int64_t> index;
  std::vector<std::int64_t> count;  // usable directly as the ESU's lengths
  /// The searches' scratch (windows, soft-search scores and order), kept with the selection so
  /// that a search reusing one Selection allocates nothing once it has seen its largest input.
  struct Scratch {
    nn::SeqWindows windows;
    std::vector<Index> order;
    TensorT<float> scores;
    TensorT<double> scores_d;
  } scratch;
};

struct GeneralSearchUnitOptions {
  Index top_k = 0;
};

class GeneralSearchUnit {
 public:
  explicit GeneralSearchUnit(GeneralSearchUnitOptions opt);
  /// categories [B*L] (one id per behaviour), candidate_category [B].
  void hard_search(std::span<const std::int64_t> categories, nn::Lengths lengths,
                   std::span<const std::int64_t> candidate_category, Selection& out) const;
  /// behaviours [B*L, d] (GSU embeddings), query [B, d].
  template <class T>
  void soft_search(MatrixView<const T> behaviours, nn::Lengths lengths, MatrixView<const T> query,
                   Selection& out) const;
  Index top_k() const { return opt_.top_k; }

 private:
  GeneralSearchUnitOptions opt_;
};

/// out [B*k, d] = rows of values [B*L, d] picked by the selection (zeros at empty slots).
template <class T>
void gather_selected(MatrixView<const T> values, Index padded_len, const Selection& sel, TensorT<T>& out);
/// dvalues [B*L, d] += scatter of grad [B*k, d] (the backward of gather_selected).
template <class T>
void scatter_add_selected(MatrixView<const T> grad, const Selection& sel, Index padded_len, MatrixView<T> dvalues);
/// out [B*k] = ids picked by the selection (`fill` at empty slots).
void gather_selected_ids(std::span<const std::int64_t> values, Index padded_len, const Selection& sel,
                         std::vector<std::int64_t>& out, std::int64_t fill = 0);

enum class TimeMode { add, concat };

struct ExactSearchUnitOptions {
  Index embed_dim = 0;  // d: width of candidate and behaviours
  Index num_heads = 1;
  Index time_buckets = 32;
  double time_base = 2.0;
  TimeMode time_mode = TimeMode::add;
  Index time_dim = 0;  // concat only (> 0)
  Init embedding_init = Init::embedding_default();
};

template <class T = float>
class ExactSearchUnit {
 public:
  using Scalar = T;
  struct Workspace {
    nn::SeqWindows kw, qw;
    std::vector<Index> buckets;
    TensorT<T> keys, query, dcand, dbeh;
    typename nn::MultiHeadAttention<T>::Workspace mha;
  };
  struct Grads {
    MatrixView<const T> candidate, behaviours;
  };
  ExactSearchUnit() = default;
  ExactSearchUnit(ParameterArenaT<T>& arena, std::string_view prefix, ExactSearchUnitOptions opt);

  /// candidate [B, d]; behaviours [B*K, d] (e.g. gather_selected output); gaps [B*K];
  /// lengths [B] (Selection::count) -> [B, out_features()].
  MatrixView<const T> forward(MatrixView<const T> candidate, MatrixView<const T> behaviours,
                              std::span<const std::int64_t> gaps, nn::Lengths lengths, Workspace& ws,
                              const Context& ctx = {}) const;
  Grads backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  Index out_features() const { return width_; }

 private:
  ExactSearchUnitOptions opt_;
  std::string name_;
  Index width_ = 0;
  Parameter<T>* time_ = nullptr;
  nn::MultiHeadAttention<T> attn_;
};

extern template class ExactSearchUnit<float>;
extern template class ExactSearchUnit<double>;

}  // namespace mtrank::blocks
