// DIN attention against PyTorch golden files (tools/make_sequence_fixtures.py).
#include "fixtures/sequence/fixture.hpp"
#include "mtrank/blocks/din.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using namespace mtrank::seqtest;

namespace {
template <class T>
void check_din(const std::string& name, bool fused, double rtol, double atol) {
  Fixture f(name);
  const Index B = f.meta["B"], L = f.meta["L"], d = f.meta["d"];
  auto lengths = f.meta["lengths"].get<std::vector<std::int64_t>>();
  ParameterArenaT<T> arena;
  DinAttention<T> din(arena, "din",
                      {.dim = d, .hidden = f.meta["hidden"].get<std::vector<Index>>(),
                       .activation = nn::ActivationKind::prelu, .softmax = f.meta["softmax"].get<bool>(),
                       .normalize_by_length = f.meta["normalize_by_length"].get<bool>(), .fused = fused});
  f.load_parameters(arena);
  auto q = f.tensor<T>("input:query", B, d);
  auto k = f.tensor<T>("input:keys", B * L, d);
  typename DinAttention<T>::Workspace ws;
  auto y = din.forward(q.matrix(), k.matrix(), lengths, ws);
  f.check_close<T>("output:y", y, rtol, atol);
  auto r = f.tensor<T>("r:y", B, d);
  auto g = din.backward(r.matrix(), ws);
  f.check_close<T>("grad_input:query", g.query, rtol, atol);
  f.check_close<T>("grad_input:keys", g.keys, rtol, atol);
  f.check_parameter_grads(arena, rtol, atol);
}
}  // namespace

TEST_CASE("DinAttention matches PyTorch (PReLU, raw weights, softmax + length normalisation)") {
  for (const char* name : {"din_raw", "din_softmax_norm"})
    for (bool fused : {true, false}) {
      INFO(name << " fused " << fused);
      check_din<double>(name, fused, kRtolDouble, kAtolDouble);
      check_din<float>(name, fused, kRtolFloat, kAtolFloat);
    }
}
