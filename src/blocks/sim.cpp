#include "mtrank/blocks/sim.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "mtrank/kernels/gemm.hpp"

namespace mtrank::blocks {

GeneralSearchUnit::GeneralSearchUnit(GeneralSearchUnitOptions opt) : opt_(opt) {
  require(opt.top_k > 0, "GeneralSearchUnit: top_k must be > 0, got ", opt.top_k);
}

namespace {
void reset_selection(Selection& out, Index B, Index K) {
  out.batch = B;
  out.k = K;
  out.index.assign(static_cast<std::size_t>(B * K), -1);
  out.count.assign(static_cast<std::size_t>(B), 0);
}
}  // namespace

void GeneralSearchUnit::hard_search(std::span<const std::int64_t> categories, nn::Lengths lengths,
                                    std::span<const std::int64_t> candidate_category, Selection& out) const {
  const Index B = static_cast<Index>(lengths.size());
  if (static_cast<Index>(candidate_category.size()) != B)
    fail("GeneralSearchUnit candidate_category: size ", candidate_category.size(), " != batch ", B);
  nn::SeqWindows& w = out.scratch.windows;
  nn::make_windows(lengths, B, static_cast<Index>(categories.size()), 0, nn::Overflow::reject,
                   "GeneralSearchUnit categories", w);
  const Index K = std::min(opt_.top_k, std::max<Index>(w.max_count, 1));  // no slots beyond the longest window
  reset_selection(out, B, K);
  for (Index b = 0; b < B; ++b) {
    std::int64_t* sel = out.index.data() + b * K;
    Index n = 0;
    for (Index t = w.count[b]; t-- > 0 && n < K;)  // most recent first
      if (categories[static_cast<std::size_t>(w.row(b, t))] == candidate_category[b]) sel[n++] = t;
    std::reverse(sel, sel + n);  // chronological
    out.count[b] = n;
  }
}

template <class T>
void GeneralSearchUnit::soft_search(MatrixView<const T> behaviours, nn::Lengths lengths, MatrixView<const T> query,
                                    Selection& out) const {
  const Index B = static_cast<Index>(lengths.size()), d = behaviours.cols;
  if (query.rows != B) fail("GeneralSearchUnit query: ", query.rows, " rows != batch ", B);
  if (query.cols != d) fail("GeneralSearchUnit query: ", query.cols, " columns != behaviour width ", d);
  nn::SeqWindows& w = out.scratch.windows;
  nn::make_windows(lengths, B, behaviours.rows, 0, nn::Overflow::reject, "GeneralSearchUnit behaviours", w);
  const Index K = std::min(opt_.top_k, std::max<Index>(w.max_count, 1));  // no slots beyond the longest window
  reset_selection(out, B, K);
  TensorT<T>& scores = [&]() -> TensorT<T>& {
    if constexpr (std::is_same_v<T, float>) return out.scratch.scores;
    else return out.scratch.scores_d;
  }();
  scores.resize(Shape{std::max<Index>(w.max_count, 1), 1});
  std::vector<Index>& order = out.scratch.order;
  for (Index b = 0; b < B; ++b) {
    const Index n = w.count[b];
    if (n == 0) continue;
    MatrixView<T> s(scores.data(), n, 1);
    kernels::matmul<T>(behaviours.row_block(w.row(b, 0), n), false, query.row_block(b, 1), true, s);
    const T* sc = scores.data();
    // Higher score first; among equal scores the more recent (larger t) first.
    auto better = [sc](Index x, Index y) { return sc[x] > sc[y] || (sc[x] == sc[y] && x > y); };
    order.resize(static_cast<std::size_t>(n));
    for (Index t = 0; t < n; ++t) order[t] = t;
    const Index m = std::min(K, n);
    if (m < n) std::nth_element(order.begin(), order.begin() + (m - 1), order.end(), better);
    std::sort(order.begin(), order.begin() + m);  // chronological
    std::int64_t* sel = out.index.data() + b * K;
    for (Index i = 0; i < m; ++i) sel[i] = order[i];
    out.count[b] = m;
  }
}

template void GeneralSearchUnit::soft_search<float>(MatrixView<const float>, nn::Lengths, MatrixView<const float>,
                                                    Selection&) const;
template void GeneralSearchUnit::soft_search<double>(MatrixView<const double>, nn::Lengths, MatrixView<const double>,
                                                     Selection&) const;

namespace {
void check_selection(const Selection& sel, Index rows, Index padded_len, const char* what) {
  if (sel.batch * padded_len != rows)
    fail(what, ": values have ", rows, " rows, expected selection batch ", sel.batch, " x padded length ", padded_len);
  if (static_cast<Index>(sel.index.size()) != sel.batch * sel.k || static_cast<Index>(sel.count.size()) != sel.batch)
    fail(what, ": selection index/count sizes disagree with batch ", sel.batch, " and k ", sel.k);
}
}  // namespace

template <class T>
void gather_selected(MatrixView<const T> values, Index padded_len, const Selection& sel, TensorT<T>& out) {
  check_selection(sel, values.rows, padded_len, "gather_selected");
  const Index d = values.cols;
  out.resize(Shape{sel.batch * sel.k, d});
  out.zero();
  for (Index b = 0; b < sel.batch; ++b)
    for (Index i = 0; i < sel.count[b]; ++i) {
      const std::int64_t t = sel.index[b * sel.k + i];
      if (t < 0 || t >= padded_len) fail("gather_selected: selection index[", b * sel.k + i, "] = ", t, " outside [0, ", padded_len, ")");
      std::memcpy(out.data() + (b * sel.k + i) * d, values.row(b * padded_len + t), sizeof(T) * d);
    }
}

template <class T>
void scatter_add_selected(MatrixView<const T> grad, const Selection& sel, Index padded_len, MatrixView<T> dvalues) {
  check_selection(sel, dvalues.rows, padded_len, "scatter_add_selected");
  require_shape(grad, sel.batch * sel.k, dvalues.cols, "scatter_add_selected grad");
  for (Index b = 0; b < sel.batch; ++b)
    for (Index i = 0; i < sel.count[b]; ++i) {
      const std::int64_t t = sel.index[b * sel.k + i];
      T* dst = dvalues.row(b * padded_len + t);
      const T* src = grad.row(b * sel.k + i);
      for (Index c = 0; c < dvalues.cols; ++c) dst[c] += src[c];
    }
}

template void gather_selected<float>(MatrixView<const float>, Index, const Selection&, TensorT<float>&);
template void gather_selected<double>(MatrixView<const double>, Index, const Selection&, TensorT<double>&);
template void scatter_add_selected<float>(MatrixView<const float>, const Selection&, Index, MatrixView<float>);
template void scatter_add_selected<double>(MatrixView<const double>, const Selection&, Index, MatrixView<double>);

void gather_selected_ids(std::span<const std::int64_t> values, Index padded_len, const Selection& sel,
                         std::vector<std::int64_t>& out, std::int64_t fill) {
  check_selection(sel, static_cast<Index>(values.size()), padded_len, "gather_selected_ids");
  out.assign(static_cast<std::size_t>(sel.batch * sel.k), fill);
  for (Index b = 0; b < sel.batch; ++b)
    for (Index i = 0; i < sel.count[b]; ++i) out[b * sel.k + i] = values[b * padded_len + sel.index[b * sel.k + i]];
}

template <class T>
ExactSearchUnit<T>::ExactSearchUnit(ParameterArenaT<T>& arena, std::string_view prefix, ExactSearchUnitOptions opt)
    : opt_(opt), name_(prefix) {
  require(opt.embed_dim > 0, "ExactSearchUnit '", prefix, "': embed_dim must be > 0");
  require(opt.time_buckets > 0, "ExactSearchUnit '", prefix, "': time_buckets must be > 0");
  require(opt.time_base > 1.0, "ExactSearchUnit '", prefix, "': time_base must be > 1");
  Index tdim = opt.embed_dim;
  if (opt.time_mode == TimeMode::concat) {
    require(opt.time_dim > 0, "ExactSearchUnit '", prefix, "': concat time mode needs time_dim > 0");
    tdim = opt.time_dim;
  }
  width_ = opt.time_mode == TimeMode::concat ? opt.embed_dim + tdim : opt.embed_dim;
  time_ = &arena.add(join_name(prefix, "time_embedding.weight"), Shape{opt.time_buckets, tdim},
                     {.init = opt.embedding_init, .sparse = true});
  attn_ = nn::MultiHeadAttention<T>(arena, join_name(prefix, "attn"), {.embed_dim = width_, .num_heads = opt.num_heads});
}

template <class T>
MatrixView<const T> ExactSearchUnit<T>::forward(MatrixView<const T> candidate, MatrixView<const T> behaviours,
                                                std::span<const std::int64_t> gaps, nn::Lengths lengths,
                                                Workspace& ws, const Context& ctx) const {
  const Index d = opt_.embed_dim, D = width_;
  const Index B = static_cast<Index>(lengths.size());
  require_shape(candidate, B, d, "ExactSearchUnit candidate");
  if (behaviours.cols != d) fail("ExactSearchUnit behaviours: ", behaviours.cols, " columns, expected ", d);
  nn::make_windows(lengths, B, behaviours.rows, 0, nn::Overflow::reject, "ExactSearchUnit behaviours", ws.kw);
  if (static_cast<Index>(gaps.size()) != behaviours.rows)
    fail("ExactSearchUnit gaps: size ", gaps.size(), " != behaviour rows ", behaviours.rows);
  ws.qw.set_single(ws.kw);
  const nn::SeqWindows& w = ws.kw;
  MatrixView<T> keys = ensure(ws.keys, behaviours.rows, D);
  ws.keys.zero();
  ws.buckets.assign(static_cast<std::size_t>(behaviours.rows), 0);
  const Index tdim = time_->shape[1];
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < w.count[b]; ++i) {
      const Index row = w.row(b, i);
      const Index k = nn::time_gap_bucket(gaps[row], opt_.time_buckets, opt_.time_base);
      ws.buckets[row] = k;
      const T* e = time_->value + k * tdim;
      const T* x = behaviours.row(row);
      T* o = keys.row(row);
      if (opt_.time_mode == TimeMode::add) {
        for (Index c = 0; c < d; ++c) o[c] = x[c] + e[c];
      } else {
        std::copy(x, x + d, o);
        std::copy(e, e + tdim, o + d);
      }
    }
  MatrixView<const T> q = candidate;
  if (opt_.time_mode == TimeMode::concat) {
    MatrixView<T> qq = ensure(ws.query, B, D);
    ws.query.zero();
    copy(candidate, qq.col_block(0, d));
    q = qq;
  }
  return attn_.forward(q, ws.qw, keys, ws.kw, ws.mha, ctx);
}

template <class T>
typename ExactSearchUnit<T>::Grads ExactSearchUnit<T>::backward(MatrixView<const T> dy, Workspace& ws,
                                                                bool need_dx) const {
  const Index d = opt_.embed_dim;
  auto g = attn_.backward(dy, ws.mha, true);
  const nn::SeqWindows& w = ws.kw;
  const Index tdim = time_->shape[1];
  const Index off = opt_.time_mode == TimeMode::add ? 0 : d;
  for (Index b = 0; b < w.batch; ++b)
    for (Index i = 0; i < w.count[b]; ++i) {
      const Index row = w.row(b, i);
      T* gr = time_->sparse_grad.row(ws.buckets[row]);
      const T* src = g.memory.row(row) + off;
      for (Index c = 0; c < tdim; ++c) gr[c] += src[c];
    }
  if (!need_dx) return {};
  MatrixView<T> dc = ensure(ws.dcand, w.batch, d);
  copy(g.query.col_block(0, d), dc);
  MatrixView<T> db = ensure(ws.dbeh, g.memory.rows, d);
  copy(g.memory.col_block(0, d), db);
  return {dc, db};
}

template class ExactSearchUnit<float>;
template class ExactSearchUnit<double>;

}  // namespace mtrank::blocks
