// Gate-mixture and row-softmax kernels: every ISA variant against double-precision
// evaluations of the definitions in include/mtrank/kernels/{mixture,softmax}.hpp.
//
// Tolerances: mixture |got - want| <= (E + h + 2) * 2^-23 * sum |terms|;
// softmax y: 1e-6 * max(|want|, 1e-3) + 1e-9 absolute; softmax backward 2e-6 * (|y| (|dy| + |s|)) / t + 1e-9.
#include <cmath>

#include "kernel_test_util.hpp"
#include "mtrank/kernels/mixture.hpp"
#include "mtrank/kernels/softmax.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;
using mtrank::testing::Guarded;
using mtrank::testing::kernel_dims;

TEST_CASE("mixture forward/backward: every ISA matches the definition") {
  Rng rng(31);
  for (Isa isa : runnable_isas()) {
    const MixtureKernels& k = mixture_kernels(isa);
    REQUIRE(k.isa == isa);
    for (Index h : kernel_dims())
      for (Index E : {Index(1), Index(3), Index(8)}) {
        INFO(isa_name(isa) << " h=" << h << " E=" << E);
        const Index B = 5, ld_x = h + 3, ld_g = E + 1;
        std::vector<std::vector<float>> xs(static_cast<std::size_t>(E)), dxs(xs.size());
        std::vector<const float*> xp;
        std::vector<float*> dxp;
        for (Index e = 0; e < E; ++e) {
          auto& x = xs[static_cast<std::size_t>(e)];
          x.resize(static_cast<std::size_t>(B * ld_x));
          for (auto& v : x) v = static_cast<float>(rng.normal());
          xp.push_back(x.data());
          auto& dx = dxs[static_cast<std::size_t>(e)];
          dx.resize(x.size());
          for (auto& v : dx) v = static_cast<float>(rng.normal());
          dxp.push_back(dx.data());
        }
        if (E > 1) dxp[1] = nullptr;  // an expert without gradient is skipped
        std::vector<float> g(static_cast<std::size_t>(B * ld_g)), dout(static_cast<std::size_t>(B * h));
        for (auto& v : g) v = static_cast<float>(rng.uniform());
        for (auto& v : dout) v = static_cast<float>(rng.normal());
        Guarded out(B * h);
        k.f32_mixture(B, E, h, g.data(), ld_g, xp.data(), ld_x, out.data(), h);
        auto dxs_before = dxs;
        Guarded dg(B * E);
        k.f32_mixture_backward(B, E, h, g.data(), ld_g, xp.data(), ld_x, dout.data(), h, dxp.data(), ld_x, dg.data(), E);
        bool ok = true;
        for (Index b = 0; b < B; ++b) {
          for (Index c = 0; c < h; ++c) {
            double want = 0, mag = 0;
            for (Index e = 0; e < E; ++e) {
              const double t = double(g[b * ld_g + e]) * xs[e][b * ld_x + c];
              want += t, mag += std::abs(t);
            }
            ok = ok && std::abs(out[b * h + c] - want) <= double(E + 2) * 0x1p-23 * mag + 1e-30;
            for (Index e = 0; e < E; ++e) {
              const double before = dxs_before[e][b * ld_x + c];
              const double expect = dxp[e] ? before + double(g[b * ld_g + e]) * dout[b * h + c] : before;
              ok = ok && std::abs(dxs[e][b * ld_x + c] - expect) <= 4 * 0x1p-23 * (std::abs(expect) + std::abs(before)) + 1e-30;
            }
          }
          for (Index e = 0; e < E; ++e) {
            double want = 0, mag = 0;
            for (Index c = 0; c < h; ++c) {
              const double t = double(dout[b * h + c]) * xs[e][b * ld_x + c];
              want += t, mag += std::abs(t);
            }
            ok = ok && std::abs(dg[b * E + e] - want) <= double(h + 2) * 0x1p-23 * mag + 1e-30;
          }
        }
        CHECK(ok);
        CHECK(out.canary_intact());
        CHECK(dg.canary_intact());
        // dx == nullptr and dg == nullptr are allowed.
        k.f32_mixture_backward(B, E, h, g.data(), ld_g, xp.data(), ld_x, dout.data(), h, nullptr, ld_x, nullptr, E);
      }
  }
}

namespace {
void softmax_truth(Index n, const float* x, double t, const std::uint8_t* m, std::vector<double>& y) {
  y.assign(static_cast<std::size_t>(n), 0.0);
  double mx = -INFINITY;
  for (Index c = 0; c < n; ++c)
    if (!m || m[c]) mx = std::max(mx, double(x[c]));
  if (mx == -INFINITY) return;
  double s = 0;
  for (Index c = 0; c < n; ++c)
    if (!m || m[c]) s += y[c] = std::exp((double(x[c]) - mx) / t);
  for (auto& v : y) v /= s;
}
}  // namespace

TEST_CASE("softmax forward/backward: every ISA matches the definition, with and without mask") {
  Rng rng(41);
  for (Isa isa : runnable_isas()) {
    const SoftmaxKernels& k = softmax_kernels(isa);
    REQUIRE(k.isa == isa);
    for (Index n : kernel_dims())
      for (double temp : {1.0, 0.5, 3.0})
        for (bool masked : {false, true}) {
          INFO(isa_name(isa) << " n=" << n << " t=" << temp << " masked=" << masked);
          const Index rows = 4, ld = n + 2;
          std::vector<float> x(static_cast<std::size_t>(rows * ld)), dy(x.size());
          for (auto& v : x) v = static_cast<float>(rng.normal(0.0, 5.0));
          for (auto& v : dy) v = static_cast<float>(rng.normal());
          std::vector<std::uint8_t> mask(static_cast<std::size_t>(rows * ld), 1);
          for (auto& v : mask) v = rng.bernoulli(0.6) ? 1 : 0;
          for (Index c = 0; c < n; ++c) mask[static_cast<std::size_t>(2 * ld + c)] = 0;  // row 2 fully masked
          const std::uint8_t* mp = masked ? mask.data() : nullptr;
          Guarded y(rows * ld, 9.f), dx(rows * ld, 9.f);
          k.f32_softmax(rows, n, x.data(), ld, float(temp), mp, ld, y.data(), ld);
          k.f32_softmax_backward(rows, n, y.data(), ld, dy.data(), ld, float(temp), dx.data(), ld);
          bool ok = true;
          std::vector<double> want;
          for (Index r = 0; r < rows; ++r) {
            softmax_truth(n, x.data() + r * ld, temp, mp ? mp + r * ld : nullptr, want);
            double s = 0;
            for (Index c = 0; c < n; ++c) s += double(dy[r * ld + c]) * y[r * ld + c];
            for (Index c = 0; c < n; ++c) {
              const double got = y[r * ld + c];
              ok = ok && !std::isnan(got) && std::abs(got - want[c]) <= 1e-6 * std::max(want[c], 1e-3) + 1e-9;
              if (mp && !mp[r * ld + c]) ok = ok && got == 0.0 && dx[r * ld + c] == 0.0f;
              const double yv = y[r * ld + c];
              const double dwant = yv * (double(dy[r * ld + c]) - s) / temp;
              const double dtol = 2e-6 * std::abs(yv) * (std::abs(dy[r * ld + c]) + std::abs(s)) / temp + 1e-9;
              ok = ok && std::abs(dx[r * ld + c] - dwant) <= dtol;
            }
            for (Index c = n; c < ld; ++c) ok = ok && y[r * ld + c] == 9.f && dx[r * ld + c] == 9.f;
          }
          CHECK(ok);
          CHECK(y.canary_intact());
          CHECK(dx.canary_intact());
          if (masked)
            for (Index c = 0; c < n; ++c) CHECK(y[2 * ld + c] == 0.0f);  // all-masked row: zeros, not NaN
        }
  }
}

TEST_CASE("softmax: in place, large logits, rows sum to one") {
  for (Isa isa : runnable_isas()) {
    INFO(isa_name(isa));
    const SoftmaxKernels& k = softmax_kernels(isa);
    std::vector<float> x = {1000.f, 999.f, -1000.f, 0.f, 88.f, 1000.f, 3.f, 1e-3f, 50.f, 60.f, 70.f};
    k.f32_softmax(1, Index(x.size()), x.data(), 0, 1.0f, nullptr, 0, x.data(), 0);
    double s = 0;
    for (float v : x) {
      s += v;
      CHECK_FALSE(std::isnan(v));
    }
    CHECK(s == Approx(1.0).epsilon(1e-6));
    CHECK(x[0] == Approx(1.0 / (2.0 + std::exp(-1.0))).epsilon(1e-6));
  }
}
