// DIN attention pooling (Zhou et al., KDD 2018, "Deep Interest Network").
//
// Candidate q [B, d], behaviours k [B*L, d] with lengths (padded layout of
// mtrank/nn/sequence.hpp). For every valid behaviour j of sample b:
//   s_j = Mlp([q; k_j; q - k_j; q * k_j])        scalar; hidden layers PReLU or Dice
//   a_j = s_j                  (paper default: no softmax)   or softmax_j(s_j) over valid j
//   y_b = sum_j a_j k_j        optionally divided by len_b (normalize_by_length)
// An empty sequence gives y_b = 0 and zero gradients.
//
// Parameter names (a PyTorch module with nn.ModuleLists `layers` and `acts`):
//   layers.0.weight [h1, 4d] (columns: q | k | q-k | q*k), layers.0.bias [h1],
//   acts.0.weight [h1] (PReLU) or acts.0.{alpha, running_mean, running_var} (Dice), ...,
//   layers.{n}.weight [1, h_n], layers.{n}.bias [1]  (the scoring layer, no activation).
//
// Fused first layer (default): with W1 = [Wq | Wk | Wd | Wp],
//   W1 [q; k; q-k; q*k] = (Wq + Wd) q + (Wk - Wd + Wp diag(q)) k
// so each sample builds M_b = Wk - Wd + Wp diag(q_b) once and runs one [len_b, d] x [d, h1]
// GEMM: a quarter of the naive FLOPs. fused = false runs the literal concatenation (the
// test oracle). Only valid behaviours are scored (padding costs nothing, and Dice's batch
// statistics see only real behaviours).
//
// float, fused, one or two hidden layers, PReLU (or Dice outside training, i.e. with running
// statistics): forward and backward run the fused DIN attention kernel family
// (kernels/din_attention.hpp, AVX2 / AVX-512 dispatched), which keeps the whole per-sample
// attention MLP in cache. Every other configuration (double, Dice with batch statistics,
// deeper MLPs, fused = false) runs the layer-by-layer path below.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/din_attention.hpp"
#include "mtrank/nn/activation.hpp"
#include "mtrank/nn/linear.hpp"
#include "mtrank/nn/sequence.hpp"

namespace mtrank::blocks {

struct DinAttentionOptions {
  Index dim = 0;                                       // d: width of query and behaviours
  std::vector<Index> hidden = {80, 40};                // hidden widths; a final [1] layer is added
  nn::ActivationKind activation = nn::ActivationKind::prelu;
  bool softmax = false;                                // softmax over valid positions
  bool normalize_by_length = false;                    // divide the pooled vector by len_b
  bool fused = true;                                   // decomposed first layer
  Index max_len = 0;                                   // 0 = unlimited
  nn::Overflow overflow = nn::Overflow::truncate;
};

template <class T = float>
class DinAttention {
 public:
  using Scalar = T;
  struct Workspace {
    MatrixView<const T> query, keys;
    nn::SeqWindows win;
    std::vector<Index> offset;  // compact row offset of each sample (valid behaviours only)
    TensorT<T> in4, h1, mats, qa, cvec, pooled, weights;
    typename nn::Linear<T>::Workspace lin0;
    std::vector<typename nn::Linear<T>::Workspace> lins;      // layers 1..n
    std::vector<typename nn::Activation<T>::Workspace> acts;  // acts 0..n-1
    MatrixView<const T> scores;                                // [N, 1]
    TensorT<T> dscore, dh1, dq, dkeys, dmat, dbm, dwp, dc, da;
    // Fused-kernel path (float): whether the last forward used it, its saved pre-activations,
    // scratch, and the Dice statistics it ran with.
    bool kernel = false;
    TensorT<T> ksaved;
    std::vector<T> kscratch, kstats;
    kernels::DinAttentionArgs kargs;
    kernels::DinAttentionWeights<T> kweights;
  };
  struct Grads {
    MatrixView<const T> query, keys;
  };

  DinAttention() = default;
  DinAttention(ParameterArenaT<T>& arena, std::string_view prefix, DinAttentionOptions opt);

  /// query [B, d], keys [B*L, d], lengths [B] -> pooled [B, d].
  MatrixView<const T> forward(MatrixView<const T> query, MatrixView<const T> keys, nn::Lengths lengths, Workspace& ws,
                              const Context& ctx = {}) const;
  /// Accumulates parameter gradients; returns d query [B, d] and d keys [B*L, d].
  Grads backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  /// Attention weights a_j of the last forward as [B, L] (zero at padding).
  MatrixView<const T> weights(const Workspace& ws) const { return ws.weights.matrix(); }
  Index dim() const { return opt_.dim; }
  const DinAttentionOptions& options() const { return opt_; }

 private:
  MatrixView<const T> score(Workspace& ws, const Context& ctx) const;
  bool use_kernel(const Context& ctx) const;
  DinAttentionOptions opt_;
  std::string name_;
  std::string keys_what_;  // "DinAttention '<name>' keys" for error messages, built once (forward allocates nothing)
  nn::Linear<T> lin0_;
  std::vector<nn::Linear<T>> lins_;
  std::vector<nn::Activation<T>> acts_;
  // Per hidden layer: PReLU slope / Dice alpha, running mean, running var (kernel path).
  std::vector<Parameter<T>*> act_weight_, act_mean_, act_var_;
};

extern template class DinAttention<float>;
extern template class DinAttention<double>;

}  // namespace mtrank::blocks
