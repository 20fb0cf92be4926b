#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "mtrank/train/grad_check.hpp"
#include "mtrank/train/loss.hpp"
#include "mtrank/train/uwl.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::train;

TEST_CASE("Element losses: hand values and stability") {
  double d = 0;
  // BCE at x = 0: log 2, gradient 0.5 - y.
  CHECK(element_loss<double>(LossKind::bce_with_logits, 1, 0.0, 1.0, &d) == Approx(std::log(2.0)));
  CHECK(d == Approx(-0.5));
  // Against the naive formula at moderate logits.
  for (double x : {-3.0, -0.4, 0.7, 2.5})
    for (double y : {0.0, 0.3, 1.0}) {
      const double p = 1 / (1 + std::exp(-x));
      CHECK(element_loss<double>(LossKind::bce_with_logits, 1, x, y, &d) ==
            Approx(-(y * std::log(p) + (1 - y) * std::log(1 - p))).epsilon(1e-12));
      CHECK(d == Approx(p - y).epsilon(1e-12));
    }
  // Large logits: finite, and the right asymptotes (the naive formula gives inf / nan).
  CHECK(element_loss<float>(LossKind::bce_with_logits, 1, 100.0f, 0.0f, &d) == Approx(100.0));
  CHECK(d == Approx(1.0));
  CHECK(element_loss<float>(LossKind::bce_with_logits, 1, -100.0f, 1.0f, &d) == Approx(100.0));
  CHECK(d == Approx(-1.0));
  CHECK(element_loss<float>(LossKind::bce_with_logits, 1, 100.0f, 1.0f, &d) == Approx(0.0).margin(1e-40));
  // MSE and Huber (delta 1.5) on both sides of the kink.
  CHECK(element_loss<double>(LossKind::mse, 1, 3.0, 1.0, &d) == 4.0);
  CHECK(d == 4.0);
  CHECK(element_loss<double>(LossKind::huber, 1.5, 2.0, 1.0, &d) == 0.5);
  CHECK(d == 1.0);
  CHECK(element_loss<double>(LossKind::huber, 1.5, -3.0, 1.0, &d) == Approx(1.5 * (4 - 0.75)));
  CHECK(d == -1.5);
}

TEST_CASE("MultiTaskLoss: masked, weighted means by hand") {
  MultiTaskLoss<double> loss({{.name = "ctr", .kind = LossKind::bce_with_logits, .weight = 2.0},
                              {.name = "dwell", .kind = LossKind::mse, .weight = 0.5}});
  // 3 rows; ctr present on rows 0, 2; dwell on rows 1, 2. Sample weights 1, 2, 3.
  TensorT<double> x(Shape{3, 2}), y(Shape{3, 2}), m(Shape{3, 2}), g(Shape{3, 2});
  double xs[] = {0.0, 99.0, 1e30, 2.0, std::log(3.0), 5.0};
  double ys[] = {1.0, 0.0, -7.0, 1.0, 0.0, 3.0};
  double ms[] = {1, 0, 0, 1, 1, 1};
  std::copy(xs, xs + 6, x.begin());
  std::copy(ys, ys + 6, y.begin());
  std::copy(ms, ms + 6, m.begin());
  std::vector<double> w = {1, 2, 3};
  auto r = loss.compute(x.matrix(), y.matrix(), m.matrix(), w, g.matrix());
  // ctr: rows 0 (w 1, loss log 2), 2 (w 3, x = log 3, y = 0: loss log(1 + 3) = log 4)
  const double l_ctr = (1 * std::log(2.0) + 3 * std::log(4.0)) / 4;
  // dwell: rows 1 (w 2, (2 - 1)^2 = 1), 2 (w 3, (5 - 3)^2 = 4)
  const double l_dwell = (2 * 1.0 + 3 * 4.0) / 5;
  CHECK(r.task_loss[0] == Approx(l_ctr));
  CHECK(r.task_loss[1] == Approx(l_dwell));
  CHECK(r.task_count == std::vector<Index>{2, 2});
  CHECK(r.task_weight_sum == std::vector<double>{4, 5});
  CHECK(r.total == Approx(2 * l_ctr + 0.5 * l_dwell));
  // Gradients: λ w ℓ' / W; masked entries exactly 0 (even with absurd outputs/labels there).
  CHECK(g[0] == Approx(2.0 * 1 * (0.5 - 1) / 4));
  CHECK(g[1] == 0.0);
  CHECK(g[2] == 0.0);
  CHECK(g[3] == Approx(0.5 * 2 * 2 * (2 - 1) / 5));
  CHECK(g[4] == Approx(2.0 * 3 * 0.75 / 4));
  CHECK(g[5] == Approx(0.5 * 3 * 2 * (5 - 3) / 5));
  CHECK(r.weighted(0, loss.tasks()) == Approx(2 * l_ctr));

  // A task with no present row: loss 0, count 0, zero gradient column.
  double all_absent[] = {0, 1, 0, 1, 0, 1};
  std::copy(all_absent, all_absent + 6, m.begin());
  r = loss.compute(x.matrix(), y.matrix(), m.matrix(), w, g.matrix());
  CHECK(r.task_count[0] == 0);
  CHECK(r.task_loss[0] == 0.0);
  CHECK(g[0] == 0.0);
  CHECK(g[4] == 0.0);
}

TEST_CASE("MultiTaskLoss: no mask, no weights, no gradient") {
  MultiTaskLoss<float> loss({{.name = "a", .kind = LossKind::huber, .huber_delta = 0.5}});
  Tensor x(Shape{2, 1}), y(Shape{2, 1});
  x[0] = 1.0f, x[1] = 0.2f, y[0] = 0.0f, y[1] = 0.0f;
  auto r = loss.compute(x.matrix(), y.matrix(), {}, {});
  CHECK(r.task_loss[0] == Approx((0.5 * 0.75 + 0.5 * 0.04) / 2));
  CHECK(r.total == Approx(r.task_loss[0]));
}

TEST_CASE("MultiTaskLoss gradients match finite differences") {
  MultiTaskLoss<double> loss({{.name = "click", .kind = LossKind::bce_with_logits, .weight = 1.0},
                              {.name = "like", .kind = LossKind::bce_with_logits, .weight = 0.7},
                              {.name = "dwell", .kind = LossKind::mse, .weight = 0.3},
                              {.name = "watch", .kind = LossKind::huber, .weight = 1.2, .huber_delta = 0.8}});
  const Index B = 9, K = 4;
  Rng rng(17);
  TensorT<double> x = testing::random_tensor<double>(Shape{B, K}, rng, 2.0);
  TensorT<double> y(Shape{B, K}), m(Shape{B, K}), g(Shape{B, K});
  std::vector<double> w(B);
  for (Index b = 0; b < B; ++b) {
    w[b] = rng.uniform(0.2, 2.0);
    for (Index k = 0; k < K; ++k) {
      y[b * K + k] = k < 2 ? double(rng.bernoulli(0.4)) : rng.normal(0, 2);
      if (k == 1) y[b * K + k] = rng.uniform();  // soft labels
      m[b * K + k] = rng.bernoulli(0.75) ? 1.0 : 0.0;
    }
  }
  // Keep Huber residuals away from the kink |d| = delta, where the derivative jumps.
  for (Index b = 0; b < B; ++b) {
    const double dd = x[b * K + 3] - y[b * K + 3];
    if (std::abs(std::abs(dd) - 0.8) < 0.05) x[b * K + 3] += 0.2;
  }
  ParameterArenaT<double> arena;
  auto f = [&] { return loss.compute(x.matrix(), y.matrix(), m.matrix(), w, {}).total; };
  auto analytic = [&] { loss.compute(x.matrix(), y.matrix(), m.matrix(), w, g.matrix()); };
  analytic();
  auto rep = grad_check(arena, f, analytic, {{"outputs", x.data(), g.data(), x.numel()}});
  INFO(rep.worst);
  CHECK(rep.checked == B * K);
  CHECK(rep.max_error < 1e-7);
}

TEST_CASE("MultiTaskLoss rejects bad input naming the task and row") {
  MultiTaskLoss<float> loss({{.name = "ctr"}, {.name = "dwell", .kind = LossKind::mse}});
  Tensor x(Shape{3, 2}, 0.0f), y(Shape{3, 2}, 0.0f), m(Shape{3, 2}, 1.0f), g(Shape{3, 2});
  auto run = [&] { return loss.compute(x.matrix(), y.matrix(), m.matrix(), g.matrix()); };
  x[3] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(run(), Catch::Contains("task 'dwell' row 1: output is nan"));
  x[3] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(run(), Catch::Contains("task 'dwell' row 1: output is inf"));
  x[3] = 0;
  y[4] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(run(), Catch::Contains("task 'ctr' row 2: label is nan"));
  m[4] = 0;  // a NaN label on an absent entry is fine (a common "missing" encoding)
  CHECK_NOTHROW(run());
  y[4] = 0;
  y[0] = 2.0f;
  CHECK_THROWS_WITH(run(), Catch::Contains("task 'ctr' row 0: label 2 outside [0, 1]"));
  y[0] = 0;
  m[1] = 0.5f;
  CHECK_THROWS_WITH(run(), Catch::Contains("task 'dwell' row 0: mask is 0.5"));
  m[1] = 1;
  Tensor bad(Shape{3, 3});
  CHECK_THROWS_WITH(loss.compute(x.matrix(), bad.matrix(), m.matrix(), g.matrix()), Catch::Contains("loss: labels"));
  std::vector<float> w = {1, -1, 1};
  CHECK_THROWS_WITH(loss.compute(x.matrix(), y.matrix(), m.matrix(), w, g.matrix()), Catch::Contains("sample_weight of row 1"));
  std::vector<float> w2 = {1, 1};
  CHECK_THROWS_WITH(loss.compute(x.matrix(), y.matrix(), m.matrix(), w2, g.matrix()), Catch::Contains("sample_weight has 2"));
  CHECK_THROWS_WITH(MultiTaskLoss<float>({{.name = "h", .kind = LossKind::huber, .huber_delta = 0}}),
                    Catch::Contains("'h'): huber_delta"));
  CHECK_THROWS_WITH(MultiTaskLoss<float>({{.name = "a", .weight = -1}}), Catch::Contains("'a'): weight"));
}

TEST_CASE("Task loss specs from JSON") {
  auto specs = parse_task_loss_specs(nlohmann::json::parse(
      R"([{"name": "ctr"}, {"name": "dwell", "loss": "huber", "weight": 0.5, "huber_delta": 2}])"));
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].kind == LossKind::bce_with_logits);
  CHECK(specs[1].kind == LossKind::huber);
  CHECK(specs[1].weight == 0.5);
  CHECK(specs[1].huber_delta == 2.0);
  CHECK(task_kind(specs[1].kind) == TaskKind::regression);
  CHECK_THROWS_WITH(parse_task_loss_specs(nlohmann::json::parse(R"([{"loss": "hinge"}])")),
                    Catch::Contains("tasks[0].loss: unknown loss 'hinge'"));
  CHECK_THROWS_WITH(parse_task_loss_specs(nlohmann::json::parse(R"([{"wieght": 1}])")),
                    Catch::Contains("tasks[0].wieght: unknown field"));
  CHECK_THROWS_WITH(parse_task_loss_specs(nlohmann::json::parse(R"([{"weight": "x"}])")),
                    Catch::Contains("tasks[0].weight: expected a number"));
}

TEST_CASE("BPR loss: value, accumulated gradient, finite differences") {
  std::vector<double> s = {2.0, 0.5, -1.0};
  std::vector<std::pair<Index, Index>> pairs = {{0, 1}, {0, 2}, {1, 2}};
  std::vector<double> g(3, 0.0);
  const double l = bpr_loss<double>(s, pairs, g);
  auto nls = [](double d) { return std::log1p(std::exp(-d)); };
  CHECK(l == Approx((nls(1.5) + nls(3.0) + nls(1.5)) / 3));
  auto sig = [](double d) { return 1 / (1 + std::exp(-d)); };
  CHECK(g[0] == Approx(-(sig(-1.5) + sig(-3.0)) / 3));
  CHECK(g[2] == Approx((sig(-3.0) + sig(-1.5)) / 3));
  // Large margins stay finite.
  std::vector<float> big = {1000.0f, -1000.0f};
  std::vector<std::pair<Index, Index>> one = {{1, 0}};
  CHECK(bpr_loss<float>(big, one, {}) == Approx(2000.0));

  Rng rng(3);
  std::vector<double> x = testing::random_vector(6, rng), w = {0.5, 1.0, 2.0, 0.1, 1.5};
  std::vector<std::pair<Index, Index>> pp = {{0, 3}, {1, 3}, {2, 4}, {5, 0}, {2, 3}};
  std::vector<double> dx(6);
  ParameterArenaT<double> arena;
  auto f = [&] { return 0.7 * bpr_loss<double>(x, pp, {}, w); };
  auto analytic = [&] {
    std::fill(dx.begin(), dx.end(), 0.0);
    bpr_loss<double>(x, pp, dx, w, 0.7);
  };
  auto rep = grad_check(arena, f, analytic, {{"scores", x.data(), dx.data(), 6}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-8);
  CHECK_THROWS_WITH(bpr_loss<double>(x, std::vector<std::pair<Index, Index>>{{0, 6}}, {}), Catch::Contains("pair 0"));
  x[3] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(bpr_loss<double>(x, pp, {}), Catch::Contains("negative score[3]"));
}

TEST_CASE("UWL: hand values, absent tasks, gradients") {
  ParameterArenaT<double> arena;
  UncertaintyWeighting<double> uwl(arena, {.num_tasks = 3});
  REQUIRE(arena.find("uwl.log_var") != nullptr);
  auto& s = arena.at("uwl.log_var");
  s.value[0] = 0.0, s.value[1] = std::log(4.0), s.value[2] = -1.0;
  std::vector<double> L = {2.0, 8.0, 1.0}, scale(3);
  std::vector<Index> counts = {5, 3, 0};
  const double total = uwl.combine(L, scale, counts);
  CHECK(total == Approx(0.5 * 2.0 + 0.125 * 8.0 + 0.5 * std::log(4.0)));
  CHECK(scale[0] == 0.5);
  CHECK(scale[1] == Approx(0.125));
  CHECK(scale[2] == 0.0);
  CHECK(s.grad[0] == Approx(-0.5 * 2.0 + 0.5));
  CHECK(s.grad[1] == Approx(-0.125 * 8.0 + 0.5));
  CHECK(s.grad[2] == 0.0);
  // Minimum over s_k at s_k = log L_k: the gradient vanishes there.
  arena.zero_grad();
  s.value[0] = std::log(2.0);
  uwl.combine(L, scale, counts);
  CHECK(s.grad[0] == Approx(0.0).margin(1e-15));
  L[0] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(uwl.combine(L, scale), Catch::Contains("loss of task 0"));
  CHECK_THROWS_WITH(uwl.combine(std::vector<double>{1, 2}, scale), Catch::Contains("2 task losses, expected 3"));
}

TEST_CASE("UWL on top of MultiTaskLoss: end-to-end gradient check for outputs and log variances") {
  MultiTaskLoss<double> loss({{.name = "ctr", .weight = 1.0},
                              {.name = "cvr", .weight = 2.0},
                              {.name = "dwell", .kind = LossKind::mse, .weight = 0.5}});
  ParameterArenaT<double> arena;
  UncertaintyWeighting<double> uwl(arena, {.num_tasks = 3, .init_log_var = 0.3});
  auto& s = arena.at("uwl.log_var");
  s.value[1] = -0.6;
  const Index B = 6, K = 3;
  Rng rng(23);
  TensorT<double> x = testing::random_tensor<double>(Shape{B, K}, rng), y(Shape{B, K}), m(Shape{B, K}, 1.0),
                  g(Shape{B, K});
  for (Index b = 0; b < B; ++b) {
    y[b * K] = double(rng.bernoulli(0.5));
    y[b * K + 1] = double(rng.bernoulli(0.5));
    y[b * K + 2] = rng.normal();
    m[b * K + 1] = b % 2;
  }
  auto total = [&](bool with_grad) {
    auto r = loss.compute(x.matrix(), y.matrix(), m.matrix(), with_grad ? g.matrix() : MatrixView<double>{});
    std::vector<double> weighted(K), scale(K);
    for (Index k = 0; k < K; ++k) weighted[k] = r.weighted(k, loss.tasks());
    const double t = uwl.combine(weighted, scale, r.task_count);
    if (with_grad) scale_task_gradients(g.matrix(), scale);
    return t;
  };
  auto f = [&] {
    // combine() accumulates into s.grad; the checker snapshots analytic grads before calling f.
    return total(false);
  };
  auto analytic = [&] { total(true); };
  analytic();
  auto rep = grad_check(arena, f, analytic, {{"outputs", x.data(), g.data(), x.numel()}});
  INFO(rep.worst);
  CHECK(rep.checked == B * K + K);
  CHECK(rep.max_error < 1e-7);
}
