// Padded sequence layout shared by every sequence block (DIN, multi-DIN, GRU, attention,
// Transformer, SIM).
//
//   values  : MatrixView [B*L, d], i.e. a contiguous [B, L, d] buffer; row b*L + t holds
//             position t of sample b. L (the padded length) is values.rows / B.
//   lengths : std::span<const std::int64_t> [B] with 0 <= len_b <= L.
//
// Valid positions of sample b are t in [0, len_b), in time order: position 0 is the oldest
// behaviour, position len_b - 1 the most recent. Positions t >= len_b are padding: they never
// influence an output, receive exactly zero gradient, and the blocks write zeros into output
// rows there. Padding rows must hold finite numbers (zeros are what pad_ragged writes): some
// blocks run one GEMM over the whole [B*L, d] buffer and multiply padding rows by zero
// gradients, and 0 * NaN is NaN.
//
// An empty sequence (len_b = 0) is legal: pooling blocks return a zero vector for it and it
// contributes zero gradient everywhere.
//
// Maximum length. Blocks with a max_len option (0 = unlimited) compare it with len_b:
// Overflow::truncate keeps the most recent max_len items, i.e. the window
// [len_b - max_len, len_b), without copying (the window start is an offset); Overflow::reject
// throws mtrank::Error naming the sample. Positions before the window are treated as padding.
//
// Ragged input (values [N, d] with offsets [B + 1]) is converted by pad_ragged().
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "mtrank/core/error.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::nn {

using Lengths = std::span<const std::int64_t>;

enum class Overflow { truncate, reject };

/// Validated per-sample windows of a padded batch: sample b uses rows
/// b * padded + start[b] + i for i in [0, count[b]).
struct SeqWindows {
  Index batch = 0;
  Index padded = 0;  // L
  std::vector<Index> start, count;
  Index total = 0;      // sum of count
  Index max_count = 0;  // max of count
  Index row(Index b, Index i) const { return b * padded + start[b] + i; }
  bool valid(Index b, Index t) const { return t >= start[b] && t < start[b] + count[b]; }
  /// Windows of a single-row-per-sample "sequence": count[b] = flag[b] ? 1 : 0.
  void set_single(const SeqWindows& like) {
    batch = like.batch;
    padded = 1;
    start.assign(static_cast<std::size_t>(batch), 0);
    count.resize(static_cast<std::size_t>(batch));
    total = 0;
    max_count = 0;
    for (Index b = 0; b < batch; ++b) {
      count[b] = like.count[b] > 0 ? 1 : 0;
      total += count[b];
      max_count = std::max(max_count, count[b]);
    }
  }
};

/// Checks `lengths` against a padded buffer with `rows` rows for `batch` samples and applies
/// the max_len policy. `what` names the input in error messages.
inline void make_windows(Lengths lengths, Index batch, Index rows, Index max_len, Overflow overflow,
                         std::string_view what, SeqWindows& w) {
  if (static_cast<Index>(lengths.size()) != batch)
    fail(what, " lengths: size ", lengths.size(), " != batch ", batch);
  if (batch == 0) {
    if (rows != 0) fail(what, " values: ", rows, " rows for an empty batch");
  } else if (rows % batch != 0) {
    fail(what, " values: ", rows, " rows is not batch (", batch, ") x padded length");
  }
  w.batch = batch;
  w.padded = batch ? rows / batch : 0;
  w.start.resize(static_cast<std::size_t>(batch));
  w.count.resize(static_cast<std::size_t>(batch));
  w.total = 0;
  w.max_count = 0;
  for (Index b = 0; b < batch; ++b) {
    const std::int64_t len = lengths[static_cast<std::size_t>(b)];
    if (len < 0) fail(what, " lengths[", b, "] = ", len, " is negative");
    if (len > w.padded)
      fail(what, " lengths[", b, "] = ", len, " exceeds the padded length ", w.padded, " (values rows ", rows,
           " / batch ", batch, ")");
    Index n = len, s = 0;
    if (max_len > 0 && n > max_len) {
      if (overflow == Overflow::reject)
        fail(what, " lengths[", b, "] = ", len, " exceeds max_len ", max_len, " (overflow = reject)");
      s = n - max_len;
      n = max_len;
    }
    w.start[b] = s;
    w.count[b] = n;
    w.total += n;
    w.max_count = std::max(w.max_count, n);
  }
}

/// Ragged -> padded: sample b is values rows [offsets[b], offsets[b+1]). Writes out
/// [B * padded_len, d] (zeros at padding) and lengths [B]. padded_len = 0 means "longest
/// sequence". A sequence longer than padded_len keeps its most recent (last) padded_len rows
/// with Overflow::truncate and throws with Overflow::reject.
template <class T>
void pad_ragged(MatrixView<const T> values, std::span<const std::int64_t> offsets, Index padded_len,
                Overflow overflow, TensorT<T>& out, std::vector<std::int64_t>& lengths) {
  if (offsets.empty()) fail("pad_ragged offsets: empty, expected batch + 1 entries starting at 0");
  if (offsets[0] != 0) fail("pad_ragged offsets[0] = ", offsets[0], ", expected 0");
  const Index batch = static_cast<Index>(offsets.size()) - 1;
  Index longest = 0;
  for (Index b = 0; b < batch; ++b) {
    const std::int64_t lo = offsets[b], hi = offsets[b + 1];
    if (hi < lo) fail("pad_ragged offsets[", b + 1, "] = ", hi, " < offsets[", b, "] = ", lo);
    longest = std::max<Index>(longest, hi - lo);
  }
  if (offsets.back() != values.rows)
    fail("pad_ragged offsets[", batch, "] = ", offsets.back(), " != values rows ", values.rows);
  const Index L = padded_len > 0 ? padded_len : longest;
  const Index d = values.cols;
  out.resize(Shape{batch * L, d});
  out.zero();
  lengths.assign(static_cast<std::size_t>(batch), 0);
  for (Index b = 0; b < batch; ++b) {
    Index lo = offsets[b], n = offsets[b + 1] - offsets[b];
    if (n > L) {
      if (overflow == Overflow::reject)
        fail("pad_ragged: sample ", b, " has ", n, " items > padded length ", L, " (overflow = reject)");
      lo += n - L;
      n = L;
    }
    for (Index i = 0; i < n; ++i) std::memcpy(out.data() + (b * L + i) * d, values.row(lo + i), sizeof(T) * d);
    lengths[b] = n;
  }
}

/// Log-scale bucket of a non-negative time gap: 0 for gap 0, otherwise 1 + floor(log_base(gap))
/// (computed by exact repeated multiplication), capped at num_buckets - 1.
inline Index time_gap_bucket(std::int64_t gap, Index num_buckets, double base = 2.0) {
  if (gap < 0) fail("time gap ", gap, " is negative (gaps are request time - behaviour time)");
  if (gap == 0 || num_buckets <= 1) return 0;
  Index k = 0;
  double p = base;
  while (p <= static_cast<double>(gap)) {
    p *= base;
    ++k;
  }
  return std::min<Index>(num_buckets - 1, 1 + k);
}

/// Zeroes the rows of m (a [B*L, d] padded matrix) that lie outside the windows.
template <class T>
void zero_outside(MatrixView<T> m, const SeqWindows& w) {
  for (Index b = 0; b < w.batch; ++b)
    for (Index t = 0; t < w.padded; ++t)
      if (!w.valid(b, t)) std::memset(m.row(b * w.padded + t), 0, sizeof(T) * m.cols);
}

}  // namespace mtrank::nn
