// Transformer encoder (learned positions, 2 post-norm layers) + target attention against
// PyTorch nn.TransformerEncoderLayer / nn.MultiheadAttention.
#include "fixtures/sequence/fixture.hpp"
#include "mtrank/nn/transformer.hpp"

using namespace mtrank;
using namespace mtrank::nn;
using namespace mtrank::seqtest;

namespace {
template <class T>
void check_transformer(double rtol, double atol) {
  Fixture f("transformer");
  const Index B = f.meta["B"], L = f.meta["L"], d = f.meta["d"], nhead = f.meta["nhead"];
  auto lengths = f.meta["lengths"].get<std::vector<std::int64_t>>();
  ParameterArenaT<T> arena;
  TransformerEncoder<T> enc(arena, "enc",
                            {.layer = {.d_model = d, .nhead = nhead, .dim_feedforward = f.meta["dim_feedforward"],
                                       .dropout = 0.0},
                             .num_layers = f.meta["num_layers"],
                             .position = PositionKind::learned,
                             .max_len = f.meta["max_len"]});
  TargetAttention<T> ta(arena, "ta", {.embed_dim = d, .num_heads = nhead});
  f.load_parameters(arena);
  auto x = f.tensor<T>("input:x", B * L, d);
  auto cand = f.tensor<T>("input:candidate", B, d);
  typename TransformerEncoder<T>::Workspace ews;
  typename TargetAttention<T>::Workspace tws;
  auto h = enc.forward(x.matrix(), lengths, ews);
  f.check_close<T>("output:encoded", h, rtol, atol);
  auto y = ta.forward(cand.matrix(), h, lengths, tws);
  f.check_close<T>("output:y", y, rtol, atol);
  auto r1 = f.tensor<T>("r:encoded", B * L, d);
  auto r2 = f.tensor<T>("r:y", B, d);
  auto gt = ta.backward(r2.matrix(), tws);
  f.check_close<T>("grad_input:candidate", gt.candidate, rtol, atol);
  // The encoder output feeds both the loss term <h, r1> (valid rows) and the target attention.
  TensorT<T> dh(Shape{B * L, d});
  for (Index i = 0; i < B * L; ++i)
    for (Index c = 0; c < d; ++c) dh[i * d + c] = r1[i * d + c] + gt.sequence(i, c);
  auto dx = enc.backward(dh.matrix(), ews);
  f.check_close<T>("grad_input:x", dx, rtol, atol);
  f.check_parameter_grads(arena, rtol, atol);
}
}  // namespace

TEST_CASE("TransformerEncoder + TargetAttention match PyTorch (outputs and all gradients)") {
  check_transformer<double>(kRtolDouble, kAtolDouble);
  check_transformer<float>(kRtolFloat, kAtolFloat);
}
