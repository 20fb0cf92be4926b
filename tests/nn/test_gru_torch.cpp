// GRU against PyTorch nn.GRU with packed variable-length sequences.
#include "fixtures/sequence/fixture.hpp"
#include "mtrank/nn/gru.hpp"

using namespace mtrank;
using namespace mtrank::nn;
using namespace mtrank::seqtest;

namespace {
template <class T>
void check_gru(double rtol, double atol) {
  Fixture f("gru");
  const Index B = f.meta["B"], L = f.meta["L"], I = f.meta["input"], H = f.meta["hidden"];
  auto lengths = f.meta["lengths"].get<std::vector<std::int64_t>>();
  ParameterArenaT<T> arena;
  Gru<T> gru(arena, "gru", {.input = I, .hidden = H});
  f.load_parameters(arena);
  auto x = f.tensor<T>("input:x", B * L, I);
  typename Gru<T>::Workspace ws;
  auto st = gru.forward(x.matrix(), lengths, ws);
  f.check_close<T>("output:states", st, rtol, atol);
  f.check_close<T>("output:last", gru.last_state(ws), rtol, atol);
  auto r1 = f.tensor<T>("r:states", B * L, H);
  auto r2 = f.tensor<T>("r:last", B, H);
  auto dx = gru.backward(r1.matrix(), r2.matrix(), ws);
  f.check_close<T>("grad_input:x", dx, rtol, atol);
  f.check_parameter_grads(arena, rtol, atol);
}
}  // namespace

TEST_CASE("Gru matches PyTorch nn.GRU (packed sequences): states, h_n, BPTT gradients") {
  check_gru<double>(kRtolDouble, kAtolDouble);
  check_gru<float>(kRtolFloat, kAtolFloat);
}
