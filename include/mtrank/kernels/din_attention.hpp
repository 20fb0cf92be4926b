// Fused DIN attention kernel family (Zhou et al., KDD 2018; models.md "DIN attention"): the
// whole attention unit of one batch -- first layer through the q-dependent matrix, hidden
// activations, the small remaining layers, the optional softmax and the masked weighted sum --
// without materialising [q; k; q-k; q*k].
//
// Shapes (a = DinAttentionArgs): B = a.batch, L = a.padded_len, d = a.dim, h1 = a.h1,
// h2 = a.h2 (0: a single hidden layer). Weights in PyTorch layout (DinAttentionWeights):
//   w1 [h1, 4d] (columns q | k | q-k | q*k = Wq | Wk | Wd | Wp), b1 [h1],
//   act1 [h1] (PReLU slope, or Dice alpha with mean1 / inv_std1 [h1]),
//   w2 [h2, h1], b2 [h2], act2 / mean2 / inv_std2 [h2]   (only when h2 > 0),
//   w3 [1, hl], b3 [1]  with hl = h2 > 0 ? h2 : h1.
// query row b at query + b * ld_q, behaviour (b, t) at keys + (b * L + t) * ld_k (padded
// [B, L, d] layout), sample b's window: t = s_b + j, j in [0, n_b), s_b = start ? start[b] : 0,
// n_b = count[b], s_b + n_b <= L (checked by the caller).
//
//   act(x) = prelu: x > 0 ? x : a x
//            dice:  x (alpha + (1 - alpha) p), p = sigmoid((x - mean) * inv_std)   (fixed statistics:
//                   inference, or running statistics; batch statistics are not a per-sample op)
//
//   forward, for each b (pooled [B, d] and wts [B, L] rows are overwritten):
//     cq   = b1 + (Wq + Wd) q                                       [h1]      once per sample
//     M    = (Wk - Wd) + Wp diag(q)                                 [h1, d]   once per sample
//     for j < n_b, k = key (b, s_b + j):
//       u1 = cq + M k           (= W1 [q; k; q-k; q*k] + b1)        saved[(b L + s_b + j) (h1+h2) + 0 ..]
//       z1 = act1(u1)
//       u2 = w2 z1 + b2, z2 = act2(u2)   (h2 > 0)                  saved[... + h1 ..]
//       e_j = w3 z_last + b3
//     a_j  = softmax ? exp(e_j - max e) / sum_j exp(e_j - max e) : e_j
//     wts[b, s_b + j] = a_j, 0 at every other t of the row
//     pooled[b] = sum_j (a_j * scale) k_j,  scale = normalize_by_length ? 1 / n_b : 1
//     n_b = 0 gives pooled[b] = 0 and a zero wts row.
//   saved may be nullptr (inference); the backward needs it.
//
//   backward (grads g.* ACCUMULATE, dquery rows [B, d] and dkeys rows [B*L, d] are OVERWRITTEN,
//   dkeys rows outside the windows with 0; dquery / dkeys may be nullptr), for each b with n_b > 0:
//     dk_j  = a_j scale dy_b;   ds_j = scale <dy_b, k_j>;  softmax: ds_j = a_j (ds_j - sum_i a_i ds_i)
//     through e_j = w3 z + b3, act2, w2, act1 with z, u recomputed from saved:
//       g.b3 += ds_j, g.w3 += ds_j z_last, g.w2 += du2 z1^T, g.b2 += du2, g.act2/act1 += d act/d param,
//       du1 = act1'(u1) (w2^T du2)
//     dcq = sum_j du1_j,  dM = sum_j du1_j k_j^T,  dk_j += M^T du1_j
//     g.b1 += dcq;  g.w1[:, q] += dcq q^T;  g.w1[:, k] += dM;  g.w1[:, q-k] += dcq q^T - dM;
//     g.w1[:, q*k] += dM diag(q);  dq = (Wq + Wd)^T dcq + sum_i dM[i, :] * Wp[i, :]
//   PReLU: d slope += (x > 0 ? 0 : dy x);  Dice: d alpha += dy x (1 - p),
//     dx = dy (alpha + (1 - alpha) p) + dy x (1 - alpha) p (1 - p) inv_std.
//
// scratch: din_attention_scratch_size(a) elements (any variant; caller-owned, so the kernels
// never allocate). The `_ref` templates are the test oracle and the double-precision path.
//
// Numerics: the SIMD variants sum the d- and h-long dot products in a different order than
// the reference and use fused multiply-adds and the vectorised exp / sigmoid (<= 2 ulp): the
// tests bound |simd - ref| by 2e-5 relative to the size of the terms.
#pragma once
#include <cmath>
#include <limits>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

enum class DinActivation : int { prelu = 0, dice = 1 };

struct DinAttentionArgs {
  Index batch = 0, padded_len = 0, dim = 0, h1 = 0, h2 = 0;
  Index ld_query = 0, ld_keys = 0;  // 0 = dim
  DinActivation activation = DinActivation::prelu;
  bool softmax = false;
  bool normalize_by_length = false;
};

template <class T>
struct DinAttentionWeights {
  const T* w1 = nullptr;
  const T* b1 = nullptr;
  const T* act1 = nullptr;
  const T* mean1 = nullptr;
  const T* inv_std1 = nullptr;
  const T* w2 = nullptr;
  const T* b2 = nullptr;
  const T* act2 = nullptr;
  const T* mean2 = nullptr;
  const T* inv_std2 = nullptr;
  const T* w3 = nullptr;
  const T* b3 = nullptr;
};

/// Gradient buffers shaped like the weights (all required; w2/b2/act2 only when h2 > 0).
template <class T>
struct DinAttentionGrads {
  T* w1 = nullptr;
  T* b1 = nullptr;
  T* act1 = nullptr;
  T* w2 = nullptr;
  T* b2 = nullptr;
  T* act2 = nullptr;
  T* w3 = nullptr;
  T* b3 = nullptr;
};

/// Scratch elements any variant needs.
inline Index din_attention_scratch_size(const DinAttentionArgs& a) {
  const Index d = a.dim, h1 = a.h1, h2 = a.h2;
  return 6 * h1 * d + h1 * h2 + 48 * (h1 + h2 + 16) + 2 * a.padded_len + 64;
}

/// Number of saved floats per padded position (saved is [B * L, h1 + h2]).
inline Index din_attention_saved_width(const DinAttentionArgs& a) { return a.h1 + a.h2; }

namespace din_detail {
template <class T>
inline T act_fwd(DinActivation k, T x, T a, T mean, T inv_std) {
  if (k == DinActivation::prelu) return x > T(0) ? x : a * x;
  const T z = (x - mean) * inv_std;
  const T p = z >= T(0) ? T(1) / (T(1) + std::exp(-z)) : std::exp(z) / (T(1) + std::exp(z));
  return x * (a + (T(1) - a) * p);
}
/// Returns dx; accumulates the parameter gradient into *da.
template <class T>
inline T act_bwd(DinActivation k, T x, T dy, T a, T mean, T inv_std, T* da) {
  if (k == DinActivation::prelu) {
    if (x > T(0)) return dy;
    *da += dy * x;
    return a * dy;
  }
  const T z = (x - mean) * inv_std;
  const T p = z >= T(0) ? T(1) / (T(1) + std::exp(-z)) : std::exp(z) / (T(1) + std::exp(z));
  *da += dy * x * (T(1) - p);
  return dy * (a + (T(1) - a) * p) + dy * x * (T(1) - a) * p * (T(1) - p) * inv_std;
}
}  // namespace din_detail

template <class T>
void din_attention_forward_ref(const DinAttentionArgs& a, const DinAttentionWeights<T>& w, const T* query,
                               const T* keys, const Index* start, const Index* count, T* pooled, T* wts, T* saved,
                               T* scratch) {
  using namespace din_detail;
  const Index d = a.dim, h1 = a.h1, h2 = a.h2, L = a.padded_len;
  const Index ldq = a.ld_query ? a.ld_query : d, ldk = a.ld_keys ? a.ld_keys : d, sw = h1 + h2;
  T* cq = scratch;
  T* M = cq + h1;
  T* u1 = M + h1 * d;
  T* z1 = u1 + h1;
  T* u2 = z1 + h1;
  T* z2 = u2 + h2;
  for (Index b = 0; b < a.batch; ++b) {
    const Index s0 = start ? start[b] : 0, n = count[b];
    T* y = pooled + b * d;
    T* ab = wts + b * L;
    for (Index c = 0; c < d; ++c) y[c] = T(0);
    for (Index t = 0; t < L; ++t) ab[t] = T(0);
    if (n == 0) continue;
    ab += s0;
    const T* q = query + b * ldq;
    for (Index i = 0; i < h1; ++i) {
      const T* wr = w.w1 + i * 4 * d;
      T acc = w.b1[i];
      for (Index c = 0; c < d; ++c) {
        acc += (wr[c] + wr[2 * d + c]) * q[c];
        M[i * d + c] = (wr[d + c] - wr[2 * d + c]) + wr[3 * d + c] * q[c];
      }
      cq[i] = acc;
    }
    for (Index j = 0; j < n; ++j) {
      const T* k = keys + (b * L + s0 + j) * ldk;
      for (Index i = 0; i < h1; ++i) {
        T acc = cq[i];
        for (Index c = 0; c < d; ++c) acc += M[i * d + c] * k[c];
        u1[i] = acc;
        z1[i] = act_fwd(a.activation, acc, w.act1[i], w.mean1 ? w.mean1[i] : T(0), w.inv_std1 ? w.inv_std1[i] : T(1));
      }
      T* sv = saved ? saved + (b * L + s0 + j) * sw : nullptr;
      if (sv)
        for (Index i = 0; i < h1; ++i) sv[i] = u1[i];
      const T* zl = z1;
      Index hl = h1;
      if (h2 > 0) {
        for (Index o = 0; o < h2; ++o) {
          T acc = w.b2[o];
          for (Index i = 0; i < h1; ++i) acc += w.w2[o * h1 + i] * z1[i];
          u2[o] = acc;
          z2[o] = act_fwd(a.activation, acc, w.act2[o], w.mean2 ? w.mean2[o] : T(0), w.inv_std2 ? w.inv_std2[o] : T(1));
          if (sv) sv[h1 + o] = acc;
        }
        zl = z2;
        hl = h2;
      }
      T e = w.b3[0];
      for (Index i = 0; i < hl; ++i) e += w.w3[i] * zl[i];
      ab[j] = e;
    }
    if (a.softmax) {
      T mx = -std::numeric_limits<T>::infinity();
      for (Index j = 0; j < n; ++j) mx = ab[j] > mx ? ab[j] : mx;
      T sum = T(0);
      for (Index j = 0; j < n; ++j) sum += (ab[j] = std::exp(ab[j] - mx));
      for (Index j = 0; j < n; ++j) ab[j] /= sum;
    }
    const T scale = a.normalize_by_length ? T(1) / T(n) : T(1);
    for (Index j = 0; j < n; ++j) {
      const T* k = keys + (b * L + s0 + j) * ldk;
      const T aj = ab[j] * scale;
      for (Index c = 0; c < d; ++c) y[c] += aj * k[c];
    }
  }
}

template <class T>
void din_attention_backward_ref(const DinAttentionArgs& a, const DinAttentionWeights<T>& w, const T* query,
                                const T* keys, const Index* start, const Index* count, const T* wts,
                                const T* saved, const T* dpooled, T* dquery, T* dkeys,
                                const DinAttentionGrads<T>& g, T* scratch) {
  using namespace din_detail;
  const Index d = a.dim, h1 = a.h1, h2 = a.h2, L = a.padded_len;
  const Index ldq = a.ld_query ? a.ld_query : d, ldk = a.ld_keys ? a.ld_keys : d, sw = h1 + h2;
  T* M = scratch;
  T* dM = M + h1 * d;
  T* dcq = dM + h1 * d;
  T* z1 = dcq + h1;
  T* dz1 = z1 + h1;
  T* z2 = dz1 + h1;
  T* dz2 = z2 + h2;
  T* ds = dz2 + h2;
  for (Index b = 0; b < a.batch; ++b) {
    const Index s0 = start ? start[b] : 0, n = count[b];
    if (dkeys)
      for (Index t = 0; t < L * d; ++t) dkeys[b * L * d + t] = T(0);
    T* gq = dquery ? dquery + b * d : nullptr;
    if (gq)
      for (Index c = 0; c < d; ++c) gq[c] = T(0);
    if (n == 0) continue;
    const T* q = query + b * ldq;
    const T* gy = dpooled + b * d;
    const T* ab = wts + b * L + s0;
    const T scale = a.normalize_by_length ? T(1) / T(n) : T(1);
    T dot = T(0);
    for (Index j = 0; j < n; ++j) {
      const T* k = keys + (b * L + s0 + j) * ldk;
      T* gk = dkeys ? dkeys + (b * L + s0 + j) * d : nullptr;
      T acc = T(0);
      for (Index c = 0; c < d; ++c) {
        acc += gy[c] * k[c];
        if (gk) gk[c] = ab[j] * scale * gy[c];
      }
      ds[j] = acc * scale;
      dot += ab[j] * ds[j];
    }
    if (a.softmax)
      for (Index j = 0; j < n; ++j) ds[j] = ab[j] * (ds[j] - dot);
    for (Index i = 0; i < h1; ++i) {
      const T* wr = w.w1 + i * 4 * d;
      dcq[i] = T(0);
      for (Index c = 0; c < d; ++c) {
        M[i * d + c] = (wr[d + c] - wr[2 * d + c]) + wr[3 * d + c] * q[c];
        dM[i * d + c] = T(0);
      }
    }
    for (Index j = 0; j < n; ++j) {
      const T* k = keys + (b * L + s0 + j) * ldk;
      const T* u1 = saved + (b * L + s0 + j) * sw;
      for (Index i = 0; i < h1; ++i)
        z1[i] = act_fwd(a.activation, u1[i], w.act1[i], w.mean1 ? w.mean1[i] : T(0), w.inv_std1 ? w.inv_std1[i] : T(1));
      g.b3[0] += ds[j];
      if (h2 > 0) {
        const T* u2 = u1 + h1;
        for (Index o = 0; o < h2; ++o) {
          const T m2 = w.mean2 ? w.mean2[o] : T(0), is2 = w.inv_std2 ? w.inv_std2[o] : T(1);
          z2[o] = act_fwd(a.activation, u2[o], w.act2[o], m2, is2);
          g.w3[o] += ds[j] * z2[o];
          dz2[o] = act_bwd(a.activation, u2[o], ds[j] * w.w3[o], w.act2[o], m2, is2, &g.act2[o]);
          g.b2[o] += dz2[o];
        }
        for (Index i = 0; i < h1; ++i) dz1[i] = T(0);
        for (Index o = 0; o < h2; ++o)
          for (Index i = 0; i < h1; ++i) {
            g.w2[o * h1 + i] += dz2[o] * z1[i];
            dz1[i] += dz2[o] * w.w2[o * h1 + i];
          }
      } else {
        for (Index i = 0; i < h1; ++i) {
          g.w3[i] += ds[j] * z1[i];
          dz1[i] = ds[j] * w.w3[i];
        }
      }
      T* gk = dkeys ? dkeys + (b * L + s0 + j) * d : nullptr;
      for (Index i = 0; i < h1; ++i) {
        const T du = act_bwd(a.activation, u1[i], dz1[i], w.act1[i], w.mean1 ? w.mean1[i] : T(0),
                             w.inv_std1 ? w.inv_std1[i] : T(1), &g.act1[i]);
        dcq[i] += du;
        for (Index c = 0; c < d; ++c) {
          dM[i * d + c] += du * k[c];
          if (gk) gk[c] += du * M[i * d + c];
        }
      }
    }
    for (Index i = 0; i < h1; ++i) {
      const T* wr = w.w1 + i * 4 * d;
      T* gw = g.w1 + i * 4 * d;
      g.b1[i] += dcq[i];
      for (Index c = 0; c < d; ++c) {
        const T dm = dM[i * d + c], dA = dcq[i] * q[c];
        gw[c] += dA;
        gw[d + c] += dm;
        gw[2 * d + c] += dA - dm;
        gw[3 * d + c] += dm * q[c];
        if (gq) gq[c] += dcq[i] * (wr[c] + wr[2 * d + c]) + dm * wr[3 * d + c];
      }
    }
  }
}

/// One dispatch table for the DIN attention family (float).
struct DinAttentionKernels {
  Isa isa;
  void (*f32_din_attention_forward)(const DinAttentionArgs& a, const DinAttentionWeights<float>& w,
                                    const float* query, const float* keys, const Index* start, const Index* count,
                                    float* pooled, float* wts, float* saved, float* scratch);
  void (*f32_din_attention_backward)(const DinAttentionArgs& a, const DinAttentionWeights<float>& w,
                                     const float* query, const float* keys, const Index* start, const Index* count,
                                     const float* wts, const float* saved, const float* dpooled, float* dquery,
                                     float* dkeys, const DinAttentionGrads<float>& g, float* scratch);
};

const DinAttentionKernels& din_attention_kernels(Isa isa);
const DinAttentionKernels& din_attention_kernels();

}  // namespace mtrank::kernels
