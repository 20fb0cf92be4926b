// Co-action micro-MLP kernels.
//  1. The double reference against blocks::CoActionUnit<double> (an independent implementation
//     of the same reshape order, gradient-checked in tests/blocks), forward and backward.
//  2. Every ISA variant (float) against the double reference over widths, orders, activations,
//     layouts, odd d and L (lane tails), empty sequences and lengths = nullptr; outputs and
//     scratch are canary-guarded. Tolerance: max |got - want| <= 3e-5 * max |want| + 1e-6 per array.
#include <cmath>
#include <vector>

#include "kernel_test_util.hpp"
#include "mtrank/blocks/co_action.hpp"
#include "mtrank/kernels/co_action.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {
struct Case {
  Index B, L, d;
  std::vector<Index> layers;
  bool bias;
  Index orders;
  bool oi;
  CoActionActivation act;
  bool activate_last, concat, sum_orders, use_lengths;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {4, 1, 1, {4}, true, 1, false, CoActionActivation::tanh, false, true, false, false},
      {5, 5, 7, {4, 4}, true, 1, false, CoActionActivation::tanh, false, true, false, true},
      {6, 17, 16, {8, 4}, true, 2, false, CoActionActivation::tanh, false, true, false, true},
      {5, 50, 16, {4, 4}, true, 3, true, CoActionActivation::tanh, true, false, false, true},
      {3, 16, 17, {5, 2, 3}, false, 2, true, CoActionActivation::sigmoid, false, true, true, true},
      {4, 9, 3, {3, 6}, true, 2, false, CoActionActivation::relu, true, false, true, false},
      {3, 33, 8, {4}, true, 1, false, CoActionActivation::identity, false, true, false, true},
  };
  return c;
}

blocks::MicroActivation micro(CoActionActivation a) {
  switch (a) {
    case CoActionActivation::tanh: return blocks::MicroActivation::tanh;
    case CoActionActivation::relu: return blocks::MicroActivation::relu;
    case CoActionActivation::sigmoid: return blocks::MicroActivation::sigmoid;
    default: return blocks::MicroActivation::identity;
  }
}

double ratio(const std::vector<float>& got, const std::vector<double>& want, std::size_t n) {
  double mx = 0, err = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mx = std::max(mx, std::abs(want[i]));
    err = std::max(err, std::abs(double(got[i]) - want[i]));
  }
  return err / (3e-5 * mx + 1e-6);
}
}  // namespace

TEST_CASE("co-action kernels: reference equals CoActionUnit, every ISA equals the reference") {
  Rng rng(303);
  for (const Case& c : cases()) {
    INFO("B=" << c.B << " L=" << c.L << " d=" << c.d << " layers=" << c.layers.size() << " orders=" << c.orders
              << " oi=" << c.oi << " act=" << int(c.act));
    CoActionArgs a{c.B, c.L, c.d, static_cast<Index>(c.layers.size()), c.layers.data(), c.bias, c.orders, c.oi,
                   c.act, c.activate_last, c.concat, c.sum_orders};
    const CoActionLayout lay = co_action_layout(a);
    blocks::CoActionUnit<double> unit({.in = c.d, .layers = c.layers, .bias = c.bias, .orders = c.orders,
                                       .order_independent = c.oi, .activation = micro(c.act),
                                       .activate_last = c.activate_last, .concat_layers = c.concat,
                                       .sum_orders = c.sum_orders});
    REQUIRE(unit.param_width() == lay.param_width);
    REQUIRE(unit.out_features() == lay.out_features);
    std::vector<double> p(static_cast<std::size_t>(c.B * lay.param_width)), x(static_cast<std::size_t>(c.B * c.L * c.d)),
        dy(static_cast<std::size_t>(c.B * lay.out_features));
    for (auto& v : p) v = 0.5 * rng.normal();
    for (auto& v : x) v = 0.7 * rng.normal();
    for (auto& v : dy) v = rng.normal();
    std::vector<Index> len;
    for (Index b = 0; b < c.B; ++b) len.push_back(b == 1 ? 0 : b == 0 ? c.L : static_cast<Index>(rng.uniform() * double(c.L + 1)) % (c.L + 1));
    const Index* lp = c.use_lengths ? len.data() : nullptr;
    // 1. Reference vs the block.
    std::vector<double> y(dy.size()), dp(p.size()), dx(x.size()),
        scratch(static_cast<std::size_t>(co_action_scratch_size(a)));
    co_action_forward_ref<double>(a, p.data(), x.data(), lp, y.data(), scratch.data());
    co_action_backward_ref<double>(a, p.data(), x.data(), lp, dy.data(), dp.data(), dx.data(), scratch.data());
    typename blocks::CoActionUnit<double>::Workspace ws;
    const auto yb = unit.forward(MatrixView<const double>(p.data(), c.B, lay.param_width),
                                 MatrixView<const double>(x.data(), c.B * c.L, c.d), c.L,
                                 c.use_lengths ? std::span<const Index>(len) : std::span<const Index>(), ws);
    unit.backward(MatrixView<const double>(dy.data(), c.B, lay.out_features), ws);
    bool same = true;
    for (Index b = 0; b < c.B; ++b)
      for (Index j = 0; j < lay.out_features; ++j) same = same && std::abs(yb(b, j) - y[b * lay.out_features + j]) <= 1e-12;
    for (std::size_t i = 0; i < dp.size(); ++i) same = same && std::abs(ws.dp.data()[i] - dp[i]) <= 1e-12;
    for (std::size_t i = 0; i < dx.size(); ++i) same = same && std::abs(ws.dx.data()[i] - dx[i]) <= 1e-12;
    CHECK(same);
    // 2. Every ISA vs the reference (float inputs, double evaluation).
    std::vector<float> pf(p.begin(), p.end()), xf(x.begin(), x.end()), dyf(dy.begin(), dy.end());
    std::vector<double> pd(pf.begin(), pf.end()), xd(xf.begin(), xf.end()), dyd(dyf.begin(), dyf.end());
    co_action_forward_ref<double>(a, pd.data(), xd.data(), lp, y.data(), scratch.data());
    co_action_backward_ref<double>(a, pd.data(), xd.data(), lp, dyd.data(), dp.data(), dx.data(), scratch.data());
    for (Isa isa : runnable_isas()) {
      INFO(isa_name(isa));
      const CoActionKernels& k = co_action_kernels(isa);
      REQUIRE(k.isa == isa);
      const Index ns = co_action_scratch_size(a);
      std::vector<float> yf(y.size() + 8, -7.f), dpf(dp.size() + 8, -7.f), dxf(dx.size() + 8, -7.f),
          sf(static_cast<std::size_t>(ns + 16), -3.f);
      k.f32_co_action_forward(a, pf.data(), xf.data(), lp, yf.data(), sf.data());
      k.f32_co_action_backward(a, pf.data(), xf.data(), lp, dyf.data(), dpf.data(), dxf.data(), sf.data());
      CHECK(ratio(yf, y, y.size()) <= 1);
      CHECK(ratio(dpf, dp, dp.size()) <= 1);
      CHECK(ratio(dxf, dx, dx.size()) <= 1);
      bool canary = true;
      for (std::size_t i = y.size(); i < yf.size(); ++i) canary = canary && yf[i] == -7.f;
      for (std::size_t i = dp.size(); i < dpf.size(); ++i) canary = canary && dpf[i] == -7.f;
      for (std::size_t i = dx.size(); i < dxf.size(); ++i) canary = canary && dxf[i] == -7.f;
      for (Index i = ns; i < ns + 16; ++i) canary = canary && sf[i] == -3.f;
      CHECK(canary);
      // dx = nullptr is allowed and leaves dp unchanged.
      std::vector<float> dp2(dp.size());
      k.f32_co_action_backward(a, pf.data(), xf.data(), lp, dyf.data(), dp2.data(), nullptr, sf.data());
      bool eq = true;
      for (std::size_t i = 0; i < dp2.size(); ++i) eq = eq && dp2[i] == dpf[i];
      CHECK(eq);
    }
  }
}

TEST_CASE("CoActionUnit<float> runs the co-action kernel and agrees with CoActionUnit<double>") {
  Rng rng(505);
  const blocks::CoActionOptions opt{.in = 5, .layers = {4, 3}, .orders = 2};
  blocks::CoActionUnit<float> uf(opt);
  blocks::CoActionUnit<double> ud(opt);
  const Index B = 3, L = 7, P = uf.param_width(), O = uf.out_features();
  // p and dy are column blocks of wider matrices (strided views).
  TensorT<float> p(Shape{B, P + 2}), x(Shape{B * L, 5}), dy(Shape{B, O + 3});
  for (Index i = 0; i < p.numel(); ++i) p.data()[i] = float(0.5 * rng.normal());
  for (Index i = 0; i < x.numel(); ++i) x.data()[i] = float(0.7 * rng.normal());
  for (Index i = 0; i < dy.numel(); ++i) dy.data()[i] = float(rng.normal());
  TensorT<double> pd(Shape{B, P}), xd(Shape{B * L, 5}), dyd(Shape{B, O});
  for (Index b = 0; b < B; ++b) {
    for (Index j = 0; j < P; ++j) pd.data()[b * P + j] = p.data()[b * (P + 2) + 1 + j];
    for (Index j = 0; j < O; ++j) dyd.data()[b * O + j] = dy.data()[b * (O + 3) + 2 + j];
  }
  for (Index i = 0; i < x.numel(); ++i) xd.data()[i] = x.data()[i];
  const std::vector<Index> len{7, 0, 4};
  blocks::CoActionUnit<float>::Workspace wf;
  blocks::CoActionUnit<double>::Workspace wd;
  auto yf = uf.forward(p.matrix().col_block(1, P), x.matrix(), L, len, wf);
  auto yd = ud.forward(pd.matrix(), xd.matrix(), L, len, wd);
  uf.backward(dy.matrix().col_block(2, O), wf);
  ud.backward(dyd.matrix(), wd);
  auto close = [](const float* got, const double* want, Index n) {
    double mx = 0, err = 0;
    for (Index i = 0; i < n; ++i) {
      mx = std::max(mx, std::abs(want[i]));
      err = std::max(err, std::abs(double(got[i]) - want[i]));
    }
    return err <= 3e-5 * mx + 1e-6 && mx > 0;
  };
  CHECK(close(yf.data, yd.data, B * O));
  CHECK(close(wf.dp.data(), wd.dp.data(), B * P));
  CHECK(close(wf.dx.data(), wd.dx.data(), B * L * 5));
}
