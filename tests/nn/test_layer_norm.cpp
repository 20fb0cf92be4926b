#include "mtrank/nn/layer_norm.hpp"

#include "fixtures/sequence/seq_testing.hpp"

using namespace mtrank;
using namespace mtrank::nn;

TEST_CASE("LayerNorm forward matches the definition (biased variance, eps 1e-5)") {
  ParameterArena arena(1);
  LayerNorm<float> ln(arena, "norm", {.width = 5});
  CHECK(arena.at("norm.weight").shape == Shape{5});
  CHECK(arena.at("norm.bias").shape == Shape{5});
  Rng rng(2);
  auto& w = arena.at("norm.weight");
  auto& b = arena.at("norm.bias");
  for (int j = 0; j < 5; ++j) {
    w.value[j] = float(rng.normal());
    b.value[j] = float(rng.normal());
  }
  Tensor x = testing::random_tensor<float>(Shape{3, 5}, rng, 3.0);
  LayerNorm<float>::Workspace ws;
  auto y = ln.forward(x.matrix(), ws);
  for (Index r = 0; r < 3; ++r) {
    double m = 0, v = 0;
    for (int j = 0; j < 5; ++j) m += x[r * 5 + j];
    m /= 5;
    for (int j = 0; j < 5; ++j) v += (x[r * 5 + j] - m) * (x[r * 5 + j] - m);
    v /= 5;
    for (int j = 0; j < 5; ++j)
      CHECK(y(r, j) == Approx((x[r * 5 + j] - m) / std::sqrt(v + 1e-5) * w.value[j] + b.value[j]).margin(1e-5));
  }
  Tensor bad(Shape{3, 4});
  CHECK_THROWS_WITH(ln.forward(bad.matrix(), ws), Catch::Contains("expected 5"));
}

TEST_CASE("LayerNorm gradients match finite differences") {
  for (bool affine : {true, false}) {
    ParameterArenaT<double> arena(3);
    LayerNorm<double> ln(arena, "ln", {.width = 6, .elementwise_affine = affine});
    Rng rng(4);
    for (auto& p : arena.parameters())
      for (Index i = 0; i < p.numel(); ++i) p.value[i] += 0.3 * rng.normal();
    TensorT<double> x = testing::random_tensor<double>(Shape{4, 6}, rng);
    TensorT<double> dx(Shape{4, 6});
    LayerNorm<double>::Workspace ws;
    auto rep = seqtest::check_block(
        arena, [&] { return ln.forward(x.matrix(), ws); },
        [&](MatrixView<const double> dy) { seqtest::store(ln.backward(dy, ws), dx); },
        {{"x", x.data(), dx.data(), x.numel()}});
    INFO(rep.worst);
    CHECK(rep.checked >= 24);
    CHECK(rep.max_error < 1e-6);
  }
}
