#include "mtrank/nn/transformer.hpp"

namespace mtrank::nn {

template <class T>
TransformerEncoderLayer<T>::TransformerEncoderLayer(ParameterArenaT<T>& arena, std::string_view prefix,
                                                    TransformerEncoderLayerOptions opt)
    : opt_(opt),
      attn_(arena, join_name(prefix, "self_attn"), {.embed_dim = opt.d_model, .num_heads = opt.nhead}),
      lin1_(arena, join_name(prefix, "linear1"), {.in = opt.d_model, .out = opt.dim_feedforward}),
      lin2_(arena, join_name(prefix, "linear2"), {.in = opt.dim_feedforward, .out = opt.d_model}),
      norm1_(arena, join_name(prefix, "norm1"), {.width = opt.d_model, .eps = opt.layer_norm_eps}),
      norm2_(arena, join_name(prefix, "norm2"), {.width = opt.d_model, .eps = opt.layer_norm_eps}),
      act_(arena, join_name(prefix, "activation"), {.kind = opt.activation, .width = opt.dim_feedforward}),
      drop_({.p = opt.dropout}),
      drop1_({.p = opt.dropout}),
      drop2_({.p = opt.dropout}) {
  require(opt.activation == ActivationKind::relu || opt.activation == ActivationKind::gelu,
          "TransformerEncoderLayer '", prefix, "': activation must be relu or gelu (as PyTorch)");
}

template <class T>
MatrixView<const T> TransformerEncoderLayer<T>::forward(MatrixView<const T> x, const SeqWindows& w, Workspace& ws,
                                                        const Context& ctx) const {
  const Index d = opt_.d_model;
  if (x.cols != d) fail("TransformerEncoderLayer: input has ", x.cols, " columns, expected d_model ", d);
  ws.win = &w;
  auto sa = attn_.forward(x, w, x, w, ws.attn, ctx);
  sa = drop1_.forward(sa, ws.drop1, ctx);
  MatrixView<T> s1 = ensure(ws.s1, x.rows, d);
  for (Index r = 0; r < x.rows; ++r)
    for (Index j = 0; j < d; ++j) s1(r, j) = x(r, j) + sa(r, j);
  auto h1 = norm1_.forward(s1, ws.norm1, ctx);
  auto f = lin1_.forward(h1, ws.lin1, ctx);
  f = act_.forward(f, ws.act, ctx);
  f = drop_.forward(f, ws.drop_ff, ctx);
  f = lin2_.forward(f, ws.lin2, ctx);
  f = drop2_.forward(f, ws.drop2, ctx);
  MatrixView<T> s2 = ensure(ws.s2, x.rows, d);
  for (Index r = 0; r < x.rows; ++r)
    for (Index j = 0; j < d; ++j) s2(r, j) = h1(r, j) + f(r, j);
  auto y2 = norm2_.forward(s2, ws.norm2, ctx);
  MatrixView<T> y = ensure(ws.y, x.rows, d);
  copy(y2, y);
  zero_outside(y, w);
  return y;
}

template <class T>
MatrixView<const T> TransformerEncoderLayer<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  const Index d = opt_.d_model;
  const SeqWindows& w = *ws.win;
  require_shape(dy, w.batch * w.padded, d, "TransformerEncoderLayer backward dy");
  MatrixView<T> g = ensure(ws.dy, dy.rows, d);
  copy(dy, g);
  zero_outside(g, w);
  auto ds2 = norm2_.backward(g, ws.norm2);
  auto df = drop2_.backward(ds2, ws.drop2);
  df = lin2_.backward(df, ws.lin2);
  df = drop_.backward(df, ws.drop_ff);
  df = act_.backward(df, ws.act);
  df = lin1_.backward(df, ws.lin1);
  MatrixView<T> dh1 = ensure(ws.dh1, dy.rows, d);
  for (Index r = 0; r < dy.rows; ++r)
    for (Index j = 0; j < d; ++j) dh1(r, j) = ds2(r, j) + df(r, j);
  auto ds1 = norm1_.backward(dh1, ws.norm1);
  auto dsa = drop1_.backward(ds1, ws.drop1);
  auto ga = attn_.backward(dsa, ws.attn, need_dx);
  if (!need_dx) return {};
  MatrixView<T> dx = ensure(ws.dx, dy.rows, d);
  for (Index r = 0; r < dy.rows; ++r)
    for (Index j = 0; j < d; ++j) dx(r, j) = ds1(r, j) + ga.query(r, j) + ga.memory(r, j);
  zero_outside(dx, w);
  return dx;
}

template <class T>
TransformerEncoder<T>::TransformerEncoder(ParameterArenaT<T>& arena, std::string_view prefix,
                                          TransformerEncoderOptions opt)
    : opt_(opt), name_(prefix), x_what_(name_ + " x") {
  const Index d = opt.layer.d_model;
  require(opt.num_layers >= 1, "TransformerEncoder '", prefix, "': num_layers must be >= 1");
  if (opt.position == PositionKind::learned) {
    require(opt.max_len > 0, "TransformerEncoder '", prefix, "': learned positions need max_len > 0");
    table_ = &arena.add(join_name(prefix, "position_embedding.weight"), Shape{opt.max_len, d},
                        {.init = opt.embedding_init, .sparse = true});
  } else if (opt.position == PositionKind::time_gap) {
    require(opt.time_buckets > 0, "TransformerEncoder '", prefix, "': time_buckets must be > 0");
    require(opt.time_base > 1.0, "TransformerEncoder '", prefix, "': time_base must be > 1");
    table_ = &arena.add(join_name(prefix, "time_embedding.weight"), Shape{opt.time_buckets, d},
                        {.init = opt.embedding_init, .sparse = true});
  }
  for (Index i = 0; i < opt.num_layers; ++i)
    layers_.emplace_back(arena, join_name(prefix, "layers." + std::to_string(i)), opt.layer);
}

template <class T>
MatrixView<const T> TransformerEncoder<T>::forward(MatrixView<const T> x, Lengths lengths, Workspace& ws,
                                                   const Context& ctx, std::span<const std::int64_t> gaps) const {
  const Index d = opt_.layer.d_model;
  if (x.cols != d) fail(name_, " x: ", x.cols, " columns, expected d_model ", d);
  const Index B = static_cast<Index>(lengths.size());
  make_windows(lengths, B, x.rows, opt_.max_len, opt_.overflow, x_what_, ws.win);
  const SeqWindows& w = ws.win;
  MatrixView<T> x0 = ensure(ws.x0, x.rows, d);
  ws.x0.zero();
  if (opt_.position == PositionKind::time_gap) {
    if (static_cast<Index>(gaps.size()) != x.rows)
      fail(name_, " gaps: size ", gaps.size(), " != sequence rows ", x.rows, " (batch x padded length)");
    ws.buckets.assign(static_cast<std::size_t>(x.rows), 0);
  }
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < w.count[b]; ++i) {
      const Index row = w.row(b, i);
      const T* e = nullptr;
      if (opt_.position == PositionKind::learned) {
        e = table_->value + i * d;
      } else if (opt_.position == PositionKind::time_gap) {
        const Index k = time_gap_bucket(gaps[row], opt_.time_buckets, opt_.time_base);
        ws.buckets[row] = k;
        e = table_->value + k * d;
      }
      for (Index j = 0; j < d; ++j) x0(row, j) = x(row, j) + (e ? e[j] : T(0));
    }
  ws.layers.resize(layers_.size());
  MatrixView<const T> h = x0;
  for (std::size_t l = 0; l < layers_.size(); ++l) h = layers_[l].forward(h, w, ws.layers[l], ctx);
  return h;
}

template <class T>
MatrixView<const T> TransformerEncoder<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  const Index d = opt_.layer.d_model;
  MatrixView<const T> g = dy;
  for (std::size_t l = layers_.size(); l-- > 0;) g = layers_[l].backward(g, ws.layers[l], true);
  const SeqWindows& w = ws.win;
  if (table_) {
    for (Index b = 0; b < w.batch; ++b)
      for (Index i = 0; i < w.count[b]; ++i) {
        const Index row = w.row(b, i);
        const Index k = opt_.position == PositionKind::learned ? i : ws.buckets[row];
        T* gr = table_->sparse_grad.row(k);
        for (Index j = 0; j < d; ++j) gr[j] += g(row, j);
      }
  }
  if (!need_dx) return {};
  MatrixView<T> dx = ensure(ws.dx, g.rows, d);
  copy(g, dx);
  return dx;
}

template class TransformerEncoderLayer<float>;
template class TransformerEncoderLayer<double>;
template class TransformerEncoder<float>;
template class TransformerEncoder<double>;

}  // namespace mtrank::nn
