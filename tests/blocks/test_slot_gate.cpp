#include <cmath>

#include "block_testing.hpp"
#include "mtrank/blocks/co_action.hpp"
#include "mtrank/blocks/embedding_transform.hpp"
#include "mtrank/blocks/slot_gate.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using mtrank::testing::random_tensor;
using mtrank::testing::random_vector;

namespace {
TensorT<double> to_tensor(const std::vector<double>& v, Index rows, Index cols) {
  TensorT<double> t(Shape{rows, cols});
  std::copy(v.begin(), v.end(), t.begin());
  return t;
}
void keep(TensorT<double>& dst, MatrixView<const double> src) {
  dst.resize(Shape{src.rows, src.cols});
  copy(src, dst.matrix());
}
}  // namespace

TEST_CASE("GateNU: delta = gamma * sigmoid(W2 relu(W1 x + b1) + b2), in (0, gamma)") {
  ParameterArenaT<double> arena(1);
  GateNU<double> gate(arena, "g", {.in = 4, .hidden = 6, .out = 3, .gamma = 2.0});
  CHECK(arena.at("g.layers.0.weight").shape == Shape{6, 4});
  CHECK(arena.at("g.layers.1.weight").shape == Shape{3, 6});
  Rng rng(2);
  TensorT<double> x = random_tensor<double>(Shape{5, 4}, rng, 3.0);
  GateNU<double>::Workspace ws;
  auto d = gate.forward(x.matrix(), ws);
  const auto& W1 = arena.at("g.layers.0.weight");
  const auto& b1 = arena.at("g.layers.0.bias");
  const auto& W2 = arena.at("g.layers.1.weight");
  const auto& b2 = arena.at("g.layers.1.bias");
  for (Index b = 0; b < 5; ++b) {
    double h[6];
    for (Index j = 0; j < 6; ++j) {
      double a = b1.value[j];
      for (Index i = 0; i < 4; ++i) a += W1.value[j * 4 + i] * x[b * 4 + i];
      h[j] = std::max(a, 0.0);
    }
    for (Index o = 0; o < 3; ++o) {
      double a = b2.value[o];
      for (Index j = 0; j < 6; ++j) a += W2.value[o * 6 + j] * h[j];
      CHECK(d(b, o) == Approx(2.0 / (1.0 + std::exp(-a))).epsilon(1e-12));
      CHECK(d(b, o) > 0.0);
      CHECK(d(b, o) < 2.0);
    }
  }
}

TEST_CASE("GateNU gradients match finite differences") {
  ParameterArenaT<double> arena(3);
  GateNU<double> gate(arena, "g", {.in = 5, .hidden = 7, .out = 4, .gamma = 1.5});
  Rng rng(4);
  TensorT<double> x = random_tensor<double>(Shape{6, 5}, rng);
  auto r = random_vector(24, rng);
  GateNU<double>::Workspace ws;
  TensorT<double> dx;
  auto loss = [&] { return dot_loss(gate.forward(x.matrix(), ws), r); };
  auto analytic = [&] {
    gate.forward(x.matrix(), ws);
    auto dy = to_tensor(r, 6, 4);
    keep(dx, gate.backward(dy.matrix(), ws));
  };
  analytic();
  auto rep = grad_check(arena, loss, analytic, {{"x", x.data(), dx.data(), x.numel()}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-6);
}

TEST_CASE("EPNet: slot-wise and unit-wise gating, stop-gradient on E, gradients") {
  for (bool unit_wise : {false, true}) {
    INFO("unit_wise " << unit_wise);
    ParameterArenaT<double> arena(5);
    EpNet<double> ep(arena, "epnet", {.domain_in = 3, .slot_widths = {2, 4, 3}, .hidden = 8, .unit_wise = unit_wise});
    CHECK(arena.at("epnet.gate.layers.0.weight").shape == Shape{8, 12});
    CHECK(arena.at("epnet.gate.layers.1.weight").shape == Shape{unit_wise ? 9 : 3, 8});
    Rng rng(6);
    const Index B = 4;
    TensorT<double> dom = random_tensor<double>(Shape{B, 3}, rng);
    TensorT<double> emb = random_tensor<double>(Shape{B, 9}, rng);
    auto r = random_vector(static_cast<std::size_t>(B * 9), rng);
    EpNet<double>::Workspace ws;
    auto O = ep.forward(dom.matrix(), emb.matrix(), ws);
    // Slot-wise: one delta per slot broadcast over its width.
    const Index slot_of[9] = {0, 0, 1, 1, 1, 1, 2, 2, 2};
    for (Index b = 0; b < B; ++b)
      for (Index c = 0; c < 9; ++c)
        CHECK(O(b, c) == Approx(ws.delta(b, unit_wise ? c : slot_of[c]) * emb.matrix()(b, c)).epsilon(1e-12));
    // dE = delta (.) dO exactly: the gate sees stop_gradient(E).
    auto dO = to_tensor(r, B, 9);
    arena.zero_grad();
    auto g = ep.backward(dO.matrix(), ws);
    for (Index b = 0; b < B; ++b)
      for (Index c = 0; c < 9; ++c)
        CHECK(g.d_emb(b, c) == Approx(ws.delta(b, unit_wise ? c : slot_of[c]) * r[b * 9 + c]).epsilon(1e-12));
    // Parameters and the domain input: finite differences.
    TensorT<double> ddom;
    auto loss = [&] { return dot_loss(ep.forward(dom.matrix(), emb.matrix(), ws), r); };
    auto analytic = [&] {
      ep.forward(dom.matrix(), emb.matrix(), ws);
      keep(ddom, ep.backward(dO.matrix(), ws).d_domain);
    };
    analytic();
    auto rep = grad_check(arena, loss, analytic, {{"domain", dom.data(), ddom.data(), dom.numel()}});
    INFO(rep.worst);
    CHECK(rep.checked > 100);
    CHECK(rep.max_error < 1e-6);
  }
  ParameterArena arena;
  CHECK_THROWS_WITH(EpNet<float>(arena, "e", {.domain_in = 2, .slot_widths = {3, 0}}), Catch::Contains("slot_widths[1]"));
}

TEST_CASE("PPNet gates and the tower scaling helper: gradients match finite differences") {
  ParameterArenaT<double> arena(8);
  PpNet<double> pp(arena, "ppnet", {.prior_in = 4, .context_in = 3, .num_tasks = 2, .layer_widths = {5, 2}, .hidden = 6});
  CHECK(arena.at("ppnet.gates.1.0.layers.1.weight").shape == Shape{5, 6});
  CHECK(arena.at("ppnet.gates.0.1.layers.0.weight").shape == Shape{6, 7});
  Rng rng(9);
  const Index B = 3;
  TensorT<double> prior = random_tensor<double>(Shape{B, 4}, rng);
  TensorT<double> context = random_tensor<double>(Shape{B, 3}, rng);
  // Tower hidden activations scaled by the gates: loss = sum_kl <r_kl, h_kl (.) delta_kl>.
  std::vector<TensorT<double>> h, r;
  for (Index k = 0; k < 2; ++k)
    for (Index w : {5, 2}) {
      h.push_back(random_tensor<double>(Shape{B, w}, rng));
      r.push_back(random_tensor<double>(Shape{B, w}, rng));
    }
  PpNet<double>::Workspace ws;
  TensorT<double> tmp;
  auto loss = [&] {
    const auto& d = pp.forward(prior.matrix(), context.matrix(), ws);
    double l = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      auto y = ensure(tmp, B, h[i].dim(1));
      gate_scale_forward<double>(h[i].matrix(), d[i / 2][i % 2], y);
      l += dot_loss(y, std::vector<double>(r[i].begin(), r[i].end()));
    }
    return l;
  };
  TensorT<double> dprior;
  std::vector<TensorT<double>> dh(4), dd(4);
  auto analytic = [&] {
    const auto& d = pp.forward(prior.matrix(), context.matrix(), ws);
    std::vector<std::vector<MatrixView<const double>>> dds(2, std::vector<MatrixView<const double>>(2));
    for (std::size_t i = 0; i < 4; ++i) {
      auto dhv = ensure(dh[i], B, h[i].dim(1));
      auto ddv = ensure(dd[i], B, h[i].dim(1));
      gate_scale_backward<double>(r[i].matrix(), h[i].matrix(), d[i / 2][i % 2], dhv, ddv);
      dds[i / 2][i % 2] = ddv;
    }
    keep(dprior, pp.backward(dds, ws));
  };
  analytic();
  std::vector<GradCheckInput> inputs{{"prior", prior.data(), dprior.data(), prior.numel()}};
  for (std::size_t i = 0; i < 4; ++i) inputs.push_back({"h" + std::to_string(i), h[i].data(), dh[i].data(), h[i].numel()});
  auto rep = grad_check(arena, loss, analytic, inputs);
  INFO(rep.worst);
  CHECK(rep.checked > 200);
  CHECK(rep.max_error < 1e-6);
}

TEST_CASE("Embedding transform: identity init, routing by domain, gradients, bad domain ids") {
  ParameterArenaT<double> arena(2);
  EmbeddingTransform<double> et(arena, "et", {.num_domains = 3, .in = 4, .out = 6});
  CHECK(arena.at("et.weight").shape == Shape{3, 6, 4});
  CHECK(arena.at("et.bias").shape == Shape{3, 6});
  Rng rng(3);
  const Index B = 5;
  TensorT<double> x = random_tensor<double>(Shape{B, 4}, rng);
  std::vector<Index> dom{2, 0, 1, 2, 0};
  EmbeddingTransform<double>::Workspace ws;
  auto y0 = et.forward(x.matrix(), dom, ws);
  for (Index b = 0; b < B; ++b)
    for (Index o = 0; o < 6; ++o) CHECK(y0(b, o) == (o < 4 ? x[b * 4 + o] : 0.0));
  // Randomise the parameters, then check the definition and the gradients.
  for (auto& p : arena.parameters())
    for (Index i = 0; i < p.numel(); ++i) p.value[i] = rng.normal();
  auto y = et.forward(x.matrix(), dom, ws);
  const double* W = arena.at("et.weight").value;
  const double* c = arena.at("et.bias").value;
  for (Index b = 0; b < B; ++b)
    for (Index o = 0; o < 6; ++o) {
      double acc = c[dom[b] * 6 + o];
      for (Index i = 0; i < 4; ++i) acc += W[(dom[b] * 6 + o) * 4 + i] * x[b * 4 + i];
      CHECK(y(b, o) == Approx(acc).epsilon(1e-12));
    }
  auto r = random_vector(static_cast<std::size_t>(B * 6), rng);
  TensorT<double> dx;
  auto loss = [&] { return dot_loss(et.forward(x.matrix(), dom, ws), r); };
  auto analytic = [&] {
    et.forward(x.matrix(), dom, ws);
    auto dy = to_tensor(r, B, 6);
    keep(dx, et.backward(dy.matrix(), ws));
  };
  analytic();
  auto rep = grad_check(arena, loss, analytic, {{"x", x.data(), dx.data(), x.numel()}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-6);
  std::vector<Index> bad{0, 1, 3, 0, 0};
  CHECK_THROWS_WITH(et.forward(x.matrix(), bad, ws), Catch::Contains("domain_id[2] = 3 out of range [0, 3)"));
  ParameterArena fa;
  EmbeddingTransform<float> named(fa, "scene", {.num_domains = 2, .in = 2, .out = 2, .domain_field = "scene_id"});
  Tensor xf(Shape{1, 2});
  std::vector<Index> neg{-1};
  EmbeddingTransform<float>::Workspace fws;
  CHECK_THROWS_WITH(named.forward(xf.matrix(), neg, fws), Catch::Contains("scene_id[0] = -1"));
}

TEST_CASE("Co-action unit: micro-MLP from the item embedding, documented reshape order") {
  // d = 2 -> 3 -> 2, bias, tanh between layers, one order, L = 1.
  CoActionUnit<double> can({.in = 2, .layers = {3, 2}});
  CHECK(can.param_width() == 2 * 3 + 3 + 3 * 2 + 2);
  CHECK(can.out_features() == 5);
  Rng rng(1);
  TensorT<double> p = random_tensor<double>(Shape{2, 17}, rng);
  TensorT<double> x = random_tensor<double>(Shape{2, 2}, rng);
  CoActionUnit<double>::Workspace ws;
  auto y = can.forward(p.matrix(), x.matrix(), 1, {}, ws);
  for (Index b = 0; b < 2; ++b) {
    const double* P = p.data() + b * 17;
    double h1[3], h2[2];
    for (int o = 0; o < 3; ++o) {
      double a = P[6 + o];
      for (int i = 0; i < 2; ++i) a += x[b * 2 + i] * P[i * 3 + o];
      h1[o] = std::tanh(a);
    }
    for (int o = 0; o < 2; ++o) {
      double a = P[15 + o];
      for (int i = 0; i < 3; ++i) a += h1[i] * P[9 + i * 2 + o];
      h2[o] = a;  // no activation after the last micro layer
    }
    for (int o = 0; o < 3; ++o) CHECK(y(b, o) == Approx(h1[o]).epsilon(1e-12));
    for (int o = 0; o < 2; ++o) CHECK(y(b, 3 + o) == Approx(h2[o]).epsilon(1e-12));
  }
  CHECK_THROWS_WITH(can.forward(p.matrix().col_block(0, 16), x.matrix(), 1, {}, ws), Catch::Contains("expected 17"));
  std::vector<Index> bad_len{1, 2};
  CHECK_THROWS_WITH(can.forward(p.matrix(), x.matrix(), 1, bad_len, ws), Catch::Contains("lengths[1] = 2"));
}

TEST_CASE("Co-action unit gradients w.r.t. the item embedding and the sequence match finite differences") {
  struct Case {
    CoActionOptions opt;
    Index L;
    bool with_lengths;
  };
  std::vector<Case> cases{
      {{.in = 3, .layers = {4, 4}}, 1, false},
      {{.in = 3, .layers = {4, 4}, .orders = 3}, 5, true},
      {{.in = 2, .layers = {3, 2}, .bias = false, .orders = 2, .order_independent = true, .activate_last = true,
        .concat_layers = false},
       4, true},
      {{.in = 2, .layers = {3}, .orders = 2, .activation = MicroActivation::sigmoid, .sum_orders = true}, 3, false},
  };
  for (std::size_t ci = 0; ci < cases.size(); ++ci) {
    INFO("case " << ci);
    const auto& cs = cases[ci];
    CoActionUnit<double> can(cs.opt);
    Rng rng(11 + ci);
    const Index B = 3;
    TensorT<double> p = random_tensor<double>(Shape{B, can.param_width()}, rng, 0.7);
    TensorT<double> x = random_tensor<double>(Shape{B * cs.L, cs.opt.in}, rng, 0.8);
    std::vector<Index> len;
    if (cs.with_lengths) len = {cs.L, 0, cs.L - 2};
    auto r = random_vector(static_cast<std::size_t>(B * can.out_features()), rng);
    CoActionUnit<double>::Workspace ws;
    TensorT<double> dp, dx;
    auto loss = [&] { return dot_loss(can.forward(p.matrix(), x.matrix(), cs.L, len, ws), r); };
    auto analytic = [&] {
      can.forward(p.matrix(), x.matrix(), cs.L, len, ws);
      auto dy = to_tensor(r, B, can.out_features());
      can.backward(dy.matrix(), ws);
      keep(dp, ws.dp.matrix());
      keep(dx, ws.dx.matrix());
    };
    analytic();
    ParameterArenaT<double> none;
    auto rep = grad_check(none, loss, analytic,
                          {{"p", p.data(), dp.data(), p.numel()}, {"x", x.data(), dx.data(), x.numel()}});
    INFO(rep.worst);
    CHECK(rep.checked > 30);
    CHECK(rep.max_error < 1e-6);
    if (cs.with_lengths) {
      // Padded positions get no gradient and do not change the output.
      for (Index t = 0; t < cs.L; ++t)
        for (Index i = 0; i < cs.opt.in; ++i) CHECK(dx[(1 * cs.L + t) * cs.opt.in + i] == 0.0);
      auto y = can.forward(p.matrix(), x.matrix(), cs.L, len, ws);
      for (Index j = 0; j < can.out_features(); ++j) CHECK(y(1, j) == 0.0);
    }
  }
}
