// GRU over variable-length padded sequences (PyTorch nn.GRU, one layer, batch_first, h0 = 0).
// For each valid step t of sample b (sequence layout: mtrank/nn/sequence.hpp):
//   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
//   z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
//   h' = (1 - z) * n + z * h
// Parameters weight_ih_l0 [3H, in], weight_hh_l0 [3H, H], bias_ih_l0 [3H], bias_hh_l0 [3H],
// gate rows in the order r, z, n; all initialised U(-1/sqrt(H), 1/sqrt(H)) like PyTorch.
// Outputs: every hidden state [B*L, H] (zero at padding) and the last valid state [B, H]
// (zero for an empty sequence) -- PyTorch's packed-sequence output and h_n.
// With max_len > 0 and Overflow::truncate the GRU runs over the most recent max_len items only.
#pragma once
#include <string>
#include <string_view>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/nn/sequence.hpp"

namespace mtrank::nn {

struct GruOptions {
  Index input = 0;
  Index hidden = 0;
  bool bias = true;
  Index max_len = 0;
  Overflow overflow = Overflow::truncate;
};

template <class T = float>
class Gru {
 public:
  using Scalar = T;
  struct Workspace {
    MatrixView<const T> x;
    SeqWindows win;
    TensorT<T> xp;            // [B*L, 3H] input projections (+ b_ih)
    TensorT<T> hp;            // [B*L, 3H] hidden projections (+ b_hh) at each step
    TensorT<T> gates;         // [B*L, 3H] r, z, n
    TensorT<T> states, last;  // [B*L, H], [B, H]
    TensorT<T> hprev;         // [B, H] scratch
    TensorT<T> dgi, dgh, dh, dhprev, dx;
  };
  Gru() = default;
  Gru(ParameterArenaT<T>& arena, std::string_view prefix, GruOptions opt);

  /// x [B*L, input]; returns all hidden states [B*L, hidden]; last_state(ws) gives [B, hidden].
  MatrixView<const T> forward(MatrixView<const T> x, Lengths lengths, Workspace& ws, const Context& ctx = {}) const;
  MatrixView<const T> last_state(const Workspace& ws) const { return ws.last.matrix(); }
  /// d_states [B*L, H] and/or d_last [B, H] (either may be an empty view); accumulates
  /// parameter gradients (BPTT) and returns dx [B*L, input] (zero at padding).
  MatrixView<const T> backward(MatrixView<const T> d_states, MatrixView<const T> d_last, Workspace& ws,
                               bool need_dx = true) const;
  Index input_size() const { return opt_.input; }
  Index hidden_size() const { return opt_.hidden; }

 private:
  GruOptions opt_;
  std::string name_;
  std::string x_what_;  // "<name> x" for error messages, built once (forward allocates nothing)
  Parameter<T>* w_ih_ = nullptr;
  Parameter<T>* w_hh_ = nullptr;
  Parameter<T>* b_ih_ = nullptr;
  Parameter<T>* b_hh_ = nullptr;
};

extern template class Gru<float>;
extern template class Gru<double>;

}  // namespace mtrank::nn
