// ISA-generic bodies of the fused DIN attention kernels (meaning: include/mtrank/kernels/
// din_attention.hpp). Included by src/kernels/{avx2,avx512}/din_attention_*.cpp inside an
// anonymous namespace after `struct Ops` (simd_ops_<isa>.hpp).
//
// Two register-blocked primitives carry all the FLOPs:
//   xw<NB>:   out[r][0:N] = base + sum_k x[r][k] * Mt[k, 0:N]     for NB <= 4 rows r at once
//             (the weight row is loaded once for NB behaviours; 2 vectors of N per tile)
//   rank<NB>: out[i, 0:N] += sum_r coef[r][i] * v[r][0:N]       for every row i
//             (v[r] chunks stay in registers while the rows stream through)

constexpr int kNB = 4;  // behaviours per register block

template <int NB, int NV>
inline void xw_tile(Index K, const float* const* x, const float* mt, Index ldm, Index n0, Index N, const float* init,
                    bool acc_out, float* const* out) {
  using V = Ops::V;
  typename Ops::Mask m[NV];
  V acc[NB][NV];
  for (int v = 0; v < NV; ++v) m[v] = Ops::mask(N - n0 - v * Ops::W);
  for (int r = 0; r < NB; ++r)
    for (int v = 0; v < NV; ++v) {
      const Index c = n0 + v * Ops::W;
      acc[r][v] = init ? Ops::load(init + c, m[v]) : acc_out ? Ops::load(out[r] + c, m[v]) : Ops::zero();
    }
  for (Index k = 0; k < K; ++k) {
    V wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = Ops::load(mt + k * ldm + n0 + v * Ops::W, m[v]);
    for (int r = 0; r < NB; ++r) {
      const V xb = Ops::set1(x[r][k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = Ops::fma(xb, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < NB; ++r)
    for (int v = 0; v < NV; ++v) Ops::store(out[r] + n0 + v * Ops::W, acc[r][v], m[v]);
}

template <int NB>
inline void xw_nb(Index K, const float* const* x, const float* mt, Index ldm, Index N, const float* init, bool acc_out,
                  float* const* out) {
  Index n0 = 0;
  for (; N - n0 > Ops::W; n0 += 2 * Ops::W) xw_tile<NB, 2>(K, x, mt, ldm, n0, N, init, acc_out, out);
  if (n0 < N) xw_tile<NB, 1>(K, x, mt, ldm, n0, N, init, acc_out, out);
}

/// init (shared by all rows) or acc_out (out rows are the base) or zero.
inline void xw(int nb, Index K, const float* const* x, const float* mt, Index ldm, Index N, const float* init,
               bool acc_out, float* const* out) {
  switch (nb) {
    case 4: xw_nb<4>(K, x, mt, ldm, N, init, acc_out, out); break;
    case 3: xw_nb<3>(K, x, mt, ldm, N, init, acc_out, out); break;
    case 2: xw_nb<2>(K, x, mt, ldm, N, init, acc_out, out); break;
    default: xw_nb<1>(K, x, mt, ldm, N, init, acc_out, out); break;
  }
}

template <int NB, int NV>
inline void rank_tile(Index rows, const float* const* coef, const float* const* vec, Index n0, Index N, float* out,
                      Index ldo) {
  using V = Ops::V;
  typename Ops::Mask m[NV];
  V kv[NB][NV];
  for (int v = 0; v < NV; ++v) m[v] = Ops::mask(N - n0 - v * Ops::W);
  for (int r = 0; r < NB; ++r)
    for (int v = 0; v < NV; ++v) kv[r][v] = Ops::load(vec[r] + n0 + v * Ops::W, m[v]);
  for (Index i = 0; i < rows; ++i) {
    float* o = out + i * ldo + n0;
    V acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = Ops::load(o + v * Ops::W, m[v]);
    for (int r = 0; r < NB; ++r) {
      const V cb = Ops::set1(coef[r][i]);
      for (int v = 0; v < NV; ++v) acc[v] = Ops::fma(cb, kv[r][v], acc[v]);
    }
    for (int v = 0; v < NV; ++v) Ops::store(o + v * Ops::W, acc[v], m[v]);
  }
}

template <int NB>
inline void rank_nb(Index rows, const float* const* coef, const float* const* vec, Index N, float* out, Index ldo) {
  constexpr int R = Ops::kRankNV;
  Index n0 = 0;
  for (; N - n0 > (R - 1) * Ops::W; n0 += R * Ops::W) rank_tile<NB, R>(rows, coef, vec, n0, N, out, ldo);
  const Index nv = (N - n0 + Ops::W - 1) / Ops::W;
  if (nv == 1) rank_tile<NB, 1>(rows, coef, vec, n0, N, out, ldo);
  if constexpr (R >= 3) {
    if (nv == 2) rank_tile<NB, 2>(rows, coef, vec, n0, N, out, ldo);
    if (nv == 3) rank_tile<NB, (R >= 4 ? 3 : 1)>(rows, coef, vec, n0, N, out, ldo);
  }
}

inline void rank(int nb, Index rows, const float* const* coef, const float* const* vec, Index N, float* out, Index ldo) {
  switch (nb) {
    case 4: rank_nb<4>(rows, coef, vec, N, out, ldo); break;
    case 3: rank_nb<3>(rows, coef, vec, N, out, ldo); break;
    case 2: rank_nb<2>(rows, coef, vec, N, out, ldo); break;
    default: rank_nb<1>(rows, coef, vec, N, out, ldo); break;
  }
}

inline float dot(const float* x, const float* y, Index n) {
  typename Ops::V acc = Ops::zero();
  for (Index c = 0; c < n; c += Ops::W) {
    const auto m = Ops::mask(n - c);
    acc = Ops::fma(Ops::load(x + c, m), Ops::load(y + c, m), acc);
  }
  return Ops::hsum(acc);
}

/// y[0:n] = s * x[0:n] (+ y when accumulate)
inline void axpy(float s, const float* x, float* y, Index n, bool accumulate) {
  const typename Ops::V sv = Ops::set1(s);
  for (Index c = 0; c < n; c += Ops::W) {
    const auto m = Ops::mask(n - c);
    const typename Ops::V base = accumulate ? Ops::load(y + c, m) : Ops::zero();
    Ops::store(y + c, Ops::fma(sv, Ops::load(x + c, m), base), m);
  }
}

inline void zero_n(float* y, Index n) {
  for (Index c = 0; c < n; c += Ops::W) Ops::store(y + c, Ops::zero(), Ops::mask(n - c));
}

/// z = act(u) over n units.
inline void act_fwd_vec(DinActivation kind, const float* u, float* z, Index n, const float* a, const float* mean,
                        const float* inv_std) {
  using V = Ops::V;
  const V one = Ops::set1(1.0f);
  for (Index c = 0; c < n; c += Ops::W) {
    const auto m = Ops::mask(n - c);
    const V x = Ops::load(u + c, m), av = Ops::load(a + c, m);
    V y;
    if (kind == DinActivation::prelu) {
      y = Ops::select_pos(x, x, Ops::mul(av, x));
    } else {
      const V mu = mean ? Ops::load(mean + c, m) : Ops::zero();
      const V is = inv_std ? Ops::load(inv_std + c, m) : one;
      const V p = Ops::sigmoid(Ops::mul(Ops::sub(x, mu), is));
      y = Ops::mul(x, Ops::fma(Ops::sub(one, av), p, av));
    }
    Ops::store(z + c, y, m);
  }
}

/// dx = act'(u) * dz (in place on dz allowed), da += parameter gradient.
inline void act_bwd_vec(DinActivation kind, const float* u, const float* dz, float* dx, Index n, const float* a,
                        const float* mean, const float* inv_std, float* da) {
  using V = Ops::V;
  const V one = Ops::set1(1.0f);
  for (Index c = 0; c < n; c += Ops::W) {
    const auto m = Ops::mask(n - c);
    const V x = Ops::load(u + c, m), dy = Ops::load(dz + c, m), av = Ops::load(a + c, m);
    V g, gd;
    if (kind == DinActivation::prelu) {
      g = Ops::select_pos(x, dy, Ops::mul(av, dy));
      gd = Ops::select_pos(x, Ops::zero(), Ops::mul(dy, x));
    } else {
      const V mu = mean ? Ops::load(mean + c, m) : Ops::zero();
      const V is = inv_std ? Ops::load(inv_std + c, m) : one;
      const V p = Ops::sigmoid(Ops::mul(Ops::sub(x, mu), is));
      const V omp = Ops::sub(one, p), oma = Ops::sub(one, av);
      const V dyx = Ops::mul(dy, x);
      gd = Ops::mul(dyx, omp);
      g = Ops::fma(Ops::mul(Ops::mul(Ops::mul(dyx, oma), p), omp), is, Ops::mul(dy, Ops::fma(oma, p, av)));
    }
    Ops::store(da + c, Ops::add(Ops::load(da + c, m), gd), m);
    Ops::store(dx + c, g, m);
  }
}

/// In place softmax over n scores (Ops::exp, <= 2 ulp).
inline void softmax_inplace(float* e, Index n) {
  float mx = e[0];
  for (Index j = 1; j < n; ++j) mx = e[j] > mx ? e[j] : mx;
  const typename Ops::V mv = Ops::set1(mx);
  typename Ops::V sum = Ops::zero();
  for (Index j = 0; j < n; j += Ops::W) {
    const auto m = Ops::mask(n - j);
    const typename Ops::V ex = Ops::exp(Ops::sub(Ops::load(e + j, m), mv));
    Ops::store(e + j, ex, m);
    sum = Ops::add(sum, Ops::load(e + j, m));  // masked lanes read back as 0
  }
  const float inv = 1.0f / Ops::hsum(sum);
  for (Index j = 0; j < n; j += Ops::W) {
    const auto m = Ops::mask(n - j);
    Ops::store(e + j, Ops::mul(Ops::load(e + j, m), Ops::set1(inv)), m);
  }
}

void din_forward_simd(const DinAttentionArgs& a, const DinAttentionWeights<float>& w, const float* query,
                      const float* keys, const Index* start, const Index* count, float* pooled, float* wts,
                      float* saved, float* scratch) {
  const Index d = a.dim, h1 = a.h1, h2 = a.h2, L = a.padded_len;
  const Index ldq = a.ld_query ? a.ld_query : d, ldk = a.ld_keys ? a.ld_keys : d, sw = h1 + h2;
  // Scratch: AT, BmT, WpT, MT [d, h1]; W2T [h1, h2]; cq [h1]; u1/z1 blocks [NB, h1]; u2/z2 [NB, h2].
  float* AT = scratch;
  float* BmT = AT + d * h1;
  float* WpT = BmT + d * h1;
  float* MT = WpT + d * h1;
  float* W2T = MT + d * h1;
  float* cq = W2T + h1 * h2;
  float* ub1 = cq + h1;
  float* zb1 = ub1 + kNB * h1;
  float* ub2 = zb1 + kNB * h1;
  float* zb2 = ub2 + kNB * h2;
  for (Index i = 0; i < h1; ++i) {
    const float* wr = w.w1 + i * 4 * d;
    for (Index c = 0; c < d; ++c) {
      AT[c * h1 + i] = wr[c] + wr[2 * d + c];
      BmT[c * h1 + i] = wr[d + c] - wr[2 * d + c];
      WpT[c * h1 + i] = wr[3 * d + c];
    }
  }
  for (Index o = 0; o < h2; ++o)
    for (Index i = 0; i < h1; ++i) W2T[i * h2 + o] = w.w2[o * h1 + i];
  const float* wl = w.w3;
  const Index hl = h2 > 0 ? h2 : h1;
  for (Index b = 0; b < a.batch; ++b) {
    const Index s0 = start ? start[b] : 0, n = count[b];
    float* y = pooled + b * d;
    float* ab = wts + b * L;
    zero_n(y, d);
    zero_n(ab, L);
    if (n == 0) continue;
    ab += s0;
    const float* q = query + b * ldq;
    float* cqp = cq;
    xw(1, d, &q, AT, h1, h1, w.b1, false, &cqp);
    for (Index c = 0; c < d; ++c) {
      const typename Ops::V qc = Ops::set1(q[c]);
      for (Index i = 0; i < h1; i += Ops::W) {
        const auto m = Ops::mask(h1 - i);
        Ops::store(MT + c * h1 + i, Ops::fma(qc, Ops::load(WpT + c * h1 + i, m), Ops::load(BmT + c * h1 + i, m)), m);
      }
    }
    const float* kb = keys + (b * L + s0) * ldk;
    for (Index j0 = 0; j0 < n; j0 += kNB) {
      const int nb = static_cast<int>(n - j0 < kNB ? n - j0 : kNB);
      const float* kx[kNB];
      float* u1[kNB];
      float* u2[kNB];
      const float* z1[kNB];
      float* z2[kNB];
      for (int r = 0; r < nb; ++r) {
        kx[r] = kb + (j0 + r) * ldk;
        float* sv = saved ? saved + (b * L + s0 + j0 + r) * sw : nullptr;
        u1[r] = sv ? sv : ub1 + r * h1;
        u2[r] = sv ? sv + h1 : ub2 + r * h2;
        z1[r] = zb1 + r * h1;
        z2[r] = zb2 + r * h2;
      }
      xw(nb, d, kx, MT, h1, h1, cq, false, u1);
      for (int r = 0; r < nb; ++r) act_fwd_vec(a.activation, u1[r], zb1 + r * h1, h1, w.act1, w.mean1, w.inv_std1);
      if (h2 > 0) {
        xw(nb, h1, z1, W2T, h2, h2, w.b2, false, u2);
        for (int r = 0; r < nb; ++r) act_fwd_vec(a.activation, u2[r], z2[r], h2, w.act2, w.mean2, w.inv_std2);
      }
      for (int r = 0; r < nb; ++r) ab[j0 + r] = w.b3[0] + dot(wl, h2 > 0 ? z2[r] : z1[r], hl);
    }
    if (a.softmax) softmax_inplace(ab, n);
    const float scale = a.normalize_by_length ? 1.0f / float(n) : 1.0f;
    for (Index c = 0; c < d; c += Ops::W) {
      const auto m = Ops::mask(d - c);
      typename Ops::V acc = Ops::zero();
      for (Index j = 0; j < n; ++j) acc = Ops::fma(Ops::set1(ab[j] * scale), Ops::load(kb + j * ldk + c, m), acc);
      Ops::store(y + c, acc, m);
    }
  }
}

void din_backward_simd(const DinAttentionArgs& a, const DinAttentionWeights<float>& w, const float* query,
                       const float* keys, const Index* start, const Index* count, const float* wts,
                       const float* saved, const float* dpooled, float* dquery, float* dkeys,
                       const DinAttentionGrads<float>& g, float* scratch) {
  const Index d = a.dim, h1 = a.h1, h2 = a.h2, L = a.padded_len;
  const Index ldq = a.ld_query ? a.ld_query : d, ldk = a.ld_keys ? a.ld_keys : d, sw = h1 + h2;
  // Scratch: A, Bm, M, dM [h1, d]; dcq [h1]; z1, dz1 [NB, h1]; z2, dz2 [NB, h2]; ds [L].
  float* A = scratch;
  float* Bm = A + h1 * d;
  float* M = Bm + h1 * d;
  float* dM = M + h1 * d;
  float* dcq = dM + h1 * d;
  float* zb1 = dcq + h1;
  float* dzb1 = zb1 + kNB * h1;
  float* zb2 = dzb1 + kNB * h1;
  float* dzb2 = zb2 + kNB * h2;
  float* ds = dzb2 + kNB * h2;
  for (Index i = 0; i < h1; ++i) {
    const float* wr = w.w1 + i * 4 * d;
    for (Index c = 0; c < d; ++c) {
      A[i * d + c] = wr[c] + wr[2 * d + c];
      Bm[i * d + c] = wr[d + c] - wr[2 * d + c];
    }
  }
  const Index hl = h2 > 0 ? h2 : h1;
  for (Index b = 0; b < a.batch; ++b) {
    const Index s0 = start ? start[b] : 0, n = count[b];
    if (dkeys) zero_n(dkeys + b * L * d, L * d);
    float* gq = dquery ? dquery + b * d : nullptr;
    if (gq) zero_n(gq, d);
    if (n == 0) continue;
    const float* q = query + b * ldq;
    const float* gy = dpooled + b * d;
    const float* ab = wts + b * L + s0;
    const float* kb = keys + (b * L + s0) * ldk;
    float* gkb = dkeys ? dkeys + (b * L + s0) * d : nullptr;
    const float scale = a.normalize_by_length ? 1.0f / float(n) : 1.0f;
    float sdot = 0.0f;
    for (Index j = 0; j < n; ++j) {
      ds[j] = dot(gy, kb + j * ldk, d) * scale;
      sdot += ab[j] * ds[j];
      if (gkb) axpy(ab[j] * scale, gy, gkb + j * d, d, false);
    }
    if (a.softmax)
      for (Index j = 0; j < n; ++j) ds[j] = ab[j] * (ds[j] - sdot);
    for (Index i = 0; i < h1; ++i) {
      const float* wp = w.w1 + i * 4 * d + 3 * d;
      for (Index c = 0; c < d; c += Ops::W) {
        const auto m = Ops::mask(d - c);
        Ops::store(M + i * d + c, Ops::fma(Ops::load(wp + c, m), Ops::load(q + c, m), Ops::load(Bm + i * d + c, m)), m);
      }
    }
    zero_n(dM, h1 * d);
    zero_n(dcq, h1);
    for (Index j0 = 0; j0 < n; j0 += kNB) {
      const int nb = static_cast<int>(n - j0 < kNB ? n - j0 : kNB);
      const float* kx[kNB];
      const float* z1[kNB];
      const float* z2[kNB];
      const float* dz1c[kNB];
      float* dz1[kNB];
      const float* dz2c[kNB];
      float* gk[kNB];
      for (int r = 0; r < nb; ++r) {
        const float* u1 = saved + (b * L + s0 + j0 + r) * sw;
        kx[r] = kb + (j0 + r) * ldk;
        z1[r] = zb1 + r * h1;
        z2[r] = zb2 + r * h2;
        dz1[r] = dzb1 + r * h1;
        dz1c[r] = dz1[r];
        dz2c[r] = dzb2 + r * h2;
        gk[r] = gkb ? gkb + (j0 + r) * d : nullptr;
        act_fwd_vec(a.activation, u1, zb1 + r * h1, h1, w.act1, w.mean1, w.inv_std1);
        const float dsj = ds[j0 + r];
        g.b3[0] += dsj;
        if (h2 > 0) {
          const float* u2 = u1 + h1;
          act_fwd_vec(a.activation, u2, zb2 + r * h2, h2, w.act2, w.mean2, w.inv_std2);
          axpy(dsj, z2[r], g.w3, h2, true);
          axpy(dsj, w.w3, dzb2 + r * h2, h2, false);
          act_bwd_vec(a.activation, u2, dzb2 + r * h2, dzb2 + r * h2, h2, w.act2, w.mean2, w.inv_std2, g.act2);
          axpy(1.0f, dzb2 + r * h2, g.b2, h2, true);
        } else {
          axpy(dsj, z1[r], g.w3, hl, true);
          axpy(dsj, w.w3, dz1[r], h1, false);
        }
      }
      if (h2 > 0) {
        rank(nb, h2, dz2c, z1, h1, g.w2, h1);                 // g.w2 += du2 z1^T
        xw(nb, h2, dz2c, w.w2, h1, h1, nullptr, false, dz1);  // dz1 = w2^T du2
      }
      for (int r = 0; r < nb; ++r) {
        const float* u1 = saved + (b * L + s0 + j0 + r) * sw;
        act_bwd_vec(a.activation, u1, dz1[r], dz1[r], h1, w.act1, w.mean1, w.inv_std1, g.act1);
        axpy(1.0f, dz1[r], dcq, h1, true);
      }
      rank(nb, h1, dz1c, kx, d, dM, d);                            // dM += du1 k^T
      if (gkb) xw(nb, h1, dz1c, M, d, d, nullptr, true, gk);       // dk += M^T du1
    }
    axpy(1.0f, dcq, g.b1, h1, true);
    for (Index i = 0; i < h1; ++i) {
      float* gw = g.w1 + i * 4 * d;
      const typename Ops::V dc = Ops::set1(dcq[i]);
      for (Index c = 0; c < d; c += Ops::W) {
        const auto m = Ops::mask(d - c);
        const typename Ops::V qv = Ops::load(q + c, m), dm = Ops::load(dM + i * d + c, m);
        const typename Ops::V dA = Ops::mul(dc, qv);
        Ops::store(gw + c, Ops::add(Ops::load(gw + c, m), dA), m);
        Ops::store(gw + d + c, Ops::add(Ops::load(gw + d + c, m), dm), m);
        Ops::store(gw + 2 * d + c, Ops::add(Ops::load(gw + 2 * d + c, m), Ops::sub(dA, dm)), m);
        Ops::store(gw + 3 * d + c, Ops::fma(dm, qv, Ops::load(gw + 3 * d + c, m)), m);
      }
    }
    if (gq) {
      const float* dcp = dcq;
      xw(1, h1, &dcp, A, d, d, nullptr, false, &gq);  // dq = A^T dcq
      for (Index i = 0; i < h1; ++i) {
        const float* wp = w.w1 + i * 4 * d + 3 * d;
        for (Index c = 0; c < d; c += Ops::W) {
          const auto m = Ops::mask(d - c);
          Ops::store(gq + c, Ops::fma(Ops::load(dM + i * d + c, m), Ops::load(wp + c, m), Ops::load(gq + c, m)), m);
        }
      }
    }
  }
}
