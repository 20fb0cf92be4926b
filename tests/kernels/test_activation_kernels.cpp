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

namespace {

// A rows x cols matrix with row stride ld inside a buffer whose every other element (row gaps
// and a trailing pad) holds a canary the kernels must not touch.
struct StridedMat {
  static constexpr float kCanary = -12345.5f;
  Index rows, cols, ld;
  std::vector<float> buf;
  StridedMat(Index r, Index c, Index l) : rows(r), cols(c), ld(l), buf(static_cast<std::size_t>(r * l + 40), kCanary) {}
  float* data() { return buf.data(); }
  float& at(Index r, Index c) { return buf[static_cast<std::size_t>(r * ld + c)]; }
  bool canary_intact() const {
    for (std::size_t i = 0; i < buf.size(); ++i) {
      const Index r = static_cast<Index>(i) / ld, c = static_cast<Index>(i) % ld;
      const bool inside = r < rows && c < cols;
      if (!inside && buf[i] != kCanary) return false;
    }
    return true;
  }
};

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

}  // namespace

TEST_CASE("activation kernels: prelu fwd/bwd and dice fwd, every ISA against _ref on strided shapes and tails") {
  const ActivationKernels& ref = activation_kernels(Isa::ref);
  const float inf = std::numeric_limits<float>::infinity();
  Rng rng(23);
  for (Isa isa : runnable_isas()) {
    const ActivationKernels& k = activation_kernels(isa);
    for (Index rows : {Index(0), Index(1), Index(2), Index(5), Index(33), Index(70)}) {
      for (Index cols : mtrank::testing::kernel_dims()) {
        for (Index gap : {Index(0), Index(5)}) {
          const Index ld = cols + gap;
          INFO(isa_name(isa) << " rows=" << rows << " cols=" << cols << " ld=" << ld);
          StridedMat x(rows, cols, ld), dy(rows, cols, ld);
          for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) {
              x.at(r, c) = static_cast<float>(rng.normal(0.0, 3.0));
              dy.at(r, c) = static_cast<float>(rng.normal());
            }
          if (rows > 0 && cols > 2) {  // special values on the branch boundary
            x.at(0, 0) = 0.0f;
            x.at(0, 1) = -0.0f;
            x.at(rows - 1, cols - 1) = -inf;
            x.at(rows - 1, cols - 2) = inf;
          }
          std::vector<float> a(static_cast<std::size_t>(cols)), mean(a.size()), inv_std(a.size()), alpha(a.size());
          for (Index c = 0; c < cols; ++c) {
            a[c] = static_cast<float>(rng.uniform(-0.5, 1.0));
            mean[c] = static_cast<float>(rng.normal());
            inv_std[c] = static_cast<float>(rng.uniform(0.2, 3.0));
            alpha[c] = static_cast<float>(rng.uniform(-0.5, 1.0));
          }

          // prelu forward: one multiply per element, so exact.
          StridedMat y(rows, cols, ld + 3), y_ref(rows, cols, ld + 3);
          k.prelu_fwd(x.data(), ld, a.data(), y.data(), y.ld, rows, cols);
          ref.prelu_fwd(x.data(), ld, a.data(), y_ref.data(), y_ref.ld, rows, cols);
          bool fwd_same = true;
          for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) fwd_same = fwd_same && same_float(y.at(r, c), y_ref.at(r, c));
          CHECK(fwd_same);
          CHECK(y.canary_intact());

          // prelu backward: dx exact; da accumulates onto its previous value (summation order may differ).
          StridedMat dx(rows, cols, ld + 1), dx_ref(rows, cols, ld + 1);
          Guarded da(cols), da_ref(cols);
          std::vector<double> mag(static_cast<std::size_t>(cols));
          for (Index c = 0; c < cols; ++c) {
            da[c] = da_ref[c] = static_cast<float>(rng.normal());
            mag[c] = std::abs(da[c]);
            for (Index r = 0; r < rows; ++r)
              if (!(x.at(r, c) > 0)) mag[c] += std::abs(double(dy.at(r, c)) * x.at(r, c));
          }
          k.prelu_bwd(x.data(), ld, dy.data(), ld, a.data(), dx.data(), dx.ld, da.data(), rows, cols);
          ref.prelu_bwd(x.data(), ld, dy.data(), ld, a.data(), dx_ref.data(), dx_ref.ld, da_ref.data(), rows, cols);
          bool dx_same = true, da_close = true;
          for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) dx_same = dx_same && same_float(dx.at(r, c), dx_ref.at(r, c));
          for (Index c = 0; c < cols; ++c) {
            if (std::isnan(da_ref[c]) || std::isinf(da_ref[c]))
              da_close = da_close && same_float(da[c], da_ref[c]);
            else
              da_close = da_close && std::abs(double(da[c]) - da_ref[c]) <= 1e-30 + 2e-6 * mag[c];
          }
          CHECK(dx_same);
          CHECK(da_close);
          CHECK(dx.canary_intact());
          CHECK(da.canary_intact());

          // dice forward: sigmoid within its documented bound; y relative to |x| (|alpha| + |1 - alpha|).
          StridedMat yd(rows, cols, ld + 2), yd_ref(rows, cols, ld + 2);
          Guarded p(rows * cols), p_ref(rows * cols);
          k.dice_fwd(x.data(), ld, mean.data(), inv_std.data(), alpha.data(), yd.data(), yd.ld, p.data(), rows, cols);
          ref.dice_fwd(x.data(), ld, mean.data(), inv_std.data(), alpha.data(), yd_ref.data(), yd_ref.ld, p_ref.data(),
                       rows, cols);
          bool dice_close = true;
          for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) {
              const double pr = p_ref[r * cols + c], pg = p[r * cols + c];
              dice_close = dice_close && std::abs(pg - pr) <= 1e-37 + 2e-6 * pr;
              const double xv = x.at(r, c);
              if (std::isinf(xv)) {
                dice_close = dice_close && same_float(yd.at(r, c), yd_ref.at(r, c));
              } else {
                const double bound = 2e-6 * std::abs(xv) * (std::abs(alpha[c]) + std::abs(1.0 - alpha[c]));
                dice_close = dice_close && std::abs(double(yd.at(r, c)) - yd_ref.at(r, c)) <= 1e-37 + bound;
              }
            }
          CHECK(dice_close);
          CHECK(yd.canary_intact());
          CHECK(p.canary_intact());
          // Without p (inference), in place: the same y.
          StridedMat yi = x;
          k.dice_fwd(yi.data(), ld, mean.data(), inv_std.data(), alpha.data(), yi.data(), ld, nullptr, rows, cols);
          bool inplace_same = true;
          for (Index r = 0; r < rows; ++r)
            for (Index c = 0; c < cols; ++c) inplace_same = inplace_same && same_float(yi.at(r, c), yd.at(r, c));
          CHECK(inplace_same);
          CHECK(yi.canary_intact());
        }
      }
    }
  }
}

TEST_CASE("activation kernels: prelu propagates NaN and handles a = 0 and in-place forward") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Isa isa : runnable_isas()) {
    INFO(isa_name(isa));
    const ActivationKernels& k = activation_kernels(isa);
    const Index cols = 19;
    std::vector<float> x(cols), a(cols, 0.0f);
    for (Index c = 0; c < cols; ++c) x[c] = float(c) - 9.5f;
    x[3] = nan;
    x[18] = nan;
    k.prelu_fwd(x.data(), cols, a.data(), x.data(), cols, 1, cols);  // in place, a = 0: relu
    CHECK(std::isnan(x[3]));
    CHECK(std::isnan(x[18]));
    for (Index c : {0, 5, 9}) CHECK(x[c] == 0.0f);
    for (Index c : {10, 17}) CHECK(x[c] == float(c) - 9.5f);
    std::vector<float> dy(cols, 1.0f), dx(cols), da(cols, 0.0f);
    k.prelu_bwd(x.data(), cols, dy.data(), cols, a.data(), dx.data(), cols, da.data(), 1, cols);
    CHECK(std::isnan(da[3]));
    CHECK(da[10] == 0.0f);
  }
}
