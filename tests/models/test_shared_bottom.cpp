#include "mtrank/models/multitask_net.hpp"
#include "mtrank/models/shared_bottom.hpp"
#include "mtrank/train/grad_check.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::models;

TEST_CASE("SharedBottom multi-task net: shapes, names and gradients") {
  ParameterArenaT<double> arena(3);
  using Net = MultiTaskNet<double, SharedBottom<double>>;
  SharedBottom<double> sb(arena, "", {.in = 5, .num_tasks = 3, .bottom = {.layers = {8, 6}, .activation = nn::ActivationKind::relu}});
  Net net(arena, "", std::move(sb), {.hidden = {4}});
  CHECK(arena.find("bottom.layers.0.weight") != nullptr);
  CHECK(arena.find("towers.2.layers.1.weight")->shape == Shape{1, 4});
  Rng rng(1);
  const Index B = 6;
  TensorT<double> x = testing::random_tensor<double>(Shape{B, 5}, rng);
  auto r = testing::random_vector(B * 3, rng);
  Net::Workspace ws;
  auto out = net.forward(x.matrix(), ws);
  REQUIRE(out.rows == B);
  REQUIRE(out.cols == 3);
  TensorT<double> dx;
  auto loss = [&] { return dot_loss(net.forward(x.matrix(), ws), r); };
  auto analytic = [&] {
    net.forward(x.matrix(), ws);
    TensorT<double> d(Shape{B, 3});
    std::copy(r.begin(), r.end(), d.begin());
    auto g = net.backward(d.matrix(), ws);
    dx.resize(Shape{B, 5});
    copy(g, dx.matrix());
  };
  analytic();
  auto rep = grad_check(arena, loss, analytic, {{"x", x.data(), dx.data(), x.numel()}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-6);
}
