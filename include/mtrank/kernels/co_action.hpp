// Co-action micro-MLP kernel family (CAN, Bian et al., WSDM 2022; blocks/co_action.hpp): a
// batch of tiny per-sample MLPs whose weights are read from the item-side embedding p, applied
// to every valid position of a [B, L, d] input and summed over the sequence.
//
// Layout (exactly CoActionUnit's reshape order; a = CoActionArgs, widths out_l = a.widths[l],
// in_0 = d, in_{l+1} = out_l, nl = a.n_layers):
//   block     = sum_l (in_l * out_l + (bias ? out_l : 0))
//   w_off_l   = sum_{m<l} (in_m out_m + (bias ? out_m : 0)),  b_off_l = w_off_l + in_l out_l
//   W_l[i, o] = P[w_off_l + i * out_l + o],   b_l[o] = P[b_off_l + o]
//   P for order c (c = 0 .. C-1, C = a.orders) = p + b * ld_p + (order_independent ? c * block : 0)
//   act_off_l = sum_{m<l} out_m, act_width = sum_l out_l
//   per_order = concat_layers ? act_width : out_{nl-1};  out_features = (sum_orders ? 1 : C) * per_order
//
//   forward (y [B, out_features], ld_y, overwritten), for b, t in [0, n_b) (n_b = lengths ? lengths[b] : L),
//   c in [0, C):
//     h_0 = x[b * L + t]^(c+1)  (elementwise power, x row at x + (b * L + t) * ld_x)
//     h_{l+1} = act_l(h_l W_l + b_l)     act_l = activation if (activate_last or l < nl - 1) else identity
//     y[b, (sum_orders ? 0 : c * per_order) + j] += (concat_layers ? [h_1; ...; h_nl] : h_nl)[j]
//   activation: tanh | relu | sigmoid | identity.
//
//   backward (recomputes the micro-MLP, nothing is saved): with g = dy[b, block of order c]
//   flowing into every layer output that y reads,
//     dp [B, param_width] (ld_dp) and dx [B * L, d] (ld_dx) are OVERWRITTEN (rows t >= n_b of dx
//     get 0; dx may be nullptr), dp[b] = sum_{t, c} d/dP of the sample's output . dy[b],
//     dx[b, t, i] = sum_c (d/dh_0[i]) (c + 1) x_i^c.
//
// param_width = (order_independent ? C : 1) * block. scratch: co_action_scratch_size(a) floats
// (caller-owned; the kernels never allocate).
//
// The SIMD variants put sequence positions in vector lanes (16 AVX-512 / 8 AVX2 positions per
// step; the micro-MLP weights are per-sample broadcasts), so widths of 4 fill whole vectors.
// Numerics: different summation order (lanes, then a horizontal sum) and the vectorised tanh /
// sigmoid (<= 2 ulp); the tests bound |simd - ref| by 2e-5 of the size of the terms.
#pragma once
#include <cmath>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

enum class CoActionActivation : int { tanh = 0, relu = 1, sigmoid = 2, identity = 3 };

struct CoActionArgs {
  Index batch = 0, seq_len = 0, in = 0;
  Index n_layers = 0;
  const Index* widths = nullptr;  // [n_layers]
  bool bias = true;
  Index orders = 1;
  bool order_independent = false;
  CoActionActivation activation = CoActionActivation::tanh;
  bool activate_last = false;
  bool concat_layers = true;
  bool sum_orders = false;
  Index ld_p = 0, ld_x = 0, ld_y = 0, ld_dp = 0, ld_dx = 0;  // 0 = dense
};

struct CoActionLayout {
  Index block = 0, act_width = 0, per_order = 0, param_width = 0, out_features = 0;
};
inline CoActionLayout co_action_layout(const CoActionArgs& a) {
  CoActionLayout s;
  Index w = a.in;
  for (Index l = 0; l < a.n_layers; ++l) {
    s.block += w * a.widths[l] + (a.bias ? a.widths[l] : 0);
    s.act_width += a.widths[l];
    w = a.widths[l];
  }
  s.per_order = a.concat_layers ? s.act_width : (a.n_layers ? a.widths[a.n_layers - 1] : 0);
  s.param_width = (a.order_independent ? a.orders : 1) * s.block;
  s.out_features = (a.sum_orders ? 1 : a.orders) * s.per_order;
  return s;
}

/// Scratch floats any variant needs (16 lanes per value for the SIMD variants).
inline Index co_action_scratch_size(const CoActionArgs& a) {
  const CoActionLayout s = co_action_layout(a);
  return 16 * (4 * a.in + 2 * s.act_width + s.param_width + s.out_features + 2) + 64;
}

namespace co_action_detail {
template <class T>
inline T act(CoActionActivation k, T v) {
  switch (k) {
    case CoActionActivation::tanh: return std::tanh(v);
    case CoActionActivation::relu: return v > T(0) ? v : T(0);
    case CoActionActivation::sigmoid: return T(1) / (T(1) + std::exp(-v));
    case CoActionActivation::identity: return v;
  }
  return v;
}
/// Derivative through the output y.
template <class T>
inline T act_grad(CoActionActivation k, T y) {
  switch (k) {
    case CoActionActivation::tanh: return T(1) - y * y;
    case CoActionActivation::relu: return y > T(0) ? T(1) : T(0);
    case CoActionActivation::sigmoid: return y * (T(1) - y);
    case CoActionActivation::identity: return T(1);
  }
  return T(1);
}
template <class T>
inline T power(T v, Index e) {
  T r = T(1);
  for (Index i = 0; i < e; ++i) r *= v;
  return r;
}
/// One sample's micro-MLP on input hin [a.in] with parameters P: every layer's output, in
/// order, into acts [act_width] (layer l: Linear(P) then the activation unless it is the
/// last layer and !activate_last).
template <class T>
inline void micro_mlp_forward(const CoActionArgs& a, const T* P, const T* hin, T* acts) {
  const T* h = hin;
  Index w = a.in, off = 0, ao = 0;
  for (Index l = 0; l < a.n_layers; ++l) {
    const Index o = a.widths[l];
    T* out = acts + ao;
    for (Index j = 0; j < o; ++j) out[j] = a.bias ? P[off + w * o + j] : T(0);
    for (Index i = 0; i < w; ++i)
      for (Index j = 0; j < o; ++j) out[j] += h[i] * P[off + i * o + j];
    if (a.activate_last || l + 1 < a.n_layers)
      for (Index j = 0; j < o; ++j) out[j] = act(a.activation, out[j]);
    off += w * o + (a.bias ? o : 0);
    h = out;
    ao += o;
    w = o;
  }
}
}  // namespace co_action_detail

/// scratch layout (ref): hin [d], dhin [d], acts [act_width], g [act_width].
template <class T>
void co_action_forward_ref(const CoActionArgs& a, const T* p, const T* x, const Index* lengths, T* y, T* scratch) {
  using namespace co_action_detail;
  const CoActionLayout s = co_action_layout(a);
  const Index d = a.in, L = a.seq_len, C = a.orders, nl = a.n_layers;
  const Index ldp = a.ld_p ? a.ld_p : s.param_width, ldx = a.ld_x ? a.ld_x : d, ldy = a.ld_y ? a.ld_y : s.out_features;
  T* hin = scratch;
  T* acts = hin + d;
  for (Index b = 0; b < a.batch; ++b) {
    T* yb = y + b * ldy;
    for (Index j = 0; j < s.out_features; ++j) yb[j] = T(0);
    const Index n = lengths ? lengths[b] : L;
    for (Index t = 0; t < n; ++t) {
      const T* xr = x + (b * L + t) * ldx;
      for (Index c = 0; c < C; ++c) {
        for (Index i = 0; i < d; ++i) hin[i] = power(xr[i], c + 1);
        const T* P = p + b * ldp + (a.order_independent ? c * s.block : 0);
        micro_mlp_forward(a, P, hin, acts);
        T* yc = yb + (a.sum_orders ? 0 : c * s.per_order);
        const T* src = a.concat_layers ? acts : acts + (s.act_width - a.widths[nl - 1]);
        for (Index j = 0; j < s.per_order; ++j) yc[j] += src[j];
      }
    }
  }
}

template <class T>
void co_action_backward_ref(const CoActionArgs& a, const T* p, const T* x, const Index* lengths, const T* dy, T* dp,
                            T* dx, T* scratch) {
  using namespace co_action_detail;
  const CoActionLayout s = co_action_layout(a);
  const Index d = a.in, L = a.seq_len, C = a.orders, nl = a.n_layers;
  const Index ldp = a.ld_p ? a.ld_p : s.param_width, ldx = a.ld_x ? a.ld_x : d, ldy = a.ld_y ? a.ld_y : s.out_features;
  const Index lddp = a.ld_dp ? a.ld_dp : s.param_width, lddx = a.ld_dx ? a.ld_dx : d;
  T* hin = scratch;
  T* dhin = hin + d;
  T* acts = dhin + d;
  T* g = acts + s.act_width;
  for (Index b = 0; b < a.batch; ++b) {
    T* dpb = dp + b * lddp;
    for (Index k = 0; k < s.param_width; ++k) dpb[k] = T(0);
    const Index n = lengths ? lengths[b] : L;
    if (dx)
      for (Index t = 0; t < L; ++t)
        for (Index i = 0; i < d; ++i) dx[(b * L + t) * lddx + i] = T(0);
    for (Index t = 0; t < n; ++t) {
      const T* xr = x + (b * L + t) * ldx;
      for (Index c = 0; c < C; ++c) {
        const T* P = p + b * ldp + (a.order_independent ? c * s.block : 0);
        T* dP = dpb + (a.order_independent ? c * s.block : 0);
        for (Index i = 0; i < d; ++i) hin[i] = power(xr[i], c + 1);
        // Forward again (acts), then the gradient arriving from y at each layer output.
        micro_mlp_forward(a, P, hin, acts);
        const T* dyc = dy + b * ldy + (a.sum_orders ? 0 : c * s.per_order);
        const Index last = s.act_width - a.widths[nl - 1];
        for (Index j = 0; j < s.act_width; ++j) g[j] = T(0);
        if (a.concat_layers)
          for (Index j = 0; j < s.act_width; ++j) g[j] = dyc[j];
        else
          for (Index j = 0; j < a.widths[nl - 1]; ++j) g[last + j] = dyc[j];
        Index off = s.block, ao = s.act_width;
        for (Index l = nl; l-- > 0;) {
          const Index o = a.widths[l], w = l ? a.widths[l - 1] : d;
          ao -= o;
          off -= w * o + (a.bias ? o : 0);
          const T* out = acts + ao;
          T* go = g + ao;
          if (a.activate_last || l + 1 < nl)
            for (Index j = 0; j < o; ++j) go[j] *= act_grad(a.activation, out[j]);
          const T* h = l ? acts + ao - w : hin;
          T* gh = l ? g + ao - w : dhin;
          if (a.bias)
            for (Index j = 0; j < o; ++j) dP[off + w * o + j] += go[j];
          for (Index i = 0; i < w; ++i) {
            T acc = T(0);
            for (Index j = 0; j < o; ++j) {
              dP[off + i * o + j] += h[i] * go[j];
              acc += P[off + i * o + j] * go[j];
            }
            gh[i] = l ? gh[i] + acc : acc;
          }
        }
        if (dx) {
          T* dxr = dx + (b * L + t) * lddx;
          for (Index i = 0; i < d; ++i) dxr[i] += dhin[i] * T(c + 1) * power(xr[i], c);
        }
      }
    }
  }
}

/// One dispatch table for the co-action family (float).
struct CoActionKernels {
  Isa isa;
  void (*f32_co_action_forward)(const CoActionArgs& a, const float* p, const float* x, const Index* lengths, float* y,
                                float* scratch);
  void (*f32_co_action_backward)(const CoActionArgs& a, const float* p, const float* x, const Index* lengths,
                                 const float* dy, float* dp, float* dx, float* scratch);
};

const CoActionKernels& co_action_kernels(Isa isa);
const CoActionKernels& co_action_kernels();

}  // namespace mtrank::kernels
