#include "mtrank/nn/attention.hpp"

#include <cmath>

#include "fixtures/sequence/seq_testing.hpp"

using namespace mtrank;
using namespace mtrank::nn;

namespace {
void randomize(ParameterArenaT<double>& arena, Rng& rng, double s = 0.4) {
  for (auto& p : arena.parameters())
    for (Index i = 0; i < p.numel(); ++i) p.value[i] = s * rng.normal();
}

// Literal per-sample, per-head evaluation of multi-head attention (the oracle).
std::vector<double> naive_mha(const ParameterArenaT<double>& arena, const std::string& prefix, Index H,
                              MatrixView<const double> q, Index Lq, const std::vector<std::int64_t>& qlen,
                              MatrixView<const double> m, Index Lk, const std::vector<std::int64_t>& klen) {
  const Index d = q.cols, dh = d / H, B = static_cast<Index>(qlen.size());
  const double* W = arena.find(prefix + ".in_proj_weight")->value;
  const double* bi = arena.find(prefix + ".in_proj_bias")->value;
  const double* Wo = arena.find(prefix + ".out_proj.weight")->value;
  const double* bo = arena.find(prefix + ".out_proj.bias")->value;
  auto proj = [&](const double* x, Index block, Index o) {
    double s = bi[block * d + o];
    for (Index c = 0; c < d; ++c) s += W[(block * d + o) * d + c] * x[c];
    return s;
  };
  std::vector<double> out(static_cast<std::size_t>(B * Lq * d), 0.0);
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < qlen[b]; ++i) {
      std::vector<double> ctx(d, 0.0);
      const double* qi = q.row(b * Lq + i);
      for (Index h = 0; h < H; ++h) {
        std::vector<double> s(static_cast<std::size_t>(klen[b]));
        double mx = -1e300;
        for (Index j = 0; j < klen[b]; ++j) {
          double acc = 0;
          for (Index e = 0; e < dh; ++e) acc += proj(qi, 0, h * dh + e) * proj(m.row(b * Lk + j), 1, h * dh + e);
          s[j] = acc / std::sqrt(double(dh));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (auto& v : s) z += (v = std::exp(v - mx));
        for (Index j = 0; j < klen[b]; ++j)
          for (Index e = 0; e < dh; ++e) ctx[h * dh + e] += s[j] / z * proj(m.row(b * Lk + j), 2, h * dh + e);
      }
      for (Index o = 0; o < d; ++o) {
        double acc = bo[o];
        for (Index c = 0; c < d; ++c) acc += Wo[o * d + c] * ctx[c];
        out[(b * Lq + i) * d + o] = acc;
      }
    }
  return out;
}
}  // namespace

TEST_CASE("MultiHeadAttention: PyTorch parameter names and shapes") {
  ParameterArena arena;
  MultiHeadAttention<float> mha(arena, "attn", {.embed_dim = 8, .num_heads = 2});
  CHECK(arena.at("attn.in_proj_weight").shape == Shape{24, 8});
  CHECK(arena.at("attn.in_proj_bias").shape == Shape{24});
  CHECK(arena.at("attn.out_proj.weight").shape == Shape{8, 8});
  CHECK(arena.at("attn.out_proj.bias").shape == Shape{8});
  CHECK_THROWS_WITH(MultiHeadAttention<float>(arena, "bad", {.embed_dim = 6, .num_heads = 4}),
                    Catch::Contains("divisible"));
}

TEST_CASE("MultiHeadAttention matches a literal evaluation with padding masks") {
  ParameterArenaT<double> arena(5);
  MultiHeadAttention<double> mha(arena, "a", {.embed_dim = 6, .num_heads = 3});
  Rng rng(6);
  randomize(arena, rng);
  const Index B = 3, Lq = 2, Lk = 4, d = 6;
  std::vector<std::int64_t> qlen{2, 1, 0}, klen{4, 2, 3};
  auto q = seqtest::random_padded(B, Lq, d, rng);
  auto m = seqtest::random_padded(B, Lk, d, rng);
  MultiHeadAttention<double>::Workspace ws;
  auto y = mha.forward(q.matrix(), qlen, m.matrix(), klen, ws);
  auto ref = naive_mha(arena, "a", 3, q.matrix(), Lq, qlen, m.matrix(), Lk, klen);
  for (Index r = 0; r < B * Lq; ++r)
    for (Index c = 0; c < d; ++c) CHECK(y(r, c) == Approx(ref[r * d + c]).margin(1e-12));
}

TEST_CASE("MultiHeadAttention gradients (masks, an empty key sequence, an empty query)") {
  ParameterArenaT<double> arena(7);
  MultiHeadAttention<double> mha(arena, "a", {.embed_dim = 4, .num_heads = 2});
  Rng rng(8);
  randomize(arena, rng);
  const Index B = 4, Lq = 3, Lk = 3, d = 4;
  std::vector<std::int64_t> qlen{3, 1, 2, 0}, klen{2, 3, 0, 1};
  auto q = seqtest::random_padded(B, Lq, d, rng);
  auto m = seqtest::random_padded(B, Lk, d, rng);
  TensorT<double> dq(Shape{B * Lq, d}), dm(Shape{B * Lk, d});
  MultiHeadAttention<double>::Workspace ws;
  auto rep = seqtest::check_block(
      arena, [&] { return mha.forward(q.matrix(), qlen, m.matrix(), klen, ws); },
      [&](MatrixView<const double> dy) {
        auto g = mha.backward(dy, ws);
        seqtest::store(g.query, dq);
        seqtest::store(g.memory, dm);
      },
      {{"query", q.data(), dq.data(), q.numel()}, {"memory", m.data(), dm.data(), m.numel()}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-6);
  // A query whose memory is empty sees nothing: out = out_proj.bias, no NaN.
  auto y = mha.forward(q.matrix(), qlen, m.matrix(), klen, ws);
  for (Index i = 0; i < 2; ++i)
    for (Index c = 0; c < d; ++c) CHECK(y(2 * Lq + i, c) == arena.at("a.out_proj.bias").value[c]);
}

TEST_CASE("TargetAttention: single query, empty sequence gives zeros, gradient check") {
  ParameterArenaT<double> arena(9);
  TargetAttention<double> ta(arena, "ta", {.embed_dim = 6, .num_heads = 2});
  Rng rng(10);
  randomize(arena, rng);
  const Index B = 3, L = 4, d = 6;
  std::vector<std::int64_t> len{4, 0, 2};
  auto cand = testing::random_tensor<double>(Shape{B, d}, rng);
  auto seq = seqtest::random_padded(B, L, d, rng);
  TargetAttention<double>::Workspace ws;
  auto y = ta.forward(cand.matrix(), seq.matrix(), len, ws);
  REQUIRE(y.rows == B);
  for (Index c = 0; c < d; ++c) CHECK(y(1, c) == 0.0);
  auto ref = naive_mha(arena, "ta", 2, cand.matrix(), 1, {1, 0, 1}, seq.matrix(), L, len);
  for (Index r = 0; r < B; ++r)
    for (Index c = 0; c < d; ++c) CHECK(y(r, c) == Approx(ref[r * d + c]).margin(1e-12));
  TensorT<double> dc(Shape{B, d}), ds(Shape{B * L, d});
  auto rep = seqtest::check_block(
      arena, [&] { return ta.forward(cand.matrix(), seq.matrix(), len, ws); },
      [&](MatrixView<const double> dy) {
        auto g = ta.backward(dy, ws);
        seqtest::store(g.candidate, dc);
        seqtest::store(g.sequence, ds);
      },
      {{"candidate", cand.data(), dc.data(), cand.numel()}, {"sequence", seq.data(), ds.data(), seq.numel()}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-6);
  for (Index c = 0; c < d; ++c) CHECK(dc[1 * d + c] == 0.0);
}

TEST_CASE("TargetAttention: max_len truncates to the most recent items or rejects") {
  ParameterArenaT<double> arena(11);
  TargetAttention<double> ta(arena, "ta", {.embed_dim = 4, .num_heads = 1, .max_len = 2});
  Rng rng(12);
  randomize(arena, rng);
  auto cand = testing::random_tensor<double>(Shape{1, 4}, rng);
  auto seq = seqtest::random_padded(1, 5, 4, rng);
  std::vector<std::int64_t> len{4};
  TargetAttention<double>::Workspace ws, ws2;
  auto y = ta.forward(cand.matrix(), seq.matrix(), len, ws);
  // Same as the last two valid items (positions 2, 3) given as a length-2 sequence.
  TensorT<double> tail(Shape{2, 4});
  for (Index i = 0; i < 8; ++i) tail[i] = seq[8 + i];
  std::vector<std::int64_t> len2{2};
  auto y2 = ta.forward(cand.matrix(), tail.matrix(), len2, ws2);
  CHECK(seqtest::max_diff(y, y2) < 1e-14);
  ParameterArenaT<double> arena2(11);
  TargetAttention<double> strict(arena2, "ta", {.embed_dim = 4, .num_heads = 1, .max_len = 2,
                                                .overflow = Overflow::reject});
  CHECK_THROWS_WITH(strict.forward(cand.matrix(), seq.matrix(), len, ws), Catch::Contains("lengths[0] = 4 exceeds max_len 2"));
}

TEST_CASE("Sequence layout validation names the field") {
  SeqWindows w;
  std::vector<std::int64_t> len{2, 3};
  CHECK_THROWS_WITH(make_windows(len, 3, 6, 0, Overflow::truncate, "x", w), Catch::Contains("x lengths: size 2 != batch 3"));
  CHECK_THROWS_WITH(make_windows(len, 2, 7, 0, Overflow::truncate, "x", w), Catch::Contains("not batch"));
  CHECK_THROWS_WITH(make_windows(len, 2, 4, 0, Overflow::truncate, "x", w),
                    Catch::Contains("lengths[1] = 3 exceeds the padded length 2"));
  std::vector<std::int64_t> neg{1, -1};
  CHECK_THROWS_WITH(make_windows(neg, 2, 6, 0, Overflow::truncate, "x", w), Catch::Contains("lengths[1] = -1"));
  make_windows(len, 2, 8, 2, Overflow::truncate, "x", w);
  CHECK(w.start == std::vector<Index>{0, 1});
  CHECK(w.count == std::vector<Index>{2, 2});

  // Ragged -> padded.
  Rng rng(1);
  auto vals = testing::random_tensor<double>(Shape{5, 2}, rng);
  std::vector<std::int64_t> off{0, 3, 3, 5}, lengths;
  TensorT<double> out;
  pad_ragged<double>(vals.matrix(), off, 0, Overflow::truncate, out, lengths);
  CHECK(lengths == std::vector<std::int64_t>{3, 0, 2});
  CHECK(out.shape() == Shape{9, 2});
  CHECK(out[2 * 2 + 1] == vals[2 * 2 + 1]);
  CHECK(out[6 * 2] == vals[3 * 2]);
  CHECK(out[8 * 2] == 0.0);
  pad_ragged<double>(vals.matrix(), off, 2, Overflow::truncate, out, lengths);  // keeps the most recent 2
  CHECK(lengths == std::vector<std::int64_t>{2, 0, 2});
  CHECK(out[0] == vals[1 * 2]);
  CHECK_THROWS_WITH(pad_ragged<double>(vals.matrix(), off, 2, Overflow::reject, out, lengths),
                    Catch::Contains("sample 0 has 3 items"));
  std::vector<std::int64_t> bad_end{0, 3, 3, 4};
  CHECK_THROWS_WITH(pad_ragged<double>(vals.matrix(), bad_end, 0, Overflow::truncate, out, lengths),
                    Catch::Contains("offsets[3] = 4 != values rows 5"));
  std::vector<std::int64_t> bad_order{0, 3, 2, 5};
  CHECK_THROWS_WITH(pad_ragged<double>(vals.matrix(), bad_order, 0, Overflow::truncate, out, lengths),
                    Catch::Contains("offsets[2] = 2 < offsets[1] = 3"));

  CHECK(time_gap_bucket(0, 10) == 0);
  CHECK(time_gap_bucket(1, 10) == 1);
  CHECK(time_gap_bucket(3, 10) == 2);
  CHECK(time_gap_bucket(4, 10) == 3);
  CHECK(time_gap_bucket(1 << 20, 10) == 9);
  CHECK_THROWS_WITH(time_gap_bucket(-5, 10), Catch::Contains("negative"));
}
