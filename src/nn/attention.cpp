#include "mtrank/nn/attention.hpp"

#include <cmath>
#include <limits>

#include "mtrank/kernels/gemm.hpp"

namespace mtrank::nn {

template <class T>
MultiHeadAttention<T>::MultiHeadAttention(ParameterArenaT<T>& arena, std::string_view prefix,
                                          MultiHeadAttentionOptions opt)
    : opt_(opt),
      name_(prefix),
      query_what_(name_ + " query"),
      memory_what_(name_ + " memory"),
      dy_what_(name_ + " backward dy") {
  const Index d = opt.embed_dim;
  require(d > 0, "MultiHeadAttention '", prefix, "': embed_dim must be > 0, got ", d);
  require(opt.num_heads > 0 && d % opt.num_heads == 0, "MultiHeadAttention '", prefix, "': embed_dim ", d,
          " must be divisible by num_heads ", opt.num_heads);
  // PyTorch: xavier_uniform_ on in_proj_weight, zero biases, Linear default on out_proj.weight.
  const double xb = std::sqrt(6.0 / double(d + 3 * d));
  in_w_ = &arena.add(join_name(prefix, "in_proj_weight"), Shape{3 * d, d}, {.init = Init::uniform(-xb, xb)});
  if (opt.bias) in_b_ = &arena.add(join_name(prefix, "in_proj_bias"), Shape{3 * d}, {.init = Init::zeros()});
  out_w_ = &arena.add(join_name(prefix, "out_proj.weight"), Shape{d, d}, {.init = Init::linear_default(d)});
  if (opt.bias) out_b_ = &arena.add(join_name(prefix, "out_proj.bias"), Shape{d}, {.init = Init::zeros()});
}

template <class T>
MatrixView<const T> MultiHeadAttention<T>::forward(MatrixView<const T> query, Lengths query_lengths,
                                                   MatrixView<const T> memory, Lengths memory_lengths,
                                                   Workspace& ws, const Context& ctx) const {
  const Index B = static_cast<Index>(query_lengths.size());
  make_windows(query_lengths, B, query.rows, 0, Overflow::reject, query_what_, ws.qwin);
  make_windows(memory_lengths, B, memory.rows, 0, Overflow::reject, memory_what_, ws.kwin);
  return forward(query, ws.qwin, memory, ws.kwin, ws, ctx);
}

template <class T>
MatrixView<const T> MultiHeadAttention<T>::forward(MatrixView<const T> query, const SeqWindows& qw,
                                                   MatrixView<const T> memory, const SeqWindows& kw, Workspace& ws,
                                                   const Context&) const {
  const Index d = opt_.embed_dim, H = opt_.num_heads, dh = d / H;
  if (query.cols != d) fail(name_, " query: ", query.cols, " columns, expected embed_dim ", d);
  if (memory.cols != d) fail(name_, " memory: ", memory.cols, " columns, expected embed_dim ", d);
  if (qw.batch != kw.batch) fail(name_, ": query batch ", qw.batch, " != memory batch ", kw.batch);
  if (query.rows != qw.batch * qw.padded) fail(name_, " query: ", query.rows, " rows, expected ", qw.batch * qw.padded);
  if (memory.rows != kw.batch * kw.padded)
    fail(name_, " memory: ", memory.rows, " rows, expected ", kw.batch * kw.padded);
  ws.query = query;
  ws.memory = memory;
  ws.qw = &qw;
  ws.kw = &kw;
  const Index B = qw.batch, Lq = qw.padded, Lk = kw.padded;
  const MatrixView<const T> W(in_w_->value, 3 * d, d);
  // Projections over the whole padded buffers (one GEMM each).
  MatrixView<T> q = ensure(ws.q, query.rows, d);
  MatrixView<T> kv = ensure(ws.kv, memory.rows, 2 * d);
  if (in_b_) {
    for (Index r = 0; r < q.rows; ++r) std::copy(in_b_->value, in_b_->value + d, q.row(r));
    for (Index r = 0; r < kv.rows; ++r) std::copy(in_b_->value + d, in_b_->value + 3 * d, kv.row(r));
  }
  const T beta = in_b_ ? T(1) : T(0);
  if (q.rows) kernels::matmul<T>(query, false, W.row_block(0, d), true, q, T(1), beta);
  if (kv.rows) kernels::matmul<T>(memory, false, W.row_block(d, 2 * d), true, kv, T(1), beta);

  MatrixView<T> P = ensure(ws.probs, B * H * Lq, Lk);
  MatrixView<T> C = ensure(ws.ctx, B * Lq, d);
  ws.ctx.zero();
  const T scale = T(1.0 / std::sqrt(double(dh)));
  for (Index b = 0; b < B; ++b) {
    const Index nq = qw.count[b], nk = kw.count[b];
    if (nq == 0 || nk == 0) continue;
    for (Index h = 0; h < H; ++h) {
      MatrixView<const T> Qh(q.data + qw.row(b, 0) * d + h * dh, nq, dh, d);
      MatrixView<const T> Kh(kv.data + kw.row(b, 0) * 2 * d + h * dh, nk, dh, 2 * d);
      MatrixView<const T> Vh(kv.data + kw.row(b, 0) * 2 * d + d + h * dh, nk, dh, 2 * d);
      MatrixView<T> S(P.data + ((b * H + h) * Lq) * Lk, nq, nk, Lk);
      kernels::matmul<T>(Qh, false, Kh, true, S, scale, T(0));
      for (Index i = 0; i < nq; ++i) {
        T* s = S.row(i);
        T mx = -std::numeric_limits<T>::infinity();
        for (Index j = 0; j < nk; ++j) mx = std::max(mx, s[j]);
        T sum = 0;
        for (Index j = 0; j < nk; ++j) {
          s[j] = std::exp(s[j] - mx);
          sum += s[j];
        }
        const T inv = T(1) / sum;
        for (Index j = 0; j < nk; ++j) s[j] *= inv;
      }
      MatrixView<T> Ch(C.data + qw.row(b, 0) * d + h * dh, nq, dh, d);
      kernels::matmul<T>(S, false, Vh, false, Ch, T(1), T(0));
    }
  }
  MatrixView<T> out = ensure(ws.out, B * Lq, d);
  for (Index r = 0; r < out.rows; ++r) {
    if (out_b_) std::copy(out_b_->value, out_b_->value + d, out.row(r));
    else std::fill(out.row(r), out.row(r) + d, T(0));
  }
  if (out.rows) kernels::matmul<T>(C, false, MatrixView<const T>(out_w_->value, d, d), true, out, T(1), T(1));
  zero_outside(out, qw);
  return out;
}

template <class T>
typename MultiHeadAttention<T>::Grads MultiHeadAttention<T>::backward(MatrixView<const T> dy, Workspace& ws,
                                                                      bool need_dx) const {
  const Index d = opt_.embed_dim, H = opt_.num_heads, dh = d / H;
  const SeqWindows& qw = *ws.qw;
  const SeqWindows& kw = *ws.kw;
  const Index B = qw.batch, Lq = qw.padded, Lk = kw.padded;
  require_shape(dy, B * Lq, d, dy_what_.c_str());
  // Gradient at invalid query rows is dropped (their outputs are constant zero).
  MatrixView<T> dout = ensure(ws.dout, B * Lq, d);
  copy(dy, dout);
  zero_outside(dout, qw);
  const MatrixView<const T> C = ws.ctx.matrix();
  const MatrixView<const T> Wo(out_w_->value, d, d);
  if (dout.rows) kernels::matmul<T>(dout, true, C, false, MatrixView<T>(out_w_->grad, d, d), T(1), T(1));
  if (out_b_)
    for (Index r = 0; r < dout.rows; ++r)
      for (Index j = 0; j < d; ++j) out_b_->grad[j] += dout(r, j);
  MatrixView<T> dC = ensure(ws.dctx, B * Lq, d);
  if (dC.rows) kernels::matmul<T>(dout, false, Wo, false, dC);

  MatrixView<T> dq = ensure(ws.dq, B * Lq, d);
  MatrixView<T> dkv = ensure(ws.dkv, B * Lk, 2 * d);
  ws.dq.zero();
  ws.dkv.zero();
  const MatrixView<const T> q = ws.q.matrix(), kv = ws.kv.matrix();
  const MatrixView<const T> P = ws.probs.matrix();
  MatrixView<T> dP = ensure(ws.dp, std::max<Index>(Lq, 1), std::max<Index>(Lk, 1));
  const T scale = T(1.0 / std::sqrt(double(dh)));
  for (Index b = 0; b < B; ++b) {
    const Index nq = qw.count[b], nk = kw.count[b];
    if (nq == 0 || nk == 0) continue;
    for (Index h = 0; h < H; ++h) {
      MatrixView<const T> Qh(q.data + qw.row(b, 0) * d + h * dh, nq, dh, d);
      MatrixView<const T> Kh(kv.data + kw.row(b, 0) * 2 * d + h * dh, nk, dh, 2 * d);
      MatrixView<const T> Vh(kv.data + kw.row(b, 0) * 2 * d + d + h * dh, nk, dh, 2 * d);
      MatrixView<const T> S(P.data + ((b * H + h) * Lq) * Lk, nq, nk, Lk);
      MatrixView<const T> dCh(dC.data + qw.row(b, 0) * d + h * dh, nq, dh, d);
      MatrixView<T> dQh(dq.data + qw.row(b, 0) * d + h * dh, nq, dh, d);
      MatrixView<T> dKh(dkv.data + kw.row(b, 0) * 2 * d + h * dh, nk, dh, 2 * d);
      MatrixView<T> dVh(dkv.data + kw.row(b, 0) * 2 * d + d + h * dh, nk, dh, 2 * d);
      MatrixView<T> dS(dP.data, nq, nk, dP.stride);
      kernels::matmul<T>(dCh, false, Vh, true, dS);             // dP = dC V^T
      kernels::matmul<T>(S, true, dCh, false, dVh);             // dV = P^T dC
      for (Index i = 0; i < nq; ++i) {                          // dS = P (dP - <dP, P>) * scale
        const T* p = S.row(i);
        T* g = dS.row(i);
        T dot = 0;
        for (Index j = 0; j < nk; ++j) dot += g[j] * p[j];
        for (Index j = 0; j < nk; ++j) g[j] = p[j] * (g[j] - dot) * scale;
      }
      kernels::matmul<T>(MatrixView<const T>(dS), false, Kh, false, dQh);  // dQ = dS K
      kernels::matmul<T>(MatrixView<const T>(dS), true, Qh, false, dKh);   // dK = dS^T Q
    }
  }
  // Input projections.
  MatrixView<T> dW(in_w_->grad, 3 * d, d);
  const MatrixView<const T> W(in_w_->value, 3 * d, d);
  if (dq.rows) kernels::matmul<T>(MatrixView<const T>(dq), true, ws.query, false, dW.row_block(0, d), T(1), T(1));
  if (dkv.rows)
    kernels::matmul<T>(MatrixView<const T>(dkv), true, ws.memory, false, dW.row_block(d, 2 * d), T(1), T(1));
  if (in_b_) {
    for (Index r = 0; r < dq.rows; ++r)
      for (Index j = 0; j < d; ++j) in_b_->grad[j] += dq(r, j);
    for (Index r = 0; r < dkv.rows; ++r)
      for (Index j = 0; j < 2 * d; ++j) in_b_->grad[d + j] += dkv(r, j);
  }
  if (!need_dx) return {};
  MatrixView<T> dquery = ensure(ws.dquery, B * Lq, d);
  MatrixView<T> dmemory = ensure(ws.dmemory, B * Lk, d);
  if (dquery.rows) kernels::matmul<T>(MatrixView<const T>(dq), false, W.row_block(0, d), false, dquery);
  if (dmemory.rows) kernels::matmul<T>(MatrixView<const T>(dkv), false, W.row_block(d, 2 * d), false, dmemory);
  return {dquery, dmemory};
}

template class MultiHeadAttention<float>;
template class MultiHeadAttention<double>;

}  // namespace mtrank::nn
