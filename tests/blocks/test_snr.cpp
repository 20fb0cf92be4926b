#include <cmath>

#include "block_testing.hpp"
#include "mtrank/blocks/snr.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using mtrank::blocks::testing::check_backbone;
using mtrank::testing::random_tensor;

using MlpD = nn::Mlp<double>;

namespace {
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

TEST_CASE("Hard-concrete gate: inference and training codes follow Louizos et al.") {
  ParameterArenaT<double> arena(1);
  HardConcreteGate<double> gate(arena, "r", {.rows = 2, .cols = 3});
  double* la = arena.at("r.log_alpha").value;
  const double vals[6] = {-3.0, -0.5, 0.0, 0.7, 2.0, 6.0};
  std::copy(vals, vals + 6, la);
  HardConcreteGate<double>::Workspace ws;
  auto z = gate.forward(ws);
  for (int i = 0; i < 6; ++i) {
    const double expect = std::min(1.0, std::max(0.0, sigmoid(vals[i]) * 1.2 - 0.1));
    CHECK(z.data[i] == Approx(expect).epsilon(1e-12));
  }
  CHECK(z.data[0] == 0.0);  // sigmoid(-3) * 1.2 - 0.1 < 0: connection closed
  CHECK(z.data[5] == 1.0);
  const double u[6] = {0.1, 0.3, 0.5, 0.7, 0.9, 0.05};
  Rng rng(1);
  auto zt = gate.forward(ws, Context::train(rng), u);
  for (int i = 0; i < 6; ++i) {
    const double s = sigmoid((std::log(u[i]) - std::log(1 - u[i]) + vals[i]) / (2.0 / 3.0));
    CHECK(zt.data[i] == Approx(std::min(1.0, std::max(0.0, s * 1.2 - 0.1))).epsilon(1e-12));
  }
}

TEST_CASE("Hard-concrete gate: the L0 penalty is P(z > 0) under the sampling distribution") {
  ParameterArenaT<double> arena(1);
  HardConcreteGate<double> gate(arena, "r", {.rows = 1, .cols = 3});
  double* la = arena.at("r.log_alpha").value;
  la[0] = -1.0;
  la[1] = 0.3;
  la[2] = 1.5;
  Rng rng(123);
  HardConcreteGate<double>::Workspace ws;
  const int n = 40000;
  double open[3] = {0, 0, 0};
  for (int t = 0; t < n; ++t) {
    auto z = gate.forward(ws, Context::train(rng));
    for (int i = 0; i < 3; ++i) open[i] += z.data[i] > 0;
  }
  arena.zero_grad();
  const double total = gate.penalty(1.0);
  double expect_total = 0;
  for (int i = 0; i < 3; ++i) {
    const double p = sigmoid(la[i] - (2.0 / 3.0) * std::log(0.1 / 1.1));
    expect_total += p;
    CHECK(open[i] / n == Approx(p).margin(0.01));
  }
  CHECK(total == Approx(expect_total).epsilon(1e-12));
}

TEST_CASE("Hard-concrete gate: code and penalty gradients match finite differences") {
  for (bool training : {false, true}) {
    ParameterArenaT<double> arena(3);
    HardConcreteGate<double> gate(arena, "r", {.rows = 3, .cols = 4, .log_alpha_mean = 0.5, .log_alpha_std = 1.0});
    const double u[12] = {0.2, 0.4, 0.6, 0.8, 0.3, 0.5, 0.7, 0.35, 0.45, 0.55, 0.65, 0.25};
    Rng rng(1);
    Context ctx = training ? Context::train(rng) : Context{};
    std::vector<double> r = mtrank::testing::random_vector(12, rng);
    HardConcreteGate<double>::Workspace ws;
    auto loss = [&] {
      double l = dot_loss(gate.forward(ws, ctx, u), r);
      ParameterArenaT<double>* a = &arena;
      (void)a;
      return l + gate.penalty(0.3);
    };
    auto analytic = [&] {
      gate.forward(ws, ctx, u);
      TensorT<double> dz(Shape{3, 4});
      std::copy(r.begin(), r.end(), dz.begin());
      gate.backward(dz.matrix(), ws);
      gate.penalty(0.3);
    };
    auto rep = grad_check(arena, loss, analytic);
    INFO(rep.worst);
    CHECK(rep.checked == 12);
    CHECK(rep.max_error < 1e-6);
  }
}

namespace {
SnrOptions<nn::MlpOptions> trans_options(Index tasks = 2) {
  nn::MlpOptions lower{.layers = {6, 5}, .activation = nn::ActivationKind::tanh};
  nn::MlpOptions upper{.layers = {4}, .activation = nn::ActivationKind::tanh};
  return {.in = 5,
          .num_tasks = tasks,
          .stages = {{.num_subnets = 3, .subnet = lower}, {.num_subnets = 2, .subnet = upper, .in = 7}},
          .code = {.log_alpha_mean = 1.0, .log_alpha_std = 1.5}};
}
}  // namespace

TEST_CASE("SNR-Trans: parameter names and the routing definition") {
  ParameterArenaT<double> arena(2);
  SnrTransBackbone<MlpD> snr(arena, "", trans_options());
  CHECK(arena.at("routes.0.log_alpha").shape == Shape{2, 3});
  CHECK(arena.at("routes.0.transforms.1.2.weight").shape == Shape{7, 5});
  CHECK(arena.find("routes.0.transforms.1.2.bias") == nullptr);
  CHECK(arena.at("subnets.0.2.layers.1.weight").shape == Shape{5, 6});
  CHECK(arena.at("subnets.1.1.layers.0.weight").shape == Shape{4, 7});
  // Set codes so that inference gives z = [[1, 0, 0.5], [0.3, 1, 0]].
  const double z_target[6] = {1, 0, 0.5, 0.3, 1, 0};
  double* la = arena.at("routes.0.log_alpha").value;
  for (int i = 0; i < 6; ++i) {
    const double s = std::min(1.0, std::max(0.0, z_target[i])) == 1.0 ? 0.999 : (z_target[i] + 0.1) / 1.2;
    la[i] = z_target[i] == 0 ? -10.0 : std::log(s / (1 - s));
  }
  Rng rng(5);
  TensorT<double> x = random_tensor<double>(Shape{3, 5}, rng);
  SnrTransBackbone<MlpD>::Workspace ws;
  const auto& outs = snr.forward(x.matrix(), ws);
  auto z = ws.routes[0].code.z.matrix();
  CHECK(z(0, 1) == 0.0);
  CHECK(z(0, 2) == Approx(0.5));
  CHECK(z(1, 0) == Approx(0.3));
  // Upper sub-network 1's input: sum_i z_1i W_1i u_i.
  std::vector<MatrixView<const double>> u = ws.u[0];
  TensorT<double> v(Shape{3, 7}, 0.0);
  for (Index i = 0; i < 3; ++i) {
    const auto* W = arena.at("routes.0.transforms.1." + std::to_string(i) + ".weight").value;
    for (Index b = 0; b < 3; ++b)
      for (Index o = 0; o < 7; ++o) {
        double acc = 0;
        for (Index c = 0; c < 5; ++c) acc += W[o * 5 + c] * u[i](b, c);
        v.matrix()(b, o) += z(1, i) * acc;
      }
  }
  for (Index b = 0; b < 3; ++b)
    for (Index o = 0; o < 7; ++o) CHECK(ws.routes[0].v[1].matrix()(b, o) == Approx(v.matrix()(b, o)).epsilon(1e-12));
  CHECK(outs.size() == 2);
  CHECK(outs[1].data == ws.u[1][1].data);
}

TEST_CASE("SNR-Trans and SNR-Aver gradients match finite differences") {
  for (int mode = 0; mode < 3; ++mode) {  // inference, training with rng, training with fixed noise
    INFO("mode " << mode);
    const bool training = mode > 0;
    auto ctx_of = [&](Rng& r) {
      return [&r, training] {
        r.reseed(99);  // the same noise on every forward
        return Context{training, &r};
      };
    };
    Rng rng(0);
    {
      ParameterArenaT<double> arena(4);
      auto opt = trans_options(3);
      opt.task_subnet = {1, 0, 1};
      opt.stages.push_back({.num_subnets = 2, .subnet = {.layers = {3}, .activation = nn::ActivationKind::sigmoid}});
      SnrTransBackbone<MlpD> snr(arena, "snr", opt);
      SnrTransBackbone<MlpD>::Workspace ws;
      if (mode == 2) {
        ws.fixed_noise.emplace_back(Shape{2, 3});
        ws.fixed_noise.emplace_back(Shape{2, 2});
        Rng nr(3);
        for (auto& t : ws.fixed_noise)
          for (auto& v : t) v = nr.uniform(0.05, 0.95);
      }
      auto rep = check_backbone(arena, snr, 4, ctx_of(rng), ws, 0.1);
      INFO(rep.worst);
      CHECK(rep.checked > 200);
      CHECK(rep.max_error < 1e-6);
    }
    {
      ParameterArenaT<double> arena(6);
      SnrAverBackbone<MlpD> snr(
          arena, "snr",
          {.in = 4,
           .num_tasks = 2,
           .stages = {{.num_subnets = 3, .subnet = {.layers = {5}, .activation = nn::ActivationKind::tanh}},
                      {.num_subnets = 2, .subnet = {.layers = {3}, .activation = nn::ActivationKind::tanh}}},
           .code = {.log_alpha_mean = 0.5, .log_alpha_std = 1.0}});
      SnrAverBackbone<MlpD>::Workspace ws;
      if (mode == 2) {
        ws.fixed_noise.emplace_back(Shape{2, 3});
        Rng nr(4);
        for (auto& v : ws.fixed_noise[0]) v = nr.uniform(0.05, 0.95);
      }
      auto rep = check_backbone(arena, snr, 4, ctx_of(rng), ws, 0.2);
      INFO(rep.worst);
      CHECK(rep.checked > 100);
      CHECK(rep.max_error < 1e-6);
    }
  }
}

TEST_CASE("SNR: training samples fresh codes, inference is deterministic") {
  ParameterArena arena(1);
  SnrTransBackbone<nn::Mlp<float>> snr(arena, "", {.in = 3, .num_tasks = 2,
                                                   .stages = {{.num_subnets = 2, .subnet = {.layers = {4}}},
                                                              {.num_subnets = 2, .subnet = {.layers = {2}}}}});
  Tensor x(Shape{2, 3}, 0.3f);
  SnrTransBackbone<nn::Mlp<float>>::Workspace ws;
  snr.forward(x.matrix(), ws);
  Tensor z0(Shape{2, 2});
  copy(MatrixView<const float>(ws.routes[0].code.z.matrix()), z0.matrix());
  snr.forward(x.matrix(), ws);
  for (Index i = 0; i < 4; ++i) CHECK(ws.routes[0].code.z[i] == z0[i]);
  Rng rng(7);
  int differ = 0;
  for (int t = 0; t < 5; ++t) {
    snr.forward(x.matrix(), ws, Context::train(rng));
    for (Index i = 0; i < 4; ++i) differ += ws.routes[0].code.z[i] != z0[i];
  }
  CHECK(differ > 10);
  CHECK_THROWS_WITH(snr.forward(x.matrix(), ws, Context{true, nullptr}), Catch::Contains("Context::rng"));
}

TEST_CASE("SNR: bad configs name the field or connection") {
  ParameterArena arena;
  using Aver = SnrAverBackbone<nn::Mlp<float>>;
  using Trans = SnrTransBackbone<nn::Mlp<float>>;
  CHECK_THROWS_WITH(Aver(arena, "a", {.in = 4, .num_tasks = 2,
                                      .stages = {{.num_subnets = 2, .subnet = {.layers = {5}}},
                                                 {.num_subnets = 2, .subnet = {.layers = {3}}, .in = 6}}}),
                    Catch::Contains("connection 0->0") && Catch::Contains("lower width 5 != upper input width 6"));
  // Heterogeneous lower widths are fine for Trans but not for Aver.
  CHECK_NOTHROW(Trans(arena, "b", {.in = 4, .num_tasks = 2,
                                   .stages = {{.num_subnets = 2, .subnet = {.layers = {5}}},
                                              {.num_subnets = 2, .subnet = {.layers = {3}}, .in = 6}}}));
  CHECK_THROWS_WITH(Trans(arena, "c", {.in = 4, .num_tasks = 3,
                                       .stages = {{.num_subnets = 2, .subnet = {.layers = {5}}},
                                                  {.num_subnets = 2, .subnet = {.layers = {3}}}}}),
                    Catch::Contains("num_tasks 3 != last stage's num_subnets 2"));
  CHECK_THROWS_WITH(Trans(arena, "d", {.in = 4, .num_tasks = 2,
                                       .stages = {{.num_subnets = 2, .subnet = {.layers = {5}}},
                                                  {.num_subnets = 2, .subnet = {.layers = {3}}}},
                                       .task_subnet = {0, 2}}),
                    Catch::Contains("task_subnet[1] = 2 out of range"));
  CHECK_THROWS_WITH(Trans(arena, "e", {.in = 4, .num_tasks = 2, .stages = {{.num_subnets = 2, .subnet = {.layers = {5}}}}}),
                    Catch::Contains("stages needs at least 2"));
  CHECK_THROWS_WITH(Trans(arena, "f", {.in = 4, .num_tasks = 2,
                                       .stages = {{.num_subnets = 0, .subnet = {.layers = {5}}},
                                                  {.num_subnets = 2, .subnet = {.layers = {3}}}}}),
                    Catch::Contains("stages[0].num_subnets"));
}
