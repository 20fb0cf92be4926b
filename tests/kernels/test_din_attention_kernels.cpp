// Fused DIN attention kernels.
//  1. The double reference against the literal definition (first layer on the concatenation
//     [q; k; q-k; q*k], no decomposition) and its backward against central finite differences.
//  2. Every ISA variant (float) against the double reference on odd shapes, tails, empty /
//     single-behaviour samples, windows with a start offset, PReLU and Dice, softmax and
//     length normalisation; outputs and the caller's scratch are canary-guarded.
// Tolerance for the float variants: max |got - want| <= 3e-5 * max |want| + 1e-6 per array.
#include <cmath>
#include <vector>

#include "kernel_test_util.hpp"
#include "mtrank/blocks/din.hpp"
#include "mtrank/kernels/din_attention.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;
using mtrank::testing::Guarded;

namespace {

struct Case {
  Index B, L, d, h1, h2;
  DinActivation act;
  bool softmax, norm;
};

template <class T>
struct Data {
  DinAttentionArgs a;
  std::vector<T> w1, b1, a1, m1, s1, w2, b2, a2, m2, s2, w3, b3, q, k, dy;
  std::vector<Index> start, count;
  DinAttentionWeights<T> weights() const {
    return {w1.data(), b1.data(), a1.data(), m1.data(), s1.data(), w2.data(), b2.data(), a2.data(),
            m2.data(), s2.data(), w3.data(), b3.data()};
  }
};

Data<double> make(const Case& c, Rng& rng) {
  Data<double> x;
  x.a = {c.B, c.L, c.d, c.h1, c.h2, c.d + 2, c.d + 1, c.act, c.softmax, c.norm};
  auto fill = [&](std::vector<double>& v, Index n, double sd, double mean = 0) {
    v.resize(static_cast<std::size_t>(n));
    for (auto& e : v) e = mean + sd * rng.normal();
  };
  const Index hs = std::max<Index>(c.h2, 1);
  fill(x.w1, c.h1 * 4 * c.d, 0.4 / std::sqrt(double(c.d)));
  fill(x.b1, c.h1, 0.1);
  fill(x.a1, c.h1, 0.2, 0.25);
  fill(x.m1, c.h1, 0.1);
  fill(x.s1, c.h1, 0.2, 1.0);
  fill(x.w2, hs * c.h1, 1.0 / std::sqrt(double(c.h1)));
  fill(x.b2, hs, 0.1);
  fill(x.a2, hs, 0.2, 0.25);
  fill(x.m2, hs, 0.1);
  fill(x.s2, hs, 0.2, 1.0);
  fill(x.w3, c.h2 > 0 ? c.h2 : c.h1, 0.5);
  fill(x.b3, 1, 0.1);
  fill(x.q, c.B * x.a.ld_query, 1.0);
  fill(x.k, c.B * c.L * x.a.ld_keys, 1.0);
  fill(x.dy, c.B * c.d, 1.0);
  for (Index b = 0; b < c.B; ++b) {
    // Lengths: 0, 1, full, and random windows with a start offset.
    Index n = b == 0 ? std::min<Index>(1, c.L) : b == 1 ? 0 : b == 2 ? c.L : static_cast<Index>(rng.uniform() * double(c.L + 1));
    n = std::min(n, c.L);
    const Index s = (b % 2 == 1 && n < c.L) ? static_cast<Index>(rng.uniform() * double(c.L - n + 1)) : 0;
    x.start.push_back(std::min(s, c.L - n));
    x.count.push_back(n);
  }
  return x;
}

template <class T, class S>
Data<T> cast(const Data<S>& x) {
  Data<T> y;
  y.a = x.a;
  auto cv = [](const std::vector<S>& v) { return std::vector<T>(v.begin(), v.end()); };
  y.w1 = cv(x.w1), y.b1 = cv(x.b1), y.a1 = cv(x.a1), y.m1 = cv(x.m1), y.s1 = cv(x.s1);
  y.w2 = cv(x.w2), y.b2 = cv(x.b2), y.a2 = cv(x.a2), y.m2 = cv(x.m2), y.s2 = cv(x.s2);
  y.w3 = cv(x.w3), y.b3 = cv(x.b3), y.q = cv(x.q), y.k = cv(x.k), y.dy = cv(x.dy);
  y.start = x.start, y.count = x.count;
  return y;
}

// Literal definition: scores through W1 [q; k; q-k; q*k].
double act_lit(DinActivation k, double x, double a, double m, double s) {
  if (k == DinActivation::prelu) return x > 0 ? x : a * x;
  const double p = 1 / (1 + std::exp(-(x - m) * s));
  return x * (a + (1 - a) * p);
}

std::vector<double> literal_pooled(const Data<double>& x, std::vector<double>& wts) {
  const auto& a = x.a;
  const Index d = a.dim;
  std::vector<double> pooled(static_cast<std::size_t>(a.batch * d), 0.0);
  wts.assign(static_cast<std::size_t>(a.batch * a.padded_len), 0.0);
  for (Index b = 0; b < a.batch; ++b) {
    const Index n = x.count[b], s0 = x.start[b];
    if (n == 0) continue;
    const double* q = x.q.data() + b * a.ld_query;
    std::vector<double> e(static_cast<std::size_t>(n));
    for (Index j = 0; j < n; ++j) {
      const double* k = x.k.data() + (b * a.padded_len + s0 + j) * a.ld_keys;
      std::vector<double> in(static_cast<std::size_t>(4 * d)), z1(static_cast<std::size_t>(a.h1));
      for (Index c = 0; c < d; ++c) in[c] = q[c], in[d + c] = k[c], in[2 * d + c] = q[c] - k[c], in[3 * d + c] = q[c] * k[c];
      for (Index i = 0; i < a.h1; ++i) {
        double u = x.b1[i];
        for (Index c = 0; c < 4 * d; ++c) u += x.w1[i * 4 * d + c] * in[c];
        z1[i] = act_lit(a.activation, u, x.a1[i], x.m1[i], x.s1[i]);
      }
      std::vector<double> zl = z1;
      if (a.h2 > 0) {
        zl.assign(static_cast<std::size_t>(a.h2), 0.0);
        for (Index o = 0; o < a.h2; ++o) {
          double u = x.b2[o];
          for (Index i = 0; i < a.h1; ++i) u += x.w2[o * a.h1 + i] * z1[i];
          zl[o] = act_lit(a.activation, u, x.a2[o], x.m2[o], x.s2[o]);
        }
      }
      double s = x.b3[0];
      for (std::size_t i = 0; i < zl.size(); ++i) s += x.w3[i] * zl[i];
      e[j] = s;
    }
    if (a.softmax) {
      double mx = e[0], sum = 0;
      for (double v : e) mx = std::max(mx, v);
      for (double& v : e) sum += (v = std::exp(v - mx));
      for (double& v : e) v /= sum;
    }
    const double scale = a.normalize_by_length ? 1.0 / double(n) : 1.0;
    for (Index j = 0; j < n; ++j) {
      wts[b * a.padded_len + s0 + j] = e[j];
      const double* k = x.k.data() + (b * a.padded_len + s0 + j) * a.ld_keys;
      for (Index c = 0; c < d; ++c) pooled[b * d + c] += e[j] * scale * k[c];
    }
  }
  return pooled;
}

template <class T>
struct Result {
  std::vector<T> pooled, wts, saved, dq, dk;
  std::vector<T> gw1, gb1, ga1, gw2, gb2, ga2, gw3, gb3;
};

// Runs forward + backward of `fwd`/`bwd` on data x; gradients start from `seed` values.
template <class T, class F, class G>
Result<T> run(const Data<T>& x, F fwd, G bwd, bool* canaries_ok = nullptr) {
  const auto& a = x.a;
  const Index B = a.batch, L = a.padded_len, d = a.dim, hs = std::max<Index>(a.h2, 1);
  Result<T> r;
  r.pooled.assign(static_cast<std::size_t>(B * d + 8), T(-7));
  r.wts.assign(static_cast<std::size_t>(B * L + 8), T(-7));
  r.saved.assign(static_cast<std::size_t>(B * L * (a.h1 + a.h2) + 8), T(0));
  r.dq.assign(static_cast<std::size_t>(B * d + 8), T(-7));
  r.dk.assign(static_cast<std::size_t>(B * L * d + 8), T(-7));
  auto seed = [](std::vector<T>& v, Index n) {
    v.resize(static_cast<std::size_t>(n + 8));
    for (Index i = 0; i < n + 8; ++i) v[i] = T(0.01) * T(i % 7) - T(0.02);
  };
  seed(r.gw1, a.h1 * 4 * d), seed(r.gb1, a.h1), seed(r.ga1, a.h1), seed(r.gw2, hs * a.h1), seed(r.gb2, hs),
      seed(r.ga2, hs), seed(r.gw3, a.h2 > 0 ? a.h2 : a.h1), seed(r.gb3, 1);
  const auto before = r;
  std::vector<T> scratch(static_cast<std::size_t>(din_attention_scratch_size(a) + 16), T(-3));
  const Index ns = din_attention_scratch_size(a);
  fwd(a, x.weights(), x.q.data(), x.k.data(), x.start.data(), x.count.data(), r.pooled.data(), r.wts.data(),
      r.saved.data(), scratch.data());
  DinAttentionGrads<T> g{r.gw1.data(), r.gb1.data(), r.ga1.data(), r.gw2.data(), r.gb2.data(), r.ga2.data(),
                         r.gw3.data(), r.gb3.data()};
  bwd(a, x.weights(), x.q.data(), x.k.data(), x.start.data(), x.count.data(), r.wts.data(), r.saved.data(),
      x.dy.data(), r.dq.data(), r.dk.data(), g, scratch.data());
  if (canaries_ok) {
    bool ok = true;
    for (Index i = ns; i < ns + 16; ++i) ok = ok && scratch[i] == T(-3);
    auto tail = [&](const std::vector<T>& v, const std::vector<T>& v0) {
      for (std::size_t i = v.size() - 8; i < v.size(); ++i) ok = ok && v[i] == v0[i];
    };
    tail(r.pooled, before.pooled), tail(r.wts, before.wts), tail(r.dq, before.dq), tail(r.dk, before.dk);
    tail(r.gw1, before.gw1), tail(r.gb1, before.gb1), tail(r.gw2, before.gw2), tail(r.gw3, before.gw3);
    *canaries_ok = ok;
  }
  return r;
}

template <class T>
Result<T> run_ref(const Data<T>& x) {
  return run<T>(x, din_attention_forward_ref<T>, din_attention_backward_ref<T>);
}

double close_arrays(const std::vector<float>& got, const std::vector<double>& want, std::size_t n) {
  double mx = 0, err = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mx = std::max(mx, std::abs(want[i]));
    err = std::max(err, std::abs(double(got[i]) - want[i]));
  }
  return err / (3e-5 * mx + 1e-6);  // <= 1 passes
}

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {5, 3, 1, 1, 0, DinActivation::prelu, false, false},  {6, 7, 7, 5, 3, DinActivation::prelu, false, false},
      {5, 9, 17, 19, 0, DinActivation::dice, true, false},  {7, 13, 16, 33, 17, DinActivation::dice, false, true},
      {4, 20, 64, 80, 40, DinActivation::prelu, false, false}, {5, 11, 33, 8, 9, DinActivation::prelu, true, true},
      {3, 6, 64, 80, 40, DinActivation::dice, true, false}};
  return c;
}

}  // namespace

TEST_CASE("DIN attention ref: forward equals the literal concatenation, backward equals finite differences") {
  Rng rng(101);
  for (const Case& c : cases()) {
    if (c.d > 20) continue;  // finite differences on the small shapes
    INFO("B=" << c.B << " L=" << c.L << " d=" << c.d << " h1=" << c.h1 << " h2=" << c.h2 << " dice=" << int(c.act)
              << " softmax=" << c.softmax << " norm=" << c.norm);
    Data<double> x = make(c, rng);
    std::vector<double> lit_w;
    const std::vector<double> lit = literal_pooled(x, lit_w);
    const Result<double> r = run_ref(x);
    for (std::size_t i = 0; i < lit.size(); ++i) CHECK(std::abs(r.pooled[i] - lit[i]) <= 1e-12 * (1 + std::abs(lit[i])));
    for (std::size_t i = 0; i < lit_w.size(); ++i) CHECK(std::abs(r.wts[i] - lit_w[i]) <= 1e-12 * (1 + std::abs(lit_w[i])));
    // Loss = <dy, pooled>; check d loss / d theta for a sample of every input and weight.
    auto loss = [&](const Data<double>& y) {
      std::vector<double> w;
      const auto p = literal_pooled(y, w);
      double s = 0;
      for (std::size_t i = 0; i < p.size(); ++i) s += p[i] * y.dy[i];
      return s;
    };
    auto check = [&](std::vector<double> Data<double>::*field, const std::vector<double>& grad, double seed_sign,
                     const char* name) {
      const std::size_t n = (x.*field).size();
      for (std::size_t t = 0; t < 6; ++t) {
        const std::size_t i = static_cast<std::size_t>(rng.uniform() * double(n)) % n;
        Data<double> p = x, m = x;
        const double h = 1e-6;
        (p.*field)[i] += h;
        (m.*field)[i] -= h;
        const double fd = (loss(p) - loss(m)) / (2 * h);
        const double g = grad[i] - seed_sign * (0.01 * double(i % 7) - 0.02);  // minus run()'s seed
        INFO(name << "[" << i << "] analytic " << g << " fd " << fd);
        CHECK(std::abs(g - fd) <= 1e-5 * (1 + std::abs(fd)));
      }
    };
    check(&Data<double>::w1, r.gw1, 1, "w1");
    check(&Data<double>::b1, r.gb1, 1, "b1");
    check(&Data<double>::a1, r.ga1, 1, "act1");
    if (c.h2 > 0) {
      check(&Data<double>::w2, r.gw2, 1, "w2");
      check(&Data<double>::b2, r.gb2, 1, "b2");
      check(&Data<double>::a2, r.ga2, 1, "act2");
    }
    check(&Data<double>::w3, r.gw3, 1, "w3");
    check(&Data<double>::b3, r.gb3, 1, "b3");
    // Inputs: dq [B, d] (query has ld d + 2; map), dk [B*L, d] (keys have ld d + 1).
    for (int t = 0; t < 8; ++t) {
      const Index b = static_cast<Index>(rng.uniform() * double(c.B)) % c.B, col = static_cast<Index>(rng.uniform() * double(c.d)) % c.d;
      Data<double> p = x, m = x;
      p.q[b * x.a.ld_query + col] += 1e-6;
      m.q[b * x.a.ld_query + col] -= 1e-6;
      const double fd = (loss(p) - loss(m)) / 2e-6;
      CHECK(std::abs(r.dq[b * c.d + col] - fd) <= 1e-5 * (1 + std::abs(fd)));
      const Index row = static_cast<Index>(rng.uniform() * double(c.B * c.L)) % (c.B * c.L);
      p = x, m = x;
      p.k[row * x.a.ld_keys + col] += 1e-6;
      m.k[row * x.a.ld_keys + col] -= 1e-6;
      const double fdk = (loss(p) - loss(m)) / 2e-6;
      INFO("dk row " << row << " col " << col);
      CHECK(std::abs(r.dk[row * c.d + col] - fdk) <= 1e-5 * (1 + std::abs(fdk)));
    }
  }
}

TEST_CASE("DIN attention: every ISA matches the reference") {
  Rng rng(202);
  for (Isa isa : runnable_isas()) {
    const DinAttentionKernels& k = din_attention_kernels(isa);
    REQUIRE(k.isa == isa);
    for (const Case& c : cases()) {
      INFO(isa_name(isa) << " B=" << c.B << " L=" << c.L << " d=" << c.d << " h1=" << c.h1 << " h2=" << c.h2
                         << " dice=" << int(c.act) << " softmax=" << c.softmax << " norm=" << c.norm);
      const Data<double> xd = make(c, rng);
      const Data<float> xf = cast<float>(xd);
      const Result<double> want = run_ref(cast<double>(xf));
      bool canaries = false;
      const Result<float> got = run<float>(xf, k.f32_din_attention_forward, k.f32_din_attention_backward, &canaries);
      CHECK(canaries);
      const auto& a = xf.a;
      const std::size_t Bd = static_cast<std::size_t>(a.batch * a.dim), BL = static_cast<std::size_t>(a.batch * a.padded_len);
      CHECK(close_arrays(got.pooled, want.pooled, Bd) <= 1);
      CHECK(close_arrays(got.wts, want.wts, BL) <= 1);
      CHECK(close_arrays(got.dq, want.dq, Bd) <= 1);
      CHECK(close_arrays(got.dk, want.dk, BL * static_cast<std::size_t>(a.dim)) <= 1);
      CHECK(close_arrays(got.gw1, want.gw1, want.gw1.size()) <= 1);
      CHECK(close_arrays(got.gb1, want.gb1, want.gb1.size()) <= 1);
      CHECK(close_arrays(got.ga1, want.ga1, want.ga1.size()) <= 1);
      CHECK(close_arrays(got.gw2, want.gw2, want.gw2.size()) <= 1);
      CHECK(close_arrays(got.gb2, want.gb2, want.gb2.size()) <= 1);
      CHECK(close_arrays(got.ga2, want.ga2, want.ga2.size()) <= 1);
      CHECK(close_arrays(got.gw3, want.gw3, want.gw3.size()) <= 1);
      CHECK(close_arrays(got.gb3, want.gb3, want.gb3.size()) <= 1);
      // Saved pre-activations at valid positions.
      bool saved_ok = true;
      const Index sw = a.h1 + a.h2;
      for (Index b = 0; b < a.batch; ++b)
        for (Index j = 0; j < xf.count[b]; ++j)
          for (Index i = 0; i < sw; ++i) {
            const std::size_t at = static_cast<std::size_t>((b * a.padded_len + xf.start[b] + j) * sw + i);
            saved_ok = saved_ok && std::abs(got.saved[at] - want.saved[at]) <= 3e-5 * (1 + std::abs(want.saved[at]));
          }
      CHECK(saved_ok);
      // Inference: saved == nullptr gives the same pooled output.
      std::vector<float> pooled2(Bd), wts2(BL), scratch(static_cast<std::size_t>(din_attention_scratch_size(a)));
      k.f32_din_attention_forward(a, xf.weights(), xf.q.data(), xf.k.data(), xf.start.data(), xf.count.data(),
                                  pooled2.data(), wts2.data(), nullptr, scratch.data());
      bool same = true;
      for (std::size_t i = 0; i < Bd; ++i) same = same && pooled2[i] == got.pooled[i];
      CHECK(same);
    }
  }
}

// ---- the block path: DinAttention<float> runs the kernel; DinAttention<double> the layers ----

TEST_CASE("DinAttention<float> through the fused kernel equals the double layer-by-layer path") {
  using blocks::DinAttention;
  using blocks::DinAttentionOptions;
  using nn::ActivationKind;
  struct Opt {
    std::vector<Index> hidden;
    ActivationKind act;
    bool training, softmax, norm;
    Index max_len;
  };
  const std::vector<Opt> opts = {{{16, 8}, ActivationKind::prelu, true, false, false, 0},
                                 {{16, 8}, ActivationKind::prelu, false, true, true, 0},
                                 {{9}, ActivationKind::prelu, true, false, true, 3},
                                 {{12, 5}, ActivationKind::dice, false, false, false, 0},
                                 {{7}, ActivationKind::dice, false, true, false, 4}};
  Rng rng(404);
  for (const Opt& o : opts) {
    INFO("hidden " << o.hidden.size() << " act " << nn::activation_name(o.act) << " training " << o.training);
    const Index B = 4, L = 6, d = 9, ldy = 2 * d;
    DinAttentionOptions opt{.dim = d, .hidden = o.hidden, .activation = o.act, .softmax = o.softmax,
                            .normalize_by_length = o.norm, .max_len = o.max_len};
    ParameterArena af(1);
    ParameterArenaT<double> ad(1);
    DinAttention<float> df(af, "din", opt);
    DinAttention<double> dd(ad, "din", opt);
    auto pf = af.parameters().begin();
    for (auto& p : ad.parameters()) {
      for (Index i = 0; i < p.numel(); ++i) {
        const float v = p.trainable ? float(0.5 * rng.normal()) : float(p.name.find("var") != std::string::npos ? 0.5 + rng.uniform() : 0.3 * rng.normal());
        pf->value[i] = v;
        p.value[i] = v;
      }
      ++pf;
    }
    TensorT<float> q(Shape{B, d}), k(Shape{B * L, d}), dy(Shape{B, ldy});
    for (Index i = 0; i < q.numel(); ++i) q.data()[i] = float(rng.normal());
    for (Index i = 0; i < k.numel(); ++i) k.data()[i] = float(rng.normal());
    for (Index i = 0; i < dy.numel(); ++i) dy.data()[i] = float(rng.normal());
    TensorT<double> qd(Shape{B, d}), kd(Shape{B * L, d}), dyd(Shape{B, d});
    for (Index i = 0; i < q.numel(); ++i) qd.data()[i] = q.data()[i];
    for (Index i = 0; i < k.numel(); ++i) kd.data()[i] = k.data()[i];
    for (Index b = 0; b < B; ++b)
      for (Index c = 0; c < d; ++c) dyd.data()[b * d + c] = dy.data()[b * ldy + d + c];
    std::vector<std::int64_t> len{6, 1, 0, 5};
    Context ctx{o.training, nullptr};
    DinAttention<float>::Workspace wf;
    DinAttention<double>::Workspace wd;
    auto yf = df.forward(q.matrix(), k.matrix(), len, wf, ctx);
    auto yd = dd.forward(qd.matrix(), kd.matrix(), len, wd, ctx);
    CHECK(wf.kernel);
    CHECK(!wd.kernel);
    // dy is a strided column block (as MultiDin passes it).
    auto gf = df.backward(dy.matrix().col_block(d, d), wf);
    auto gd = dd.backward(dyd.matrix(), wd);
    auto cmp = [](auto got, auto want) {
      double mx = 0, err = 0;
      for (Index r = 0; r < want.rows; ++r)
        for (Index c = 0; c < want.cols; ++c) {
          mx = std::max(mx, std::abs(double(want(r, c))));
          err = std::max(err, std::abs(double(got(r, c)) - double(want(r, c))));
        }
      return err <= 3e-5 * mx + 1e-6;
    };
    CHECK(cmp(yf, yd));
    CHECK(cmp(df.weights(wf), dd.weights(wd)));
    CHECK(cmp(gf.query, gd.query));
    CHECK(cmp(gf.keys, gd.keys));
    auto pg = af.parameters().begin();
    for (auto& p : ad.parameters()) {
      INFO(p.name);
      if (p.trainable) CHECK(cmp(pg->grad_matrix(), p.grad_matrix()));
      ++pg;
    }
  }
}
