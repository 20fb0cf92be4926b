// Activation kernels: every ISA variant against a double-precision evaluation of the same
// formula, on a dense grid, large |x| and special values, for lengths with every tail.
//
// Documented bounds (|got - want| <= atol + rtol * |want|, want in double):
//   relu fwd/bwd: exact.  sigmoid/tanh bwd: rtol 4e-7 (a few float roundings, even for _ref).
//   sigmoid fwd: atol 1e-37, rtol 5e-7.   tanh fwd: atol 1e-37, rtol 5e-7.
//   gelu fwd: atol 1e-37, rtol 1e-6 (measured 4.4e-7: erfc form, exp argument carried as hi + lo).
//   gelu bwd: atol 1e-36, rtol 1e-6 relative to |dy| (Phi + |x| phi) (the result cancels near x = -0.75).
//   sigmoid/tanh bwd bounds are relative to the size of the terms as well.
#include <cmath>
#include <limits>

#include "kernel_test_util.hpp"
#include "mtrank/kernels/activation.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;
using mtrank::testing::ErrorStats;
using mtrank::testing::Guarded;

namespace {

std::vector<float> activation_inputs() {
  std::vector<float> x;
  for (int i = -40000; i <= 40000; ++i) x.push_back(static_cast<float>(i) * 5e-4f);  // [-20, 20]
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-7f, -1e-7f, 0.625f, -0.625f, 0.6249999f, 25.f, -25.f, 30.f,
                  -30.f, 50.f, -50.f, 80.f, -80.f, 87.f, -87.f, 88.5f, -88.5f, 89.f, -89.f, 100.f, -100.f, 104.f,
                  -104.f, 1e3f, -1e3f, 1e30f, -1e30f, std::numeric_limits<float>::max(),
                  -std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min()})
    x.push_back(v);
  Rng rng(17);
  for (int i = 0; i < 20000; ++i) x.push_back(static_cast<float>(rng.normal(0.0, 4.0)));
  return x;
}

double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double phi_d(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752440); }
double pdf_d(double x) { return 0.39894228040143267794 * std::exp(-0.5 * x * x); }

struct Bounds {
  double atol, rtol;
};

template <class Fn, class Truth>
void check_unary(const char* name, Fn fn, Truth truth, Bounds b, Isa isa) {
  const auto x = activation_inputs();
  const Index n = static_cast<Index>(x.size());
  Guarded y(n);
  fn(x.data(), y.data(), n);
  ErrorStats e(b.atol, b.rtol);
  for (Index i = 0; i < n; ++i) e.add(x[i], y[i], static_cast<double>(static_cast<float>(truth(double(x[i])))));
  mtrank::testing::maybe_print(std::string(name) + " " + isa_name(isa), e);
  INFO(name << " " << isa_name(isa) << ": " << e.str());
  CHECK(e.ok());
  CHECK(y.canary_intact());
}

template <class Fn, class Truth, class Mag>
void check_binary(const char* name, Fn fn, Truth truth, Mag mag, Bounds b, Isa isa, bool x_is_output) {
  auto x = activation_inputs();
  if (x_is_output)  // sigmoid/tanh backward take the forward output y in [-1, 1]
    for (auto& v : x) v = static_cast<float>(std::tanh(double(v) / 4));
  Rng rng(5);
  std::vector<float> dy(x.size());
  for (auto& v : dy) v = static_cast<float>(rng.normal());
  const Index n = static_cast<Index>(x.size());
  Guarded dx(n);
  fn(x.data(), dy.data(), dx.data(), n);
  ErrorStats e(b.atol, b.rtol);
  for (Index i = 0; i < n; ++i) e.add(x[i], dx[i], truth(double(x[i]), double(dy[i])), mag(double(x[i]), double(dy[i])));
  mtrank::testing::maybe_print(std::string(name) + " " + isa_name(isa), e);
  INFO(name << " " << isa_name(isa) << ": " << e.str());
  CHECK(e.ok());
  CHECK(dx.canary_intact());
}

}  // namespace

TEST_CASE("activation kernels: every ISA within documented error of the exact function") {
  for (Isa isa : runnable_isas()) {
    const ActivationKernels& k = activation_kernels(isa);
    CHECK(k.isa == isa);
    check_unary("relu_fwd", k.relu_fwd, [](double v) { return v > 0 ? v : 0.0; }, {0, 0}, isa);
    check_unary("sigmoid_fwd", k.sigmoid_fwd, sigmoid_d, {1e-37, 5e-7}, isa);
    check_unary("tanh_fwd", k.tanh_fwd, [](double v) { return std::tanh(v); }, {1e-37, 5e-7}, isa);
    check_unary("gelu_fwd", k.gelu_fwd, [](double v) { return v * phi_d(v); }, {1e-37, 1e-6}, isa);
    auto no_mag = [](double, double) { return -1.0; };
    check_binary("relu_bwd", k.relu_bwd, [](double v, double g) { return v > 0 ? g : 0.0; }, no_mag, {0, 0}, isa,
                 false);
    check_binary(
        "sigmoid_bwd", k.sigmoid_bwd, [](double y, double g) { return g * y * (1 - y); },
        [](double y, double g) { return std::abs(g * y) * (1 + std::abs(y)); }, {1e-37, 4e-7}, isa, true);
    check_binary(
        "tanh_bwd", k.tanh_bwd, [](double y, double g) { return g * (1 - y * y); },
        [](double y, double g) { return std::abs(g) * (1 + y * y); }, {1e-37, 4e-7}, isa, true);
    check_binary(
        "gelu_bwd", k.gelu_bwd, [](double v, double g) { return g * (phi_d(v) + v * pdf_d(v)); },
        [](double v, double g) { return std::abs(g) * (phi_d(v) + std::abs(v) * pdf_d(v)); }, {1e-36, 1e-6}, isa,
        false);
  }
}

TEST_CASE("activation kernels: SIMD variants agree with _ref on every length and tail") {
  const ActivationKernels& ref = activation_kernels(Isa::ref);
  Rng rng(9);
  for (Isa isa : runnable_isas()) {
    const ActivationKernels& k = activation_kernels(isa);
    for (Index n : {Index(0), Index(1), Index(2), Index(3), Index(7), Index(8), Index(9), Index(15), Index(16),
                    Index(17), Index(31), Index(33), Index(64), Index(100), Index(128), Index(1000)}) {
      INFO(isa_name(isa) << " n=" << n);
      std::vector<float> x(static_cast<std::size_t>(n)), dy(x.size()), y(x.size());
      for (auto& v : x) v = static_cast<float>(rng.normal(0.0, 3.0));
      for (auto& v : dy) v = static_cast<float>(rng.normal());
      for (std::size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(std::tanh(x[i]));
      using U = void (*)(const float*, float*, Index);
      using Bi = void (*)(const float*, const float*, float*, Index);
      auto cmp_u = [&](U a, U b, double rtol) {
        Guarded ga(n), gb(n);
        a(x.data(), ga.data(), n);
        b(x.data(), gb.data(), n);
        for (Index i = 0; i < n; ++i) CHECK(std::abs(ga[i] - gb[i]) <= 1e-30 + rtol * std::abs(gb[i]));
        CHECK(ga.canary_intact());
      };
      auto cmp_b = [&](Bi a, Bi b, const std::vector<float>& in, double rtol) {
        Guarded ga(n), gb(n);
        a(in.data(), dy.data(), ga.data(), n);
        b(in.data(), dy.data(), gb.data(), n);
        for (Index i = 0; i < n; ++i)
          CHECK(std::abs(ga[i] - gb[i]) <= 1e-30 + rtol * (std::abs(gb[i]) + std::abs(dy[i])));
        CHECK(ga.canary_intact());
      };
      // Backward results can cancel to ~0: the bound is relative to the size of the terms (~|dy|).
      cmp_u(k.relu_fwd, ref.relu_fwd, 0);
      cmp_u(k.sigmoid_fwd, ref.sigmoid_fwd, 1e-6);
      cmp_u(k.tanh_fwd, ref.tanh_fwd, 1e-6);
      cmp_u(k.gelu_fwd, ref.gelu_fwd, 8e-6);
      cmp_b(k.relu_bwd, ref.relu_bwd, x, 0);
      cmp_b(k.sigmoid_bwd, ref.sigmoid_bwd, y, 1e-6);
      cmp_b(k.tanh_bwd, ref.tanh_bwd, y, 1e-6);
      cmp_b(k.gelu_bwd, ref.gelu_bwd, x, 8e-6);
    }
  }
}

TEST_CASE("activation kernels: NaN propagates and in-place calls work") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Isa isa : runnable_isas()) {
    INFO(isa_name(isa));
    const ActivationKernels& k = activation_kernels(isa);
    for (auto fn : {k.sigmoid_fwd, k.tanh_fwd, k.gelu_fwd}) {
      std::vector<float> x(19, 0.5f);
      x[3] = nan;
      x[18] = nan;
      fn(x.data(), x.data(), 19);  // in place
      CHECK(std::isnan(x[3]));
      CHECK(std::isnan(x[18]));
      CHECK_FALSE(std::isnan(x[0]));
    }
  }
}
