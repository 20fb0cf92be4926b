// SIM exact search unit against PyTorch golden files (tools/make_sequence_fixtures.py).
#include "fixtures/sequence/fixture.hpp"
#include "mtrank/blocks/sim.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using namespace mtrank::seqtest;

namespace {
template <class T>
void check_esu(const std::string& name, double rtol, double atol) {
  Fixture f(name);
  const Index B = f.meta["B"], K = f.meta["K"], d = f.meta["d"];
  const bool concat = f.meta["concat"];
  auto lengths = f.meta["lengths"].get<std::vector<std::int64_t>>();
  auto gaps = f.meta["gaps"].get<std::vector<std::int64_t>>();
  ParameterArenaT<T> arena;
  ExactSearchUnit<T> esu(arena, "esu",
                         {.embed_dim = d, .num_heads = f.meta["nhead"], .time_buckets = f.meta["time_buckets"],
                          .time_mode = concat ? TimeMode::concat : TimeMode::add, .time_dim = f.meta["time_dim"]});
  f.load_parameters(arena);
  auto cand = f.tensor<T>("input:candidate", B, d);
  auto beh = f.tensor<T>("input:behaviours", B * K, d);
  typename ExactSearchUnit<T>::Workspace ws;
  auto y = esu.forward(cand.matrix(), beh.matrix(), gaps, lengths, ws);
  f.check_close<T>("output:y", y, rtol, atol);
  auto r = f.tensor<T>("r:y", B, esu.out_features());
  auto g = esu.backward(r.matrix(), ws);
  f.check_close<T>("grad_input:candidate", g.candidate, rtol, atol);
  f.check_close<T>("grad_input:behaviours", g.behaviours, rtol, atol);
  f.check_parameter_grads(arena, rtol, atol);
}
}  // namespace

TEST_CASE("ExactSearchUnit matches PyTorch (time embeddings added / concatenated)") {
  for (const char* name : {"esu_add", "esu_concat"}) {
    INFO(name);
    check_esu<double>(name, kRtolDouble, kAtolDouble);
    check_esu<float>(name, kRtolFloat, kAtolFloat);
  }
}
