#include "mtrank/nn/gru.hpp"

#include <cmath>

#include "fixtures/sequence/seq_testing.hpp"

using namespace mtrank;
using namespace mtrank::nn;

namespace {
double sigm(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

TEST_CASE("Gru: PyTorch names and the gate equations (r, z, n order)") {
  ParameterArenaT<double> arena(1);
  Gru<double> gru(arena, "gru", {.input = 3, .hidden = 2});
  CHECK(arena.at("gru.weight_ih_l0").shape == Shape{6, 3});
  CHECK(arena.at("gru.weight_hh_l0").shape == Shape{6, 2});
  CHECK(arena.at("gru.bias_ih_l0").shape == Shape{6});
  CHECK(arena.at("gru.bias_hh_l0").shape == Shape{6});
  Rng rng(2);
  const Index B = 2, L = 3;
  auto x = seqtest::random_padded(B, L, 3, rng);
  std::vector<std::int64_t> len{3, 2};
  Gru<double>::Workspace ws;
  auto st = gru.forward(x.matrix(), len, ws);
  const double* Wi = arena.at("gru.weight_ih_l0").value;
  const double* Wh = arena.at("gru.weight_hh_l0").value;
  const double* bi = arena.at("gru.bias_ih_l0").value;
  const double* bh = arena.at("gru.bias_hh_l0").value;
  for (Index b = 0; b < B; ++b) {
    double h[2] = {0, 0};
    for (Index t = 0; t < len[b]; ++t) {
      const double* xt = x.data() + (b * L + t) * 3;
      double gi[6], gh[6];
      for (int o = 0; o < 6; ++o) {
        gi[o] = bi[o];
        gh[o] = bh[o];
        for (int c = 0; c < 3; ++c) gi[o] += Wi[o * 3 + c] * xt[c];
        for (int c = 0; c < 2; ++c) gh[o] += Wh[o * 2 + c] * h[c];
      }
      double hn[2];
      for (int j = 0; j < 2; ++j) {
        const double r = sigm(gi[j] + gh[j]), z = sigm(gi[2 + j] + gh[2 + j]);
        const double n = std::tanh(gi[4 + j] + r * gh[4 + j]);
        hn[j] = (1 - z) * n + z * h[j];
      }
      h[0] = hn[0];
      h[1] = hn[1];
      CHECK(st(b * L + t, 0) == Approx(h[0]).margin(1e-14));
      CHECK(st(b * L + t, 1) == Approx(h[1]).margin(1e-14));
    }
    CHECK(gru.last_state(ws)(b, 0) == Approx(h[0]).margin(1e-14));
  }
  CHECK(st(1 * L + 2, 0) == 0.0);  // padding
}

TEST_CASE("Gru BPTT gradients match finite differences (variable lengths, empty sequence)") {
  for (int mode = 0; mode < 3; ++mode) {  // 0: states, 1: last, 2: both
    ParameterArenaT<double> arena(3);
    Gru<double> gru(arena, "gru", {.input = 3, .hidden = 4});
    Rng rng(4);
    const Index B = 4, L = 5;
    auto x = seqtest::random_padded(B, L, 3, rng);
    std::vector<std::int64_t> len{5, 2, 0, 3};
    TensorT<double> dx(Shape{B * L, 3});
    Gru<double>::Workspace ws;
    TensorT<double> both;
    auto rep = seqtest::check_block(
        arena,
        [&]() -> MatrixView<const double> {
          auto st = gru.forward(x.matrix(), len, ws);
          if (mode == 0) return st;
          if (mode == 1) return gru.last_state(ws);
          both.resize(Shape{B * L + B, 4});
          copy(st, both.matrix().row_block(0, B * L));
          copy(gru.last_state(ws), both.matrix().row_block(B * L, B));
          return both.matrix();
        },
        [&](MatrixView<const double> dy) {
          MatrixView<const double> ds = mode == 1 ? MatrixView<const double>{} : dy.row_block(0, B * L);
          MatrixView<const double> dl =
              mode == 0 ? MatrixView<const double>{} : dy.row_block(mode == 1 ? 0 : B * L, B);
          seqtest::store(gru.backward(ds, dl, ws), dx);
        },
        {{"x", x.data(), dx.data(), x.numel()}});
    INFO("mode " << mode << " " << rep.worst);
    CHECK(rep.max_error < 1e-6);
    // Padding and the empty sample get exactly zero gradient.
    for (Index c = 0; c < 3; ++c) {
      CHECK(dx[(1 * L + 3) * 3 + c] == 0.0);
      CHECK(dx[(2 * L + 0) * 3 + c] == 0.0);
    }
    for (Index c = 0; c < 4; ++c) CHECK(gru.last_state(ws)(2, c) == 0.0);
  }
}

TEST_CASE("Gru max_len: truncation keeps the most recent items, reject throws") {
  ParameterArenaT<double> arena(5);
  Gru<double> gru(arena, "g", {.input = 2, .hidden = 3, .max_len = 2});
  Rng rng(6);
  auto x = seqtest::random_padded(1, 4, 2, rng);
  std::vector<std::int64_t> len{3};
  Gru<double>::Workspace ws, ws2;
  auto st = gru.forward(x.matrix(), len, ws);
  TensorT<double> tail(Shape{2, 2});
  for (Index i = 0; i < 4; ++i) tail[i] = x[2 + i];  // positions 1, 2
  std::vector<std::int64_t> len2{2};
  gru.forward(tail.matrix(), len2, ws2);
  CHECK(seqtest::max_diff(gru.last_state(ws), gru.last_state(ws2)) < 1e-15);
  for (Index c = 0; c < 3; ++c) CHECK(st(0, c) == 0.0);  // before the window
  ParameterArenaT<double> arena2(5);
  Gru<double> strict(arena2, "g", {.input = 2, .hidden = 3, .max_len = 2, .overflow = Overflow::reject});
  CHECK_THROWS_WITH(strict.forward(x.matrix(), len, ws), Catch::Contains("exceeds max_len 2"));
  TensorT<double> bad(Shape{4, 3});
  CHECK_THROWS_WITH(gru.forward(bad.matrix(), len, ws), Catch::Contains("expected input size 2"));
  std::vector<std::int64_t> too_long{5};
  CHECK_THROWS_WITH(gru.forward(x.matrix(), too_long, ws), Catch::Contains("lengths[0] = 5 exceeds the padded length 4"));
}
