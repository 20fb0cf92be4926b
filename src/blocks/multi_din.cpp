#include "mtrank/blocks/multi_din.hpp"

#include <set>

namespace mtrank::blocks {

template <class T>
MultiDin<T>::MultiDin(ParameterArenaT<T>& arena, std::string_view prefix, MultiDinOptions opt)
    : opt_(std::move(opt)), name_(prefix) {
  require(opt_.dim > 0, "MultiDin '", prefix, "': dim must be > 0");
  require(!opt_.sequences.empty(), "MultiDin '", prefix, "': at least one sequence is required");
  std::set<std::string> seen;
  for (std::size_t s = 0; s < opt_.sequences.size(); ++s) {
    auto& seq = opt_.sequences[s];
    require(!seq.name.empty(), "MultiDin '", prefix, "': sequences[", s, "].name is empty");
    require(seen.insert(seq.name).second, "MultiDin '", prefix, "': duplicate sequence name '", seq.name, "'");
    if (seq.din.dim == 0) seq.din.dim = opt_.dim;
    require(seq.din.dim == opt_.dim, "MultiDin '", prefix, "': sequence '", seq.name, "' has dim ", seq.din.dim,
            " but the query has dim ", opt_.dim);
    units_.emplace_back(arena, join_name(prefix, seq.name), seq.din);
  }
}

template <class T>
MatrixView<const T> MultiDin<T>::forward(MatrixView<const T> query, const std::vector<SequenceInput<T>>& sequences,
                                         Workspace& ws, const Context& ctx) const {
  if (sequences.size() != units_.size())
    fail("MultiDin '", name_, "': got ", sequences.size(), " sequences, expected ", units_.size());
  const Index d = opt_.dim;
  ws.units.resize(units_.size());
  MatrixView<T> y = ensure(ws.y, query.rows, d * static_cast<Index>(units_.size()));
  for (std::size_t s = 0; s < units_.size(); ++s) {
    auto p = units_[s].forward(query, sequences[s].values, sequences[s].lengths, ws.units[s], ctx);
    copy(p, y.col_block(static_cast<Index>(s) * d, d));
  }
  return y;
}

template <class T>
typename MultiDin<T>::Grads MultiDin<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  const Index d = opt_.dim;
  require_shape(dy, ws.y.matrix().rows, out_features(), "MultiDin backward dy");
  Grads g;
  MatrixView<T> dq = ensure(ws.dq, dy.rows, d);
  ws.dq.zero();
  for (std::size_t s = 0; s < units_.size(); ++s) {
    auto gs = units_[s].backward(dy.col_block(static_cast<Index>(s) * d, d), ws.units[s], need_dx);
    if (!need_dx) continue;
    for (Index r = 0; r < dq.rows; ++r)
      for (Index c = 0; c < d; ++c) dq(r, c) += gs.query(r, c);
    g.sequences.push_back(gs.keys);
  }
  if (need_dx) g.query = dq;
  return g;
}

template class MultiDin<float>;
template class MultiDin<double>;

}  // namespace mtrank::blocks
