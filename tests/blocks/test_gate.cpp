#include <cmath>

#include "block_testing.hpp"
#include "mtrank/blocks/gate.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using mtrank::testing::random_tensor;
using mtrank::testing::random_vector;

namespace {
GradCheckReport check_gate(SoftmaxGateOptions opt, Index batch = 6) {
  ParameterArenaT<double> arena(3);
  SoftmaxGate<double> gate(arena, "gate", opt);
  Rng rng(4);
  TensorT<double> x = random_tensor<double>(Shape{batch, opt.in}, rng);
  auto r = random_vector(static_cast<std::size_t>(batch * opt.num_experts), rng);
  SoftmaxGate<double>::Workspace ws;
  auto loss = [&] { return dot_loss(gate.forward(x.matrix(), ws), r); };
  TensorT<double> dx;
  auto analytic = [&] {
    gate.forward(x.matrix(), ws);
    TensorT<double> dg(Shape{batch, opt.num_experts});
    std::copy(r.begin(), r.end(), dg.begin());
    auto g = gate.backward(dg.matrix(), ws);
    dx.resize(Shape{g.rows, g.cols});
    copy(g, dx.matrix());
  };
  analytic();  // sizes dx before its pointer is taken
  return grad_check(arena, loss, analytic, {{"x", x.data(), dx.data(), x.numel()}});
}
}  // namespace

TEST_CASE("Softmax gate: dense output is softmax((Wx + b) / temperature)") {
  ParameterArenaT<double> arena(1);
  SoftmaxGate<double> gate(arena, "gates.0", {.in = 3, .num_experts = 4, .temperature = 0.7});
  CHECK(arena.at("gates.0.weight").shape == Shape{4, 3});
  CHECK(arena.at("gates.0.bias").shape == Shape{4});
  Rng rng(2);
  TensorT<double> x = random_tensor<double>(Shape{5, 3}, rng);
  SoftmaxGate<double>::Workspace ws;
  auto g = gate.forward(x.matrix(), ws);
  auto W = gate.linear().weight();
  for (Index b = 0; b < 5; ++b) {
    double z[4], sum = 0;
    for (Index e = 0; e < 4; ++e) {
      z[e] = gate.linear().bias()[e];
      for (Index i = 0; i < 3; ++i) z[e] += W(e, i) * x[b * 3 + i];
      sum += std::exp(z[e] / 0.7);
    }
    double total = 0;
    for (Index e = 0; e < 4; ++e) {
      CHECK(g(b, e) == Approx(std::exp(z[e] / 0.7) / sum).epsilon(1e-12));
      total += g(b, e);
    }
    CHECK(total == Approx(1.0));
  }
}

TEST_CASE("Softmax gate: top-k keeps the k largest logits and renormalises over them") {
  ParameterArenaT<double> arena(1);
  SoftmaxGate<double> dense(arena, "dense", {.in = 4, .num_experts = 5, .bias = false});
  SoftmaxGate<double> sparse(arena, "sparse", {.in = 4, .num_experts = 5, .bias = false, .top_k = 2});
  CHECK(arena.find("dense.bias") == nullptr);
  // Same weights for both.
  std::copy(arena.at("dense.weight").value, arena.at("dense.weight").value + 20, arena.at("sparse.weight").value);
  Rng rng(8);
  TensorT<double> x = random_tensor<double>(Shape{7, 4}, rng);
  SoftmaxGate<double>::Workspace wd, wsp;
  auto gd = dense.forward(x.matrix(), wd);
  auto gs = sparse.forward(x.matrix(), wsp);
  for (Index b = 0; b < 7; ++b) {
    // The two largest dense probabilities are the two kept experts, in the same ratio.
    std::vector<Index> idx{0, 1, 2, 3, 4};
    std::sort(idx.begin(), idx.end(), [&](Index a, Index c) { return gd(b, a) > gd(b, c); });
    int nonzero = 0;
    for (Index e = 0; e < 5; ++e) nonzero += gs(b, e) != 0.0;
    CHECK(nonzero == 2);
    const double s = gd(b, idx[0]) + gd(b, idx[1]);
    CHECK(gs(b, idx[0]) == Approx(gd(b, idx[0]) / s));
    CHECK(gs(b, idx[1]) == Approx(gd(b, idx[1]) / s));
  }
}

TEST_CASE("Softmax gate gradients match finite differences (dense, temperature, top-k)") {
  for (auto opt : {SoftmaxGateOptions{.in = 4, .num_experts = 3},
                   SoftmaxGateOptions{.in = 5, .num_experts = 4, .bias = false, .temperature = 0.5},
                   SoftmaxGateOptions{.in = 3, .num_experts = 6, .temperature = 2.0, .top_k = 3},
                   SoftmaxGateOptions{.in = 3, .num_experts = 1}}) {
    auto rep = check_gate(opt);
    INFO(rep.worst);
    CHECK(rep.checked > 10);
    CHECK(rep.max_error < 1e-6);
  }
}

TEST_CASE("Softmax gate: top-k gradient flows only through kept entries") {
  ParameterArenaT<double> arena(5);
  SoftmaxGate<double> gate(arena, "g", {.in = 2, .num_experts = 4, .top_k = 1});
  Rng rng(1);
  TensorT<double> x = random_tensor<double>(Shape{3, 2}, rng);
  SoftmaxGate<double>::Workspace ws;
  auto g = gate.forward(x.matrix(), ws);
  for (Index b = 0; b < 3; ++b) {
    double s = 0;
    for (Index e = 0; e < 4; ++e) s += g(b, e);
    CHECK(s == Approx(1.0));
  }
  // With k = 1 the kept probability is exactly 1, so no gradient reaches the parameters.
  TensorT<double> dg(Shape{3, 4}, 1.5);
  arena.zero_grad();
  gate.backward(dg.matrix(), ws);
  for (Index i = 0; i < 8; ++i) CHECK(arena.at("g.weight").grad[i] == 0.0);
}

TEST_CASE("Softmax gate: bad options name the field") {
  ParameterArena arena;
  CHECK_THROWS_WITH(SoftmaxGate<float>(arena, "gates.0", {.in = 3, .num_experts = 0}),
                    Catch::Contains("gates.0") && Catch::Contains("zero experts"));
  CHECK_THROWS_WITH(SoftmaxGate<float>(arena, "gates.1", {.in = 3, .num_experts = 2, .top_k = 3}),
                    Catch::Contains("top_k 3"));
  CHECK_THROWS_WITH(SoftmaxGate<float>(arena, "gates.2", {.in = 3, .num_experts = 2, .temperature = 0}),
                    Catch::Contains("temperature"));
}

TEST_CASE("Mixture helpers: forward is the gate-weighted sum, backward its adjoint") {
  Rng rng(3);
  const Index B = 4, E = 3, H = 5;
  TensorT<double> g = random_tensor<double>(Shape{B, E}, rng);
  std::vector<TensorT<double>> f;
  std::vector<MatrixView<const double>> fv;
  for (Index e = 0; e < E; ++e) f.push_back(random_tensor<double>(Shape{B, H}, rng));
  for (auto& t : f) fv.push_back(t.matrix());
  TensorT<double> m(Shape{B, H});
  mixture_forward<double>(g.matrix(), fv, m.matrix());
  for (Index b = 0; b < B; ++b)
    for (Index c = 0; c < H; ++c) {
      double s = 0;
      for (Index e = 0; e < E; ++e) s += g.matrix()(b, e) * f[e].matrix()(b, c);
      CHECK(m.matrix()(b, c) == Approx(s).epsilon(1e-12));
    }
  // <dm, m> is bilinear: d/dg and d/df by the helper match the closed forms.
  TensorT<double> dm = random_tensor<double>(Shape{B, H}, rng), dg(Shape{B, E});
  std::vector<TensorT<double>> df(E, TensorT<double>(Shape{B, H}, 0.0));
  std::vector<MatrixView<double>> dfv;
  for (auto& t : df) dfv.push_back(t.matrix());
  mixture_backward<double>(dm.matrix(), g.matrix(), fv, dg.matrix(), dfv);
  for (Index b = 0; b < B; ++b)
    for (Index e = 0; e < E; ++e) {
      double s = 0;
      for (Index c = 0; c < H; ++c) {
        s += dm.matrix()(b, c) * f[e].matrix()(b, c);
        CHECK(df[e].matrix()(b, c) == Approx(g.matrix()(b, e) * dm.matrix()(b, c)));
      }
      CHECK(dg.matrix()(b, e) == Approx(s));
    }
}

TEST_CASE("Softmax gate in float (SIMD softmax kernel, top-k mask) agrees with double") {
  for (Index top_k : {Index(0), Index(3)}) {
    ParameterArena af(2);
    ParameterArenaT<double> ad(2);
    SoftmaxGateOptions opt{.in = 5, .num_experts = 7, .temperature = 0.9, .top_k = top_k};
    SoftmaxGate<float> gf(af, "g", opt);
    SoftmaxGate<double> gd(ad, "g", opt);
    for (const char* n : {"g.weight", "g.bias"}) {
      auto& pf = af.at(n);
      auto& pd = ad.at(n);
      for (Index i = 0; i < pf.numel(); ++i) pd.value[i] = pf.value[i];
    }
    Rng rng(3);
    TensorT<double> xd = random_tensor<double>(Shape{9, 5}, rng);
    Tensor xf(Shape{9, 5});
    for (Index i = 0; i < xd.numel(); ++i) xf[i] = static_cast<float>(xd[i]);
    SoftmaxGate<float>::Workspace wf;
    SoftmaxGate<double>::Workspace wd;
    auto yf = gf.forward(xf.matrix(), wf);
    auto yd = gd.forward(xd.matrix(), wd);
    TensorT<double> dgd = random_tensor<double>(Shape{9, 7}, rng);
    Tensor dgf(Shape{9, 7});
    for (Index i = 0; i < dgd.numel(); ++i) dgf[i] = static_cast<float>(dgd[i]);
    auto dxf = gf.backward(dgf.matrix(), wf);
    auto dxd = gd.backward(dgd.matrix(), wd);
    for (Index b = 0; b < 9; ++b) {
      for (Index e = 0; e < 7; ++e) {
        CHECK(yf(b, e) == Approx(yd(b, e)).margin(1e-6));
        CHECK((yf(b, e) == 0.0f) == (yd(b, e) == 0.0));
      }
      for (Index i = 0; i < 5; ++i) CHECK(dxf(b, i) == Approx(dxd(b, i)).margin(1e-5));
    }
  }
}
