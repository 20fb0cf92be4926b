// Optimiser-row kernels: every ISA variant is BIT-IDENTICAL to the scalar reference (the header
// promises it: no fused multiply-add, correctly rounded + * / sqrt), on every tail length and
// option combination; the reference itself is checked against a double-precision evaluation of
// the rules in train/optimizer.hpp.
#include <cmath>
#include <cstring>

#include "kernel_test_util.hpp"
#include "mtrank/kernels/optimizer_rows.hpp"
#include "mtrank/train/optimizer.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;
using mtrank::testing::Guarded;
using mtrank::testing::kernel_dims;

namespace {
struct Rows {
  Guarded w, a, b, g;
  explicit Rows(Index n) : w(n), a(n), b(n), g(n) {}
};
Rows make_rows(Index n, Rng& rng) {
  Rows r(n);
  for (Index i = 0; i < n; ++i) {
    r.w[i] = static_cast<float>(rng.normal());
    r.a[i] = static_cast<float>(rng.normal() * 0.1);
    r.b[i] = static_cast<float>(std::abs(rng.normal()) * 0.01 + (i % 5 == 0 ? 0.0 : 1e-3));
    r.g[i] = static_cast<float>(rng.normal() * (i % 7 == 0 ? 1e-6 : 1.0));
  }
  if (n > 2) r.g[1] = 0.0f;  // zero gradient on a zero accumulator row element
  return r;
}
bool same_bits(Guarded& x, Guarded& y, Index n) {
  return std::memcmp(x.data(), y.data(), static_cast<std::size_t>(n) * sizeof(float)) == 0 && x.canary_intact() &&
         y.canary_intact();
}
}  // namespace

TEST_CASE("optimizer rows: SIMD variants are bit-identical to the reference") {
  Rng rng(77);
  const OptimizerRowKernels& ref = optimizer_row_kernels(Isa::ref);
  for (Isa isa : runnable_isas()) {
    const OptimizerRowKernels& k = optimizer_row_kernels(isa);
    REQUIRE(k.isa == isa);
    for (Index n : kernel_dims()) {
      INFO(isa_name(isa) << " n=" << n);
      for (int variant = 0; variant < 6; ++variant) {
        INFO("variant " << variant);
        const Rows base = make_rows(n, rng);
        // SGD: momentum/nesterov/first/weight decay combinations (variant 0: plain, buf = nullptr).
        {
          SgdRowArgs a{-0.05f, variant == 0 ? 0.0f : 0.9f, variant == 3 ? 0.7f : 1.0f, variant % 2 ? 1e-2f : 0.0f,
                       variant == 2 || variant == 4, variant == 4 || variant == 5};
          Rows x = base, y = base;
          ref.f32_sgd_row(x.w.data(), variant == 0 ? nullptr : x.a.data(), x.g.data(), n, a);
          k.f32_sgd_row(y.w.data(), variant == 0 ? nullptr : y.a.data(), y.g.data(), n, a);
          CHECK(same_bits(x.w, y.w, n));
          CHECK(same_bits(x.a, y.a, n));
        }
        {
          const double t = 1 + variant * 3;
          AdamRowArgs a{0.9f, 0.999f, float(1.0 - double(0.9f)), float(1.0 - double(0.999f)),
                        -float(1e-3 / (1 - std::pow(0.9, t))), float(std::sqrt(1 - std::pow(0.999, t))), 1e-8f,
                        variant >= 2 ? 1e-2f : 0.0f, float(1.0 - 1e-3 * 1e-2), variant >= 4};
          Rows x = base, y = base;
          ref.f32_adam_row(x.w.data(), x.a.data(), x.b.data(), x.g.data(), n, a);
          k.f32_adam_row(y.w.data(), y.a.data(), y.b.data(), y.g.data(), n, a);
          CHECK(same_bits(x.w, y.w, n));
          CHECK(same_bits(x.a, y.a, n));
          CHECK(same_bits(x.b, y.b, n));
        }
        {
          AdagradRowArgs a{-float(0.01 / (1 + variant * 0.1)), variant % 2 ? 1e-3f : 0.0f, variant == 5 ? 0.0f : 1e-10f};
          Rows x = base, y = base;
          ref.f32_adagrad_row(x.w.data(), x.b.data(), x.g.data(), n, a);
          k.f32_adagrad_row(y.w.data(), y.b.data(), y.g.data(), n, a);
          CHECK(same_bits(x.w, y.w, n));
          CHECK(same_bits(x.b, y.b, n));
        }
        {
          FtrlRowArgs a{0.05, variant == 5 ? 0.0 : 1.0, variant * 0.02, variant % 2 ? 0.1 : 0.0};
          Rows x = base, y = base;
          ref.f32_ftrl_row(x.w.data(), x.a.data(), x.b.data(), x.g.data(), n, a);
          k.f32_ftrl_row(y.w.data(), y.a.data(), y.b.data(), y.g.data(), n, a);
          CHECK(same_bits(x.w, y.w, n));
          CHECK(same_bits(x.a, y.a, n));
          CHECK(same_bits(x.b, y.b, n));
        }
      }
    }
  }
}

TEST_CASE("optimizer rows: the reference follows the documented rules") {
  Rng rng(5);
  const Index n = 37;
  const Rows base = make_rows(n, rng);
  const OptimizerRowKernels& ref = optimizer_row_kernels(Isa::ref);
  auto close = [](double got, double want) { return std::abs(got - want) <= 1e-5 * (std::abs(want) + 1e-3); };
  {  // Adam with L2 weight decay, step 3.
    const double lr = 1e-2, b1 = 0.9, b2 = 0.99, eps = 1e-8, wd = 0.1, t = 3;
    AdamRowArgs a{float(b1), float(b2), float(1 - b1), float(1 - b2), -float(lr / (1 - std::pow(b1, t))),
                  float(std::sqrt(1 - std::pow(b2, t))), float(eps), float(wd), float(1 - lr * wd), false};
    Rows x = base;
    ref.f32_adam_row(x.w.data(), x.a.data(), x.b.data(), x.g.data(), n, a);
    for (Index i = 0; i < n; ++i) {
      const double g = double(base.g.buf[i]) + wd * base.w.buf[i];
      const double m = b1 * base.a.buf[i] + (1 - b1) * g, v = b2 * base.b.buf[i] + (1 - b2) * g * g;
      const double w = base.w.buf[i] - lr / (1 - std::pow(b1, t)) * m / (std::sqrt(v) / std::sqrt(1 - std::pow(b2, t)) + eps);
      CHECK(close(x.a[i], m));
      CHECK(close(x.b[i], v));
      CHECK(close(x.w[i], w));
    }
  }
  {  // Adagrad.
    const double clr = 0.05, eps = 1e-10;
    Rows x = base;
    ref.f32_adagrad_row(x.w.data(), x.b.data(), x.g.data(), n, AdagradRowArgs{-float(clr), 0.0f, float(eps)});
    for (Index i = 0; i < n; ++i) {
      const double g = base.g.buf[i], s = base.b.buf[i] + g * g;
      CHECK(close(x.b[i], s));
      CHECK(close(x.w[i], base.w.buf[i] - clr * g / (std::sqrt(s) + eps)));
    }
  }
  {  // SGD with momentum (not first) and Nesterov.
    const double lr = 0.1, mu = 0.9;
    Rows x = base;
    ref.f32_sgd_row(x.w.data(), x.a.data(), x.g.data(), n, SgdRowArgs{-float(lr), float(mu), 1.0f, 0.0f, true, false});
    for (Index i = 0; i < n; ++i) {
      const double d = base.g.buf[i], b = mu * base.a.buf[i] + d;
      CHECK(close(x.a[i], b));
      CHECK(close(x.w[i], base.w.buf[i] - lr * (d + mu * b)));
    }
  }
}

TEST_CASE("optimizer rows: train::*_update_row run the dispatched kernels with the same bits") {
  Rng rng(9);
  const Index n = 45;
  const Rows base = make_rows(n, rng);
  const train::AdamRowParams p{1e-3f, 0.9f, 0.999f, 1e-8f, 1e-2f, 1 - std::pow(0.9, 4.0), 1 - std::pow(0.999, 4.0), true};
  Rows x = base, y = base;
  train::adam_update_row(x.w.data(), x.a.data(), x.b.data(), x.g.data(), n, p);
  const AdamRowArgs a{p.beta1, p.beta2, float(1.0 - double(p.beta1)), float(1.0 - double(p.beta2)),
                      -float(double(p.lr) / p.bias_correction1), float(std::sqrt(p.bias_correction2)), p.eps,
                      p.weight_decay, float(1.0 - double(p.lr) * double(p.weight_decay)), true};
  optimizer_row_kernels(Isa::ref).f32_adam_row(y.w.data(), y.a.data(), y.b.data(), y.g.data(), n, a);
  CHECK(same_bits(x.w, y.w, n));
  CHECK(same_bits(x.a, y.a, n));
  CHECK(same_bits(x.b, y.b, n));
}
