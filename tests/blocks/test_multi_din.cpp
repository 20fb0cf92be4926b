#include "mtrank/blocks/multi_din.hpp"

#include "fixtures/sequence/seq_testing.hpp"

using namespace mtrank;
using namespace mtrank::blocks;

TEST_CASE("MultiDin concatenates one DIN unit per behaviour sequence") {
  ParameterArenaT<double> arena(1);
  MultiDinOptions opt{.dim = 3,
                      .sequences = {{"click", {.hidden = {4}}},
                                    {"long_dwell", {.hidden = {5, 2}, .softmax = true}},
                                    {"interaction", {.hidden = {3}, .normalize_by_length = true}}}};
  MultiDin<double> md(arena, "multi_din", opt);
  CHECK(arena.at("multi_din.click.layers.0.weight").shape == Shape{4, 12});
  CHECK(arena.at("multi_din.long_dwell.layers.2.weight").shape == Shape{1, 2});
  CHECK(md.out_features() == 9);
  Rng rng(2);
  for (auto& p : arena.parameters())
    for (Index i = 0; i < p.numel(); ++i) p.value[i] = 0.5 * rng.normal();
  const Index B = 3, d = 3;
  auto q = testing::random_tensor<double>(Shape{B, d}, rng);
  auto s0 = seqtest::random_padded(B, 4, d, rng);
  auto s1 = seqtest::random_padded(B, 2, d, rng);
  auto s2 = seqtest::random_padded(B, 5, d, rng);
  std::vector<std::int64_t> l0{4, 0, 2}, l1{1, 2, 0}, l2{0, 0, 5};
  std::vector<SequenceInput<double>> in{{s0.matrix(), l0}, {s1.matrix(), l1}, {s2.matrix(), l2}};
  MultiDin<double>::Workspace ws;
  auto y = md.forward(q.matrix(), in, ws);
  // Each block equals its unit run alone.
  std::vector<const TensorT<double>*> seqs{&s0, &s1, &s2};
  std::vector<std::vector<std::int64_t>*> lens{&l0, &l1, &l2};
  for (std::size_t s = 0; s < 3; ++s) {
    DinAttention<double>::Workspace uw;
    auto ys = md.unit(s).forward(q.matrix(), seqs[s]->matrix(), *lens[s], uw);
    CHECK(seqtest::max_diff(y.col_block(Index(s) * d, d), ys) == 0.0);
  }
  TensorT<double> dq(Shape{B, d}), d0(Shape{B * 4, d}), d1(Shape{B * 2, d}), d2(Shape{B * 5, d});
  auto rep = seqtest::check_block(
      arena, [&] { return md.forward(q.matrix(), in, ws); },
      [&](MatrixView<const double> dy) {
        auto g = md.backward(dy, ws);
        seqtest::store(g.query, dq);
        seqtest::store(g.sequences[0], d0);
        seqtest::store(g.sequences[1], d1);
        seqtest::store(g.sequences[2], d2);
      },
      {{"query", q.data(), dq.data(), q.numel()},
       {"click", s0.data(), d0.data(), s0.numel()},
       {"long_dwell", s1.data(), d1.data(), s1.numel()},
       {"interaction", s2.data(), d2.data(), s2.numel()}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-6);
  std::vector<SequenceInput<double>> two{{s0.matrix(), l0}, {s1.matrix(), l1}};
  CHECK_THROWS_WITH(md.forward(q.matrix(), two, ws), Catch::Contains("got 2 sequences, expected 3"));
  ParameterArenaT<double> a2;
  CHECK_THROWS_WITH(MultiDin<double>(a2, "m", {.dim = 3, .sequences = {{"a", {}}, {"a", {}}}}),
                    Catch::Contains("duplicate sequence name 'a'"));
  ParameterArenaT<double> a3;
  CHECK_THROWS_WITH(MultiDin<double>(a3, "m", {.dim = 3, .sequences = {{"a", {.dim = 4}}}}),
                    Catch::Contains("has dim 4"));
}
