#include "mtrank/nn/mlp.hpp"
#include "mtrank/train/grad_check.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::nn;
using mtrank::testing::random_tensor;
using mtrank::testing::random_vector;

TEST_CASE("Linear forward matches the definition y = x W^T + b") {
  ParameterArena arena(1);
  Linear<float> lin(arena, "fc", {.in = 3, .out = 2});
  Rng rng(3);
  Tensor x = random_tensor<float>(Shape{4, 3}, rng);
  Linear<float>::Workspace ws;
  auto y = lin.forward(x.matrix(), ws);
  for (Index b = 0; b < 4; ++b)
    for (Index o = 0; o < 2; ++o) {
      double acc = lin.bias()[o];
      for (Index i = 0; i < 3; ++i) acc += double(x[b * 3 + i]) * lin.weight()(o, i);
      CHECK(y(b, o) == Approx(acc).epsilon(1e-5));
    }
  CHECK(arena.find("fc.weight")->shape == Shape{2, 3});
  CHECK(arena.find("fc.bias")->shape == Shape{2});
  Tensor bad(Shape{4, 5});
  CHECK_THROWS_WITH(lin.forward(bad.matrix(), ws), Catch::Contains("expected 3"));
}

namespace {
// Runs grad_check on an Mlp<double> with the given options; checks parameters and the input.
GradCheckReport check_mlp(MlpOptions opt, bool training, Index batch = 5) {
  ParameterArenaT<double> arena(11);
  Mlp<double> mlp(arena, "mlp", opt);
  Rng rng(5);
  TensorT<double> x = random_tensor<double>(Shape{batch, opt.in}, rng);
  auto r = random_vector(static_cast<std::size_t>(batch * mlp.out_features()), rng);
  typename Mlp<double>::Workspace ws;
  // Dice/BN running stats change on each training forward; they do not affect training-mode
  // outputs, so finite differences remain exact.
  Context ctx{training, nullptr};
  auto loss = [&] { return dot_loss(mlp.forward(x.matrix(), ws, ctx), r); };
  TensorT<double> dx;
  auto analytic = [&] {
    mlp.forward(x.matrix(), ws, ctx);
    TensorT<double> dy(Shape{batch, mlp.out_features()});
    std::copy(r.begin(), r.end(), dy.begin());
    auto g = mlp.backward(dy.matrix(), ws);
    dx.resize(Shape{g.rows, g.cols});
    copy(g, dx.matrix());
  };
  analytic();
  return grad_check(arena, loss, analytic, {{"x", x.data(), dx.data(), x.numel()}});
}
}  // namespace

TEST_CASE("Mlp gradients match finite differences for every activation") {
  for (auto act : {ActivationKind::identity, ActivationKind::relu, ActivationKind::prelu, ActivationKind::sigmoid,
                   ActivationKind::tanh, ActivationKind::gelu, ActivationKind::dice}) {
    for (bool training : {false, true}) {
      INFO("activation " << activation_name(act) << " training " << training);
      auto rep = check_mlp({.in = 4, .layers = {6, 3}, .activation = act, .activate_last = true}, training);
      INFO(rep.worst);
      CHECK(rep.checked > 50);
      CHECK(rep.max_error < 1e-6);
    }
  }
}

TEST_CASE("Mlp with batch norm: gradients through batch statistics") {
  for (bool training : {false, true}) {
    auto rep = check_mlp({.in = 3, .layers = {5, 2}, .activation = ActivationKind::tanh, .activate_last = false,
                          .batch_norm = true},
                         training, 7);
    INFO(rep.worst);
    CHECK(rep.max_error < 1e-6);
  }
}

TEST_CASE("Gradient check detects a wrong gradient") {
  // The checker itself must be able to fail: corrupt one analytic gradient element.
  ParameterArenaT<double> arena(2);
  Linear<double> lin(arena, "fc", {.in = 3, .out = 2});
  Rng rng(9);
  TensorT<double> x = random_tensor<double>(Shape{4, 3}, rng);
  auto r = random_vector(8, rng);
  Linear<double>::Workspace ws;
  auto loss = [&] { return dot_loss(lin.forward(x.matrix(), ws), r); };
  auto analytic = [&] {
    lin.forward(x.matrix(), ws);
    TensorT<double> dy(Shape{4, 2});
    std::copy(r.begin(), r.end(), dy.begin());
    lin.backward(dy.matrix(), ws, false);
    arena.at("fc.weight").grad[1] += 0.5;
  };
  auto rep = grad_check(arena, loss, analytic);
  CHECK(rep.max_error > 0.1);
}

TEST_CASE("Dropout: identity at inference, scaled mask in training") {
  Dropout<float> d({.p = 0.5});
  Rng rng(1);
  Tensor x(Shape{64, 16}, 1.0f);
  Dropout<float>::Workspace ws;
  auto y0 = d.forward(x.matrix(), ws);
  CHECK(y0.data == x.data());
  Context ctx{true, &rng};
  auto y = d.forward(x.matrix(), ws, ctx);
  int zeros = 0;
  for (Index i = 0; i < y.rows; ++i)
    for (Index j = 0; j < y.cols; ++j) {
      CHECK((y(i, j) == 0.0f || y(i, j) == 2.0f));
      zeros += y(i, j) == 0.0f;
    }
  CHECK(zeros > 400);
  CHECK(zeros < 624);
  CHECK_THROWS(Dropout<float>({.p = 1.0}));
}

TEST_CASE("Batch norm running statistics follow PyTorch's update rule") {
  ParameterArena arena;
  BatchNorm<float> bn(arena, "bn", {.width = 1});
  Tensor x(Shape{4, 1});
  for (int i = 0; i < 4; ++i) x[i] = float(i);  // mean 1.5, unbiased var 5/3
  BatchNorm<float>::Workspace ws;
  Rng rng;
  bn.forward(x.matrix(), ws, Context{true, &rng});
  CHECK(arena.at("bn.running_mean").value[0] == Approx(0.15));
  CHECK(arena.at("bn.running_var").value[0] == Approx(0.9 + 0.1 * 5.0 / 3.0));
}

TEMPLATE_TEST_CASE("Linear::limit_input_grad computes dx for the leading columns only", "", float, double) {
  for (const Index cols : {Index(0), Index(1), Index(13), Index(37)}) {
    CAPTURE(cols);
    ParameterArenaT<TestType> full_arena(5), part_arena(5);
    Linear<TestType> full(full_arena, "fc", {.in = 37, .out = 19});
    Linear<TestType> part(part_arena, "fc", {.in = 37, .out = 19});
    part.limit_input_grad(cols);
    CHECK(part.input_grad_columns() == cols);
    Rng rng(8);
    const auto x = random_tensor<TestType>(Shape{11, 37}, rng);
    const auto dy = random_tensor<TestType>(Shape{11, 19}, rng);
    typename Linear<TestType>::Workspace wf, wp;
    full.forward(x.matrix(), wf);
    part.forward(x.matrix(), wp);
    const auto dx_full = full.backward(dy.matrix(), wf);
    const auto dx_part = part.backward(dy.matrix(), wp);
    for (Index r = 0; r < 11; ++r)
      for (Index c = 0; c < 37; ++c) {
        CAPTURE(r, c);
        // The GEMM may pick another kernel for the narrower dx: equal up to rounding.
        if (c < cols) CHECK(double(dx_part(r, c)) == Approx(double(dx_full(r, c))).epsilon(1e-5).margin(1e-6));
        else CHECK(dx_part(r, c) == TestType(0));
      }
    // Parameter gradients do not depend on the limit.
    for (const char* name : {"fc.weight", "fc.bias"}) {
      const auto& a = full_arena.at(name);
      const auto& b = part_arena.at(name);
      for (Index i = 0; i < a.numel(); ++i) CHECK(a.grad[i] == b.grad[i]);
    }
  }
  ParameterArenaT<TestType> arena(1);
  Linear<TestType> lin(arena, "fc", {.in = 4, .out = 2});
  CHECK_THROWS_WITH(lin.limit_input_grad(5), Catch::Contains("outside [0, 4]"));
  CHECK_THROWS_WITH(lin.limit_input_grad(-1), Catch::Contains("outside [0, 4]"));
}
