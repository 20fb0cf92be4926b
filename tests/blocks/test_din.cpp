#include "mtrank/blocks/din.hpp"

#include "fixtures/sequence/seq_testing.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using nn::ActivationKind;

namespace {
void randomize(ParameterArenaT<double>& arena, Rng& rng, double s = 0.5) {
  for (auto& p : arena.parameters())
    if (p.trainable)
      for (Index i = 0; i < p.numel(); ++i) p.value[i] = s * rng.normal();
}

struct DinRun {
  TensorT<double> y, dq, dk;
  std::vector<double> grads;
};

// Forward + backward with a fixed dy; returns outputs, input grads and all parameter grads.
DinRun run(DinAttentionOptions opt, bool training, std::uint64_t seed = 3) {
  ParameterArenaT<double> arena(1);
  DinAttention<double> din(arena, "din", opt);
  Rng rng(seed);
  randomize(arena, rng);
  const Index B = 4, L = 5, d = opt.dim;
  auto q = testing::random_tensor<double>(Shape{B, d}, rng);
  auto k = seqtest::random_padded(B, L, d, rng);
  std::vector<std::int64_t> len{5, 2, 0, 3};
  auto dy = testing::random_tensor<double>(Shape{B, d}, rng);
  DinAttention<double>::Workspace ws;
  Context ctx{training, nullptr};
  DinRun out;
  out.y.resize(Shape{B, d});
  seqtest::store(din.forward(q.matrix(), k.matrix(), len, ws, ctx), out.y);
  auto g = din.backward(dy.matrix(), ws);
  out.dq.resize(Shape{B, d});
  out.dk.resize(Shape{B * L, d});
  seqtest::store(g.query, out.dq);
  seqtest::store(g.keys, out.dk);
  for (auto& p : arena.parameters())
    if (p.trainable) out.grads.insert(out.grads.end(), p.grad, p.grad + p.numel());
  return out;
}
}  // namespace

TEST_CASE("DinAttention: parameter names load a PyTorch module with a [h1, 4d] first Linear") {
  ParameterArena arena;
  DinAttention<float> din(arena, "din", {.dim = 6});
  CHECK(arena.at("din.layers.0.weight").shape == Shape{80, 24});
  CHECK(arena.at("din.layers.0.bias").shape == Shape{80});
  CHECK(arena.at("din.acts.0.weight").shape == Shape{80});
  CHECK(arena.at("din.layers.1.weight").shape == Shape{40, 80});
  CHECK(arena.at("din.acts.1.weight").shape == Shape{40});
  CHECK(arena.at("din.layers.2.weight").shape == Shape{1, 40});
  CHECK(arena.find("din.acts.2.weight") == nullptr);
  ParameterArena a2;
  DinAttention<float> dice(a2, "d", {.dim = 4, .hidden = {8}, .activation = ActivationKind::dice});
  CHECK(a2.at("d.acts.0.alpha").shape == Shape{8});
  CHECK(!a2.at("d.acts.0.running_var").trainable);
}

TEST_CASE("DinAttention: the fused first layer equals the literal concatenation (outputs and gradients)") {
  for (auto act : {ActivationKind::prelu, ActivationKind::dice}) {
    for (bool softmax : {false, true}) {
      for (bool norm : {false, true}) {
        for (bool training : {false, true}) {
          INFO(nn::activation_name(act) << " softmax " << softmax << " norm " << norm << " training " << training);
          DinAttentionOptions o{.dim = 3, .hidden = {7, 4}, .activation = act, .softmax = softmax,
                                .normalize_by_length = norm};
          o.fused = true;
          auto a = run(o, training);
          o.fused = false;
          auto b = run(o, training);
          CHECK(seqtest::max_diff(a.y.matrix(), b.y.matrix()) < 1e-12);
          CHECK(seqtest::max_diff(a.dq.matrix(), b.dq.matrix()) < 1e-12);
          CHECK(seqtest::max_diff(a.dk.matrix(), b.dk.matrix()) < 1e-12);
          REQUIRE(a.grads.size() == b.grads.size());
          double mx = 0;
          for (std::size_t i = 0; i < a.grads.size(); ++i) mx = std::max(mx, std::abs(a.grads[i] - b.grads[i]));
          CHECK(mx < 1e-12);
          CHECK(seqtest::max_abs(a.y.matrix()) > 1e-3);
        }
      }
    }
  }
  // float: both paths agree too.
  ParameterArena arena(2);
  DinAttention<float> f1(arena, "a", {.dim = 8, .hidden = {16, 8}});
  Rng rng(9);
  auto q = testing::random_tensor<float>(Shape{3, 8}, rng);
  auto k = testing::random_tensor<float>(Shape{3 * 6, 8}, rng);
  std::vector<std::int64_t> len{6, 1, 4};
  ParameterArena arena2(2);
  DinAttention<float> f2(arena2, "a", {.dim = 8, .hidden = {16, 8}, .fused = false});
  DinAttention<float>::Workspace w1, w2;
  auto y1 = f1.forward(q.matrix(), k.matrix(), len, w1);
  auto y2 = f2.forward(q.matrix(), k.matrix(), len, w2);
  CHECK(seqtest::max_diff(y1, y2) < 1e-5 * (1 + seqtest::max_abs(y2)));
}

TEST_CASE("DinAttention gradients match finite differences (masks, empty sequence, every option)") {
  for (auto act : {ActivationKind::prelu, ActivationKind::dice}) {
    for (bool softmax : {false, true}) {
      for (bool norm : {false, true}) {
        for (bool fused : {true, false}) {
          for (bool training : {false, true}) {
            if (act == ActivationKind::prelu && training) continue;
            INFO(nn::activation_name(act) << " softmax " << softmax << " norm " << norm << " fused " << fused
                                          << " training " << training);
            ParameterArenaT<double> arena(1);
            DinAttention<double> din(arena, "din", {.dim = 3, .hidden = {5, 3}, .activation = act,
                                                    .softmax = softmax, .normalize_by_length = norm, .fused = fused});
            Rng rng(5);
            randomize(arena, rng);
            const Index B = 4, L = 4, d = 3;
            auto q = testing::random_tensor<double>(Shape{B, d}, rng);
            auto k = seqtest::random_padded(B, L, d, rng);
            std::vector<std::int64_t> len{4, 0, 1, 3};
            TensorT<double> dq(Shape{B, d}), dk(Shape{B * L, d});
            DinAttention<double>::Workspace ws;
            Context ctx{training, nullptr};
            auto rep = seqtest::check_block(
                arena, [&] { return din.forward(q.matrix(), k.matrix(), len, ws, ctx); },
                [&](MatrixView<const double> dy) {
                  auto g = din.backward(dy, ws);
                  seqtest::store(g.query, dq);
                  seqtest::store(g.keys, dk);
                },
                {{"query", q.data(), dq.data(), q.numel()}, {"keys", k.data(), dk.data(), k.numel()}});
            INFO(rep.worst);
            CHECK(rep.max_error < 1e-6);
            // Empty sample: zero output, zero gradients.
            auto y = din.forward(q.matrix(), k.matrix(), len, ws, ctx);
            for (Index c = 0; c < d; ++c) {
              CHECK(y(1, c) == 0.0);
              CHECK(dq[1 * d + c] == 0.0);
              CHECK(dk[(1 * L) * d + c] == 0.0);
              CHECK(dk[(2 * L + 1) * d + c] == 0.0);  // padding
            }
          }
        }
      }
    }
  }
}

TEST_CASE("DinAttention: raw weights, softmax and length normalisation semantics") {
  ParameterArenaT<double> arena(1);
  DinAttention<double> raw(arena, "a", {.dim = 2, .hidden = {3}});
  ParameterArenaT<double> arena2(1);
  DinAttention<double> norm(arena2, "a", {.dim = 2, .hidden = {3}, .normalize_by_length = true});
  ParameterArenaT<double> arena3(1);
  DinAttention<double> soft(arena3, "a", {.dim = 2, .hidden = {3}, .softmax = true});
  Rng rng(3);
  auto q = testing::random_tensor<double>(Shape{1, 2}, rng);
  auto k = seqtest::random_padded(1, 4, 2, rng);
  std::vector<std::int64_t> len{3};
  DinAttention<double>::Workspace w1, w2, w3;
  auto y1 = raw.forward(q.matrix(), k.matrix(), len, w1);
  auto y2 = norm.forward(q.matrix(), k.matrix(), len, w2);
  soft.forward(q.matrix(), k.matrix(), len, w3);
  for (Index c = 0; c < 2; ++c) CHECK(y2(0, c) == Approx(y1(0, c) / 3.0).margin(1e-14));
  auto a = soft.weights(w3);
  CHECK(a(0, 0) + a(0, 1) + a(0, 2) == Approx(1.0));
  CHECK(a(0, 3) == 0.0);
  // Manual: y = sum_j a_j k_j with raw weights.
  auto ar = raw.weights(w1);
  for (Index c = 0; c < 2; ++c) {
    double s = 0;
    for (Index j = 0; j < 3; ++j) s += ar(0, j) * k[j * 2 + c];
    CHECK(y1(0, c) == Approx(s).margin(1e-14));
  }
  // Padding content is ignored.
  auto k2 = k;
  for (Index c = 0; c < 2; ++c) k2[3 * 2 + c] = 1e6;
  DinAttention<double>::Workspace w4;
  auto y4 = raw.forward(q.matrix(), k2.matrix(), len, w4);
  CHECK(seqtest::max_diff(y1, y4) == 0.0);
}

TEST_CASE("DinAttention bad input and max_len") {
  ParameterArenaT<double> arena(1);
  DinAttention<double> din(arena, "din", {.dim = 2, .hidden = {3}, .max_len = 2});
  Rng rng(3);
  auto q = testing::random_tensor<double>(Shape{2, 2}, rng);
  auto k = seqtest::random_padded(2, 3, 2, rng);
  DinAttention<double>::Workspace ws, ws2;
  std::vector<std::int64_t> one{1};
  CHECK_THROWS_WITH(din.forward(q.matrix(), k.matrix(), one, ws), Catch::Contains("query: 2 rows != lengths size 1"));
  std::vector<std::int64_t> big{4, 1};
  CHECK_THROWS_WITH(din.forward(q.matrix(), k.matrix(), big, ws), Catch::Contains("lengths[0] = 4 exceeds the padded length 3"));
  TensorT<double> k5(Shape{5, 2});
  std::vector<std::int64_t> ok{1, 1};
  CHECK_THROWS_WITH(din.forward(q.matrix(), k5.matrix(), ok, ws), Catch::Contains("keys values: 5 rows is not batch"));
  TensorT<double> k3(Shape{6, 3});
  CHECK_THROWS_WITH(din.forward(q.matrix(), k3.matrix(), ok, ws), Catch::Contains("keys: 3 columns"));
  // max_len 2 truncates sample 0 (3 items) to its most recent 2.
  std::vector<std::int64_t> len{3, 1};
  auto y = din.forward(q.matrix(), k.matrix(), len, ws);
  TensorT<double> kt(Shape{4, 2});
  for (Index i = 0; i < 4; ++i) kt[i] = k[2 + i];          // sample 0 positions 1, 2
  for (Index i = 0; i < 2; ++i) kt[4 + i] = k[6 + i];      // sample 1 position 0
  std::vector<std::int64_t> len2{2, 1};
  auto y2 = din.forward(q.matrix(), kt.matrix(), len2, ws2);
  CHECK(seqtest::max_diff(y, y2) < 1e-14);
  ParameterArenaT<double> arena2(1);
  DinAttention<double> strict(arena2, "din", {.dim = 2, .hidden = {3}, .max_len = 2, .overflow = nn::Overflow::reject});
  CHECK_THROWS_WITH(strict.forward(q.matrix(), k.matrix(), len, ws), Catch::Contains("exceeds max_len 2"));
}
