#include "mtrank/nn/gru.hpp"

#include <cmath>

#include "mtrank/kernels/activation.hpp"
#include "mtrank/kernels/gemm.hpp"

namespace mtrank::nn {

template <class T>
Gru<T>::Gru(ParameterArenaT<T>& arena, std::string_view prefix, GruOptions opt) : opt_(opt), name_(prefix), x_what_(name_ + " x") {
  require(opt.input > 0 && opt.hidden > 0, "Gru '", prefix, "': input and hidden must be > 0, got input=",
          opt.input, " hidden=", opt.hidden);
  const Index H = opt.hidden;
  const double k = 1.0 / std::sqrt(double(H));
  const Init init = Init::uniform(-k, k);
  w_ih_ = &arena.add(join_name(prefix, "weight_ih_l0"), Shape{3 * H, opt.input}, {.init = init});
  w_hh_ = &arena.add(join_name(prefix, "weight_hh_l0"), Shape{3 * H, H}, {.init = init});
  if (opt.bias) {
    b_ih_ = &arena.add(join_name(prefix, "bias_ih_l0"), Shape{3 * H}, {.init = init});
    b_hh_ = &arena.add(join_name(prefix, "bias_hh_l0"), Shape{3 * H}, {.init = init});
  }
}

template <class T>
MatrixView<const T> Gru<T>::forward(MatrixView<const T> x, Lengths lengths, Workspace& ws, const Context&) const {
  const Index H = opt_.hidden, I = opt_.input;
  if (x.cols != I) fail(name_, " x: ", x.cols, " columns, expected input size ", I);
  const Index B = static_cast<Index>(lengths.size());
  make_windows(lengths, B, x.rows, opt_.max_len, opt_.overflow, x_what_, ws.win);
  const SeqWindows& w = ws.win;
  const Index L = w.padded;
  ws.x = x;
  MatrixView<T> xp = ensure(ws.xp, B * L, 3 * H);
  for (Index r = 0; r < xp.rows; ++r) {
    if (b_ih_) std::copy(b_ih_->value, b_ih_->value + 3 * H, xp.row(r));
    else std::fill(xp.row(r), xp.row(r) + 3 * H, T(0));
  }
  if (xp.rows) kernels::matmul<T>(x, false, MatrixView<const T>(w_ih_->value, 3 * H, I), true, xp, T(1), T(1));
  MatrixView<T> hp = ensure(ws.hp, B * L, 3 * H);
  MatrixView<T> g = ensure(ws.gates, B * L, 3 * H);
  MatrixView<T> st = ensure(ws.states, B * L, H);
  MatrixView<T> last = ensure(ws.last, B, H);
  ws.states.zero();
  ws.last.zero();
  MatrixView<T> hprev = ensure(ws.hprev, B, H);
  MatrixView<T> hstep = ensure(ws.dh, B, 3 * H);  // scratch for this step's hidden projections
  const MatrixView<const T> Whh(w_hh_->value, 3 * H, H);
  for (Index i = 0; i < w.max_count; ++i) {
    // h_prev for every sample (zero at its first step).
    for (Index b = 0; b < B; ++b) {
      if (i < w.count[b] && i > 0) std::copy(st.row(w.row(b, i - 1)), st.row(w.row(b, i - 1)) + H, hprev.row(b));
      else std::fill(hprev.row(b), hprev.row(b) + H, T(0));
    }
    for (Index b = 0; b < B; ++b) {
      if (b_hh_) std::copy(b_hh_->value, b_hh_->value + 3 * H, hstep.row(b));
      else std::fill(hstep.row(b), hstep.row(b) + 3 * H, T(0));
    }
    if (i > 0) kernels::matmul<T>(MatrixView<const T>(hprev), false, Whh, true, hstep, T(1), T(1));
    for (Index b = 0; b < B; ++b) {
      if (i >= w.count[b]) continue;
      const Index row = w.row(b, i);
      const T* xr = xp.row(row);
      const T* hr = hstep.row(b);
      const T* hpv = hprev.row(b);
      std::copy(hr, hr + 3 * H, hp.row(row));
      T* gr = g.row(row);
      T* out = st.row(row);
      for (Index j = 0; j < H; ++j) {
        const T r = kernels::sigmoid_scalar<T>(xr[j] + hr[j]);
        const T z = kernels::sigmoid_scalar<T>(xr[H + j] + hr[H + j]);
        const T n = std::tanh(xr[2 * H + j] + r * hr[2 * H + j]);
        gr[j] = r;
        gr[H + j] = z;
        gr[2 * H + j] = n;
        out[j] = (T(1) - z) * n + z * hpv[j];
      }
      if (i + 1 == w.count[b]) std::copy(out, out + H, last.row(b));
    }
  }
  return st;
}

template <class T>
MatrixView<const T> Gru<T>::backward(MatrixView<const T> d_states, MatrixView<const T> d_last, Workspace& ws,
                                     bool need_dx) const {
  const Index H = opt_.hidden, I = opt_.input;
  const SeqWindows& w = ws.win;
  const Index B = w.batch, L = w.padded;
  const bool has_states = !d_states.empty(), has_last = !d_last.empty();
  if (has_states) require_shape(d_states, B * L, H, "Gru backward d_states");
  if (has_last) require_shape(d_last, B, H, "Gru backward d_last");
  MatrixView<T> dgi = ensure(ws.dgi, B * L, 3 * H);  // d pre-activations, input side
  MatrixView<T> dgh = ensure(ws.dgh, B, 3 * H);      // d pre-activations, hidden side (one step)
  MatrixView<T> dh = ensure(ws.dh, B, H);            // running dL/dh_t
  MatrixView<T> dhprev = ensure(ws.dhprev, B, H);
  MatrixView<T> hprev = ensure(ws.hprev, B, H);
  ws.dgi.zero();
  ws.dh.zero();
  const MatrixView<const T> st = ws.states.matrix(), g = ws.gates.matrix(), hp = ws.hp.matrix();
  const MatrixView<const T> Whh(w_hh_->value, 3 * H, H);
  MatrixView<T> dWhh(w_hh_->grad, 3 * H, H);
  for (Index i = w.max_count; i-- > 0;) {
    ws.dgh.zero();
    for (Index b = 0; b < B; ++b) {
      if (i >= w.count[b]) continue;
      const Index row = w.row(b, i);
      T* dhb = dh.row(b);
      if (has_states)
        for (Index j = 0; j < H; ++j) dhb[j] += d_states(row, j);
      if (has_last && i + 1 == w.count[b])
        for (Index j = 0; j < H; ++j) dhb[j] += d_last(b, j);
      const T* gr = g.row(row);
      const T* hr = hp.row(row);
      T* hpv = hprev.row(b);
      if (i > 0) std::copy(st.row(row - 1), st.row(row - 1) + H, hpv);
      else std::fill(hpv, hpv + H, T(0));
      T* di = dgi.row(row);
      T* dhh = dgh.row(b);
      T* dprev = dhprev.row(b);
      for (Index j = 0; j < H; ++j) {
        const T r = gr[j], z = gr[H + j], n = gr[2 * H + j];
        const T dn = dhb[j] * (T(1) - z);
        const T dz = dhb[j] * (hpv[j] - n);
        dprev[j] = dhb[j] * z;
        const T dn_pre = dn * (T(1) - n * n);
        const T dr = dn_pre * hr[2 * H + j];
        const T dr_pre = dr * r * (T(1) - r);
        const T dz_pre = dz * z * (T(1) - z);
        di[j] = dr_pre;
        di[H + j] = dz_pre;
        di[2 * H + j] = dn_pre;
        dhh[j] = dr_pre;
        dhh[H + j] = dz_pre;
        dhh[2 * H + j] = dn_pre * r;
      }
    }
    // dh_{t-1} = dh_t * z + dGh W_hh; dW_hh += dGh^T h_prev; db_hh += dGh (inactive rows are 0).
    if (i > 0) kernels::matmul<T>(MatrixView<const T>(dgh), false, Whh, false, dhprev, T(1), T(1));
    kernels::matmul<T>(MatrixView<const T>(dgh), true, MatrixView<const T>(hprev), false, dWhh, T(1), T(1));
    if (b_hh_)
      for (Index b = 0; b < B; ++b)
        if (i < w.count[b])
          for (Index j = 0; j < 3 * H; ++j) b_hh_->grad[j] += dgh(b, j);
    for (Index b = 0; b < B; ++b)
      if (i < w.count[b]) std::copy(dhprev.row(b), dhprev.row(b) + H, dh.row(b));
      else std::fill(dh.row(b), dh.row(b) + H, T(0));
  }
  if (dgi.rows)
    kernels::matmul<T>(MatrixView<const T>(dgi), true, ws.x, false, MatrixView<T>(w_ih_->grad, 3 * H, I), T(1), T(1));
  if (b_ih_)
    for (Index r = 0; r < dgi.rows; ++r)
      for (Index j = 0; j < 3 * H; ++j) b_ih_->grad[j] += dgi(r, j);
  if (!need_dx) return {};
  MatrixView<T> dx = ensure(ws.dx, B * L, I);
  if (dx.rows) kernels::matmul<T>(MatrixView<const T>(dgi), false, MatrixView<const T>(w_ih_->value, 3 * H, I), false, dx);
  return dx;
}

template class Gru<float>;
template class Gru<double>;

}  // namespace mtrank::nn
