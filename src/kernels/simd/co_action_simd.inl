// ISA-generic bodies of the co-action micro-MLP kernels (meaning: include/mtrank/kernels/
// co_action.hpp). Included by src/kernels/{avx2,avx512}/co_action_*.cpp inside an anonymous
// namespace after `struct Ops` (simd_ops_<isa>.hpp).
//
// Sequence positions live in vector lanes: a "column" below is Ops::W consecutive positions
// t0 .. t0 + W - 1 of one sample, stored as W floats (lanes past the length are zero / masked).
// The micro-MLP weights are per-sample scalars broadcast against those columns.

// A local copy of co_action_layout(): ISA translation units must not call inline functions of
// shared headers (the linker could keep this TU's copy for everyone).
inline CoActionLayout coact_layout(const CoActionArgs& a) {
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

inline typename Ops::V coact_act(CoActionActivation k, typename Ops::V v) {
  switch (k) {
    case CoActionActivation::tanh: return Ops::tanh(v);
    case CoActionActivation::relu: return Ops::select_pos(v, v, Ops::zero());
    case CoActionActivation::sigmoid: return Ops::sigmoid(v);
    case CoActionActivation::identity: return v;
  }
  return v;
}
inline typename Ops::V coact_grad(CoActionActivation k, typename Ops::V y) {
  const typename Ops::V one = Ops::set1(1.0f);
  switch (k) {
    case CoActionActivation::tanh: return Ops::sub(one, Ops::mul(y, y));
    case CoActionActivation::relu: return Ops::select_pos(y, one, Ops::zero());
    case CoActionActivation::sigmoid: return Ops::mul(y, Ops::sub(one, y));
    case CoActionActivation::identity: return one;
  }
  return one;
}

/// Transposes `valid` rows of x (d floats each, stride ldx) into columns xt[i * W + lane]; lanes
/// >= valid are zero.
inline void coact_load_columns(const float* x, Index ldx, Index d, Index valid, float* xt) {
  for (Index i = 0; i < d; ++i) Ops::store(xt + i * Ops::W, Ops::zero());
  for (Index t = 0; t < valid; ++t)
    for (Index i = 0; i < d; ++i) xt[i * Ops::W + t] = x[t * ldx + i];
}

/// Micro-MLP forward on columns: hin [d][W] -> acts [act_width][W].
inline void coact_mlp(const CoActionArgs& a, const float* P, const float* hin, float* acts) {
  using V = Ops::V;
  constexpr Index W = Ops::W;
  const float* h = hin;
  Index w = a.in, off = 0, ao = 0;
  for (Index l = 0; l < a.n_layers; ++l) {
    const Index o = a.widths[l];
    const bool activated = a.activate_last || l + 1 < a.n_layers;
    for (Index j = 0; j < o; ++j) {
      V acc = a.bias ? Ops::set1(P[off + w * o + j]) : Ops::zero();
      for (Index i = 0; i < w; ++i) acc = Ops::fma(Ops::load(h + i * W), Ops::set1(P[off + i * o + j]), acc);
      if (activated) acc = coact_act(a.activation, acc);
      Ops::store(acts + (ao + j) * W, acc);
    }
    off += w * o + (a.bias ? o : 0);
    h = acts + ao * W;
    ao += o;
    w = o;
  }
}

void co_action_forward_simd(const CoActionArgs& a, const float* p, const float* x, const Index* lengths, float* y,
                            float* scratch) {
  constexpr Index W = Ops::W;
  const CoActionLayout s = coact_layout(a);
  const Index d = a.in, L = a.seq_len, C = a.orders;
  const Index ldp = a.ld_p ? a.ld_p : s.param_width, ldx = a.ld_x ? a.ld_x : d, ldy = a.ld_y ? a.ld_y : s.out_features;
  float* xt = scratch;                   // [d][W]
  float* hin = xt + d * W;               // [d][W]
  float* acts = hin + d * W;             // [act_width][W]
  float* yacc = acts + s.act_width * W;  // [out_features][W]
  const Index src0 = a.concat_layers ? 0 : s.act_width - a.widths[a.n_layers - 1];
  for (Index b = 0; b < a.batch; ++b) {
    const Index n = lengths ? lengths[b] : L;
    for (Index j = 0; j < s.out_features; ++j) Ops::store(yacc + j * W, Ops::zero());
    for (Index t0 = 0; t0 < n; t0 += W) {
      const Index valid = n - t0 < W ? n - t0 : W;
      const auto m = Ops::mask(valid);
      coact_load_columns(x + (b * L + t0) * ldx, ldx, d, valid, xt);
      for (Index c = 0; c < C; ++c) {
        for (Index i = 0; i < d; ++i)
          Ops::store(hin + i * W, c == 0 ? Ops::load(xt + i * W) : Ops::mul(Ops::load(hin + i * W), Ops::load(xt + i * W)));
        coact_mlp(a, p + b * ldp + (a.order_independent ? c * s.block : 0), hin, acts);
        float* yc = yacc + (a.sum_orders ? 0 : c * s.per_order) * W;
        for (Index j = 0; j < s.per_order; ++j)
          Ops::store(yc + j * W, Ops::add(Ops::load(yc + j * W), Ops::load(acts + (src0 + j) * W, m)));
      }
    }
    float* yb = y + b * ldy;
    for (Index j = 0; j < s.out_features; ++j) yb[j] = Ops::hsum(Ops::load(yacc + j * W));
  }
}

void co_action_backward_simd(const CoActionArgs& a, const float* p, const float* x, const Index* lengths,
                             const float* dy, float* dp, float* dx, float* scratch) {
  using V = Ops::V;
  constexpr Index W = Ops::W;
  const CoActionLayout s = coact_layout(a);
  const Index d = a.in, L = a.seq_len, C = a.orders, nl = a.n_layers;
  const Index ldp = a.ld_p ? a.ld_p : s.param_width, ldx = a.ld_x ? a.ld_x : d, ldy = a.ld_y ? a.ld_y : s.out_features;
  const Index lddp = a.ld_dp ? a.ld_dp : s.param_width, lddx = a.ld_dx ? a.ld_dx : d;
  float* xt = scratch;                      // [d][W]
  float* hin = xt + d * W;                  // [d][W]  x^(c+1)
  float* dhin = hin + d * W;                // [d][W]
  float* dxacc = dhin + d * W;              // [d][W]
  float* acts = dxacc + d * W;              // [act_width][W]
  float* g = acts + s.act_width * W;        // [act_width][W]
  float* dpacc = g + s.act_width * W;       // [param_width][W]
  float* ones = dpacc + s.param_width * W;  // [W]
  for (Index k = 0; k < W; ++k) ones[k] = 1.0f;
  const Index last = s.act_width - a.widths[nl - 1];
  for (Index b = 0; b < a.batch; ++b) {
    const Index n = lengths ? lengths[b] : L;
    for (Index k = 0; k < s.param_width; ++k) Ops::store(dpacc + k * W, Ops::zero());
    if (dx)
      for (Index t = n; t < L; ++t)
        for (Index i = 0; i < d; i += W) Ops::store(dx + (b * L + t) * lddx + i, Ops::zero(), Ops::mask(d - i));
    for (Index t0 = 0; t0 < n; t0 += W) {
      const Index valid = n - t0 < W ? n - t0 : W;
      const V vmask = Ops::load(ones, Ops::mask(valid));  // 1 in valid lanes, 0 elsewhere
      coact_load_columns(x + (b * L + t0) * ldx, ldx, d, valid, xt);
      for (Index i = 0; i < d; ++i) Ops::store(dxacc + i * W, Ops::zero());
      for (Index c = 0; c < C; ++c) {
        const float* P = p + b * ldp + (a.order_independent ? c * s.block : 0);
        float* dP = dpacc + (a.order_independent ? c * s.block : 0) * W;
        for (Index i = 0; i < d; ++i)
          Ops::store(hin + i * W, c == 0 ? Ops::load(xt + i * W) : Ops::mul(Ops::load(hin + i * W), Ops::load(xt + i * W)));
        coact_mlp(a, P, hin, acts);
        const float* dyc = dy + b * ldy + (a.sum_orders ? 0 : c * s.per_order);
        for (Index j = 0; j < s.act_width; ++j) {
          const bool read = a.concat_layers || j >= last;
          Ops::store(g + j * W, read ? Ops::mul(Ops::set1(dyc[a.concat_layers ? j : j - last]), vmask) : Ops::zero());
        }
        Index off = s.block, ao = s.act_width;
        for (Index l = nl; l-- > 0;) {
          const Index o = a.widths[l], w = l ? a.widths[l - 1] : d;
          ao -= o;
          off -= w * o + (a.bias ? o : 0);
          float* go = g + ao * W;
          if (a.activate_last || l + 1 < nl)
            for (Index j = 0; j < o; ++j)
              Ops::store(go + j * W, Ops::mul(Ops::load(go + j * W), coact_grad(a.activation, Ops::load(acts + (ao + j) * W))));
          const float* h = l ? acts + (ao - w) * W : hin;
          float* gh = l ? g + (ao - w) * W : dhin;
          if (a.bias)
            for (Index j = 0; j < o; ++j) {
              float* t = dP + (off + w * o + j) * W;
              Ops::store(t, Ops::add(Ops::load(t), Ops::load(go + j * W)));
            }
          for (Index i = 0; i < w; ++i) {
            const V hi = Ops::load(h + i * W);
            V acc = l ? Ops::load(gh + i * W) : Ops::zero();
            for (Index j = 0; j < o; ++j) {
              const V gj = Ops::load(go + j * W);
              float* t = dP + (off + i * o + j) * W;
              Ops::store(t, Ops::fma(hi, gj, Ops::load(t)));
              acc = Ops::fma(Ops::set1(P[off + i * o + j]), gj, acc);
            }
            Ops::store(gh + i * W, acc);
          }
        }
        // dx += dhin * (c + 1) x^c  (x^c = hin / x is avoided: x^c is the previous power).
        const V cp1 = Ops::set1(float(c + 1));
        for (Index i = 0; i < d; ++i) {
          const V xv = Ops::load(xt + i * W);
          // hin holds x^(c+1); x^c is recomputed by repeated multiplication to match the reference.
          V pc = Ops::set1(1.0f);
          for (Index e = 0; e < c; ++e) pc = Ops::mul(pc, xv);
          Ops::store(dxacc + i * W, Ops::fma(Ops::mul(Ops::load(dhin + i * W), cp1), pc, Ops::load(dxacc + i * W)));
        }
      }
      if (dx)
        for (Index t = 0; t < valid; ++t)
          for (Index i = 0; i < d; ++i) dx[(b * L + t0 + t) * lddx + i] = dxacc[i * W + t];
    }
    float* dpb = dp + b * lddp;
    for (Index k = 0; k < s.param_width; ++k) dpb[k] = Ops::hsum(Ops::load(dpacc + k * W));
  }
}
