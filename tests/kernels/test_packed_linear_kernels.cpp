// Packed-weight linear kernels: every ISA table against the double-precision oracle
// (f32_linear_fused_ref) on shapes with 1, odd sizes and tails in M, K and N (tiles of every
// height, partial panels, several K blocks), with bias / no bias, every fused activation, strided
// input and a column-block output whose neighbours must stay untouched; bf16 against its scalar
// emulation and within a bound of the f32 result; thread-count invariance; bad input.
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "kernel_test_util.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/packed_linear.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;

namespace {

struct Shape3 {
  Index M, K, N;
};
const std::vector<Shape3>& shapes() {
  static const std::vector<Shape3> s = {{1, 1, 1},    {1, 7, 5},     {2, 3, 17},    {3, 17, 33},   {4, 64, 64},
                                        {5, 16, 100}, {6, 31, 8},    {7, 33, 47},   {13, 128, 31}, {14, 96, 32},
                                        {15, 100, 65}, {29, 33, 70}, {1, 512, 256}, {37, 520, 129}, {3, 1030, 20},
                                        {64, 256, 128}};
  return s;
}

struct Problem {
  Index M, K, N, ldx, ldy;
  std::vector<float> x, w, b;
};
Problem make_problem(Shape3 s, Rng& rng) {
  Problem p{s.M, s.K, s.N, s.K + 3, s.N + 5, {}, {}, {}};
  p.x.resize(static_cast<std::size_t>(p.M * p.ldx));
  for (float& v : p.x) v = static_cast<float>(rng.normal());
  p.w.resize(static_cast<std::size_t>(p.N * p.K));
  for (float& v : p.w) v = static_cast<float>(rng.normal() / std::sqrt(double(p.K)));
  p.b.resize(static_cast<std::size_t>(p.N));
  for (float& v : p.b) v = static_cast<float>(rng.normal() * 0.1);
  return p;
}
// Sum of |x_k w_k| + |b| per output: the scale of the rounding error of a dot product.
double magnitude(const Problem& p, Index m, Index n, bool bias) {
  double s = bias ? std::abs(p.b[n]) : 0.0;
  for (Index k = 0; k < p.K; ++k) s += std::abs(double(p.x[m * p.ldx + k]) * double(p.w[n * p.K + k]));
  return s;
}

constexpr float kCanary = -777.25f;
const FusedActivation kActs[] = {FusedActivation::identity, FusedActivation::relu, FusedActivation::sigmoid,
                                 FusedActivation::tanh, FusedActivation::gelu_erf};

// Runs packed_linear into a [M, ldy] buffer filled with a canary; checks that nothing outside
// the [M, N] block changed.
std::vector<float> run(const Problem& p, const PackedMatrix& pm, bool bias, FusedActivation act) {
  std::vector<float> y(static_cast<std::size_t>(p.M * p.ldy), kCanary);
  packed_linear(p.M, p.x.data(), p.ldx, pm, bias ? p.b.data() : nullptr, act, y.data(), p.ldy);
  for (Index m = 0; m < p.M; ++m)
    for (Index j = p.N; j < p.ldy; ++j) REQUIRE(y[m * p.ldy + j] == kCanary);
  return y;
}

}  // namespace

TEST_CASE("packed_linear f32: every ISA table matches the double oracle", "[kernels][packed]") {
  Rng rng(4242);
  for (Isa isa : runnable_isas()) {
    const PackedLinearKernels& k = packed_linear_kernels(isa);
    for (const Shape3& s : shapes()) {
      const Problem p = make_problem(s, rng);
      const PackedMatrix pm(p.w.data(), p.N, p.K, p.K, WeightFormat::f32, k);
      for (bool bias : {true, false})
        for (FusedActivation act : kActs) {
          INFO(k.isa << " M=" << p.M << " K=" << p.K << " N=" << p.N << " bias=" << bias << " act="
                     << fused_activation_name(act));
          const std::vector<float> y = run(p, pm, bias, act);
          std::vector<float> want(static_cast<std::size_t>(p.M * p.ldy));
          f32_linear_fused_ref(p.M, p.K, p.N, p.x.data(), p.ldx, p.w.data(), bias ? p.b.data() : nullptr, act,
                               want.data(), p.ldy);
          for (Index m = 0; m < p.M; ++m)
            for (Index n = 0; n < p.N; ++n) {
              // f32 summation over K terms: error <= K * eps * sum |x w| (loosely); activations
              // have slope <= 1.1, so the same bound holds after them.
              const double bound = 4e-7 * double(p.K + 2) * magnitude(p, m, n, bias) + 1e-6;
              REQUIRE(std::abs(double(y[m * p.ldy + n]) - want[m * p.ldy + n]) <= bound);
            }
        }
    }
  }
}

TEST_CASE("packed_linear bf16: matches its scalar emulation and stays near f32", "[kernels][packed][bf16]") {
  Rng rng(99);
  const PackedLinearKernels& ref = packed_linear_kernels(Isa::ref);
  for (Isa isa : runnable_isas()) {
    const PackedLinearKernels& k = packed_linear_kernels(isa);
    if (!packed_bf16_supported(k)) {
      CHECK_THROWS_WITH(PackedMatrix(std::vector<float>(4, 1.f).data(), 2, 2, 2, WeightFormat::bf16, k),
                        Catch::Contains("AVX512_BF16"));
      continue;
    }
    for (const Shape3& s : shapes()) {
      const Problem p = make_problem(s, rng);
      const PackedMatrix pm(p.w.data(), p.N, p.K, p.K, WeightFormat::bf16, k);
      const PackedMatrix pref(p.w.data(), p.N, p.K, p.K, WeightFormat::bf16, ref);
      const PackedMatrix pf32(p.w.data(), p.N, p.K, p.K, WeightFormat::f32, ref);
      for (bool bias : {true, false})
        for (FusedActivation act : {FusedActivation::identity, FusedActivation::relu, FusedActivation::tanh}) {
          INFO(k.isa << " M=" << p.M << " K=" << p.K << " N=" << p.N << " bias=" << bias);
          const std::vector<float> y = run(p, pm, bias, act), yr = run(p, pref, bias, act), yf = run(p, pf32, bias, act);
          double err2 = 0, ref2 = 0;
          for (Index m = 0; m < p.M; ++m)
            for (Index n = 0; n < p.N; ++n) {
              const double mag = magnitude(p, m, n, bias);
              const double got = y[m * p.ldy + n];
              // Same products, same order as the emulation: only f32 rounding of the sums differs.
              REQUIRE(std::abs(got - yr[m * p.ldy + n]) <= 4e-7 * double(p.K + 2) * mag + 1e-7);
              // bf16 rounding of x and w: each product has relative error <= 2^-8 (2 x 2^-9).
              REQUIRE(std::abs(got - yf[m * p.ldy + n]) <= 1e-2 * mag + 1e-6);
              err2 += (got - yf[m * p.ldy + n]) * (got - yf[m * p.ldy + n]);
              ref2 += double(yf[m * p.ldy + n]) * yf[m * p.ldy + n];
            }
          if (p.M * p.N >= 16 && act == FusedActivation::identity) REQUIRE(std::sqrt(err2 / ref2) <= 1e-2);
        }
    }
  }
}

TEST_CASE("packed_linear int8: every ISA matches the reference and the quantisation bound", "[kernels][packed][int8]") {
  Rng rng(31);
  const PackedLinearKernels& ref = packed_linear_kernels(Isa::ref);
  for (Isa isa : runnable_isas()) {
    const PackedLinearKernels& k = packed_linear_kernels(isa);
    for (const Shape3& s : shapes()) {
      Problem p = make_problem(s, rng);
      if (p.N > 2)  // an all-zero weight row (scale 1, outputs = bias)
        for (Index j = 0; j < p.K; ++j) p.w[1 * p.K + j] = 0.0f;
      const PackedMatrix pm(p.w.data(), p.N, p.K, p.K, WeightFormat::int8, k);
      const PackedMatrix pref(p.w.data(), p.N, p.K, p.K, WeightFormat::int8, ref);
      REQUIRE(pm.scales() != nullptr);
      for (bool bias : {true, false})
        for (FusedActivation act : {FusedActivation::identity, FusedActivation::relu, FusedActivation::sigmoid}) {
          INFO(k.isa << " M=" << p.M << " K=" << p.K << " N=" << p.N << " bias=" << bias << " act="
                     << fused_activation_name(act));
          const std::vector<float> y = run(p, pm, bias, act), yr = run(p, pref, bias, act);
          std::vector<float> want(static_cast<std::size_t>(p.M * p.ldy));
          f32_linear_fused_ref(p.M, p.K, p.N, p.x.data(), p.ldx, p.w.data(), bias ? p.b.data() : nullptr, act,
                               want.data(), p.ldy);
          for (Index n = 0; n < p.N; ++n) {
            double amax = 0;
            for (Index j = 0; j < p.K; ++j) amax = std::max(amax, std::abs(double(p.w[n * p.K + j])));
            const double scale = amax > 0 ? amax / 127.0 : 1.0;
            for (Index m = 0; m < p.M; ++m) {
              double xabs = 0;
              for (Index j = 0; j < p.K; ++j) xabs += std::abs(double(p.x[m * p.ldx + j]));
              const double got = y[m * p.ldy + n];
              REQUIRE(std::abs(got - yr[m * p.ldy + n]) <= 4e-7 * double(p.K + 2) * (magnitude(p, m, n, bias) + scale * xabs) + 1e-6);
              // |w - s q| <= s / 2 per weight (+ f32 rounding); activations have slope <= 1.
              REQUIRE(std::abs(got - want[m * p.ldy + n]) <= 0.5 * scale * xabs * (1 + 1e-5) + 1e-5);
            }
          }
        }
    }
  }
  std::vector<float> bad(4, 1.f);
  bad[2] = NAN;
  CHECK_THROWS_WITH(PackedMatrix(bad.data(), 2, 2, 2, WeightFormat::int8), Catch::Contains("finite"));
}

TEST_CASE("packed_linear: results do not depend on the thread count", "[kernels][packed]") {
  Rng rng(5);
  const PackedLinearKernels& k = packed_linear_kernels();
  std::vector<WeightFormat> formats = {WeightFormat::f32, WeightFormat::int8};
  if (packed_bf16_supported(k)) formats.push_back(WeightFormat::bf16);
  for (Shape3 s : {Shape3{300, 256, 200}, Shape3{1, 512, 600}, Shape3{20, 700, 90}})
    for (WeightFormat f : formats) {
      const Problem p = make_problem(s, rng);
      const PackedMatrix pm(p.w.data(), p.N, p.K, p.K, f, k);
      set_num_threads(1);
      const std::vector<float> one = run(p, pm, true, FusedActivation::sigmoid);
      for (int t : {2, 3}) {
        set_num_threads(t);
        const std::vector<float> many = run(p, pm, true, FusedActivation::sigmoid);
        INFO("M=" << p.M << " threads=" << t << " format=" << weight_format_name(f));
        REQUIRE(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)) == 0);
      }
      set_num_threads(1);
    }
}

TEST_CASE("packed_linear: bad arguments throw naming the problem", "[kernels][packed]") {
  std::vector<float> w(12, 0.5f), x(8, 1.f), y(16, 0.f);
  CHECK_THROWS_WITH(PackedMatrix(w.data(), 0, 4, 4, WeightFormat::f32), Catch::Contains("N > 0"));
  CHECK_THROWS_WITH(PackedMatrix(w.data(), 3, 4, 2, WeightFormat::f32), Catch::Contains("row stride"));
  const PackedMatrix pm(w.data(), 3, 4, 4, WeightFormat::f32);
  CHECK_THROWS_WITH(packed_linear(2, x.data(), 3, pm, nullptr, FusedActivation::identity, y.data(), 3),
                    Catch::Contains("ldx 3 < K 4"));
  CHECK_THROWS_WITH(packed_linear(2, x.data(), 4, pm, nullptr, FusedActivation::identity, y.data(), 2),
                    Catch::Contains("ldy 2 < N 3"));
  CHECK_THROWS_WITH(packed_linear(1, x.data(), 4, PackedMatrix{}, nullptr, FusedActivation::identity, y.data(), 3),
                    Catch::Contains("not packed"));
  packed_linear(0, x.data(), 4, pm, nullptr, FusedActivation::identity, y.data(), 3);  // empty batch: no-op
}

TEST_CASE("PackedWeightCache: reuses a copy, repacks for a new version or pointer, keeps old copies alive for their readers",
          "[kernels][packed]") {
  std::vector<float> w(6 * 5), x(5, 1.f), y(6);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = float(i % 7) - 3.f;
  PackedWeightCache cache;
  const std::shared_ptr<const PackedMatrix> a = cache.get(w.data(), 6, 5, WeightFormat::f32, 7);
  REQUIRE(cache.get(w.data(), 6, 5, WeightFormat::f32, 7) == a);
  REQUIRE(cache.copies() == 1);
  const auto a8 = cache.get(w.data(), 6, 5, WeightFormat::int8, 7);  // one copy per format
  REQUIRE(a8 != a);
  REQUIRE(cache.get(w.data(), 6, 5, WeightFormat::f32, 7) == a);
  REQUIRE(cache.copies() == 2);
  packed_linear(1, x.data(), 5, *a, nullptr, FusedActivation::identity, y.data(), 6);
  const float before = y[0];
  w[0] += 10.f;  // a weight change is invisible until the version moves (the documented contract)
  REQUIRE(cache.get(w.data(), 6, 5, WeightFormat::f32, 7) == a);
  const std::shared_ptr<const PackedMatrix> b = cache.get(w.data(), 6, 5, WeightFormat::f32, 8);
  REQUIRE(b != a);
  REQUIRE(cache.copies() == 1);  // the version-7 copies were dropped by the cache ...
  packed_linear(1, x.data(), 5, *a, nullptr, FusedActivation::identity, y.data(), 6);
  REQUIRE(y[0] == before);  // ... but a reader still holding one runs on it unharmed
  REQUIRE(a.use_count() == 1);
  packed_linear(1, x.data(), 5, *b, nullptr, FusedActivation::identity, y.data(), 6);
  REQUIRE(y[0] == before + 10.f);
  std::vector<float> w2 = w;
  REQUIRE(cache.get(w2.data(), 6, 5, WeightFormat::f32, 8) != b);  // another pointer: repacked
  REQUIRE(cache.copies() == 1);
}
