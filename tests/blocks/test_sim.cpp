#include "mtrank/blocks/sim.hpp"

#include <algorithm>
#include <numeric>

#include "fixtures/sequence/seq_testing.hpp"

using namespace mtrank;
using namespace mtrank::blocks;

TEST_CASE("GSU hard search keeps the most recent top_k behaviours of the candidate's category") {
  GeneralSearchUnit gsu({.top_k = 2});
  const Index L = 6;
  std::vector<std::int64_t> cats{1, 2, 1, 1, 3, 1,   /* b1 */ 2, 2, 5, 0, 0, 0,   /* b2 */ 7, 7, 7, 7, 7, 7};
  std::vector<std::int64_t> len{5, 3, 0};
  std::vector<std::int64_t> cand{1, 4, 7};
  Selection sel;
  gsu.hard_search(cats, len, cand, sel);
  CHECK(sel.count == std::vector<std::int64_t>{2, 0, 0});
  CHECK(sel.index[0] == 2);  // positions 2 and 3 (position 5 is padding)
  CHECK(sel.index[1] == 3);
  CHECK(sel.index[2] == -1);
  std::vector<std::int64_t> short_cand{1};
  CHECK_THROWS_WITH(gsu.hard_search(cats, len, short_cand, sel), Catch::Contains("candidate_category: size 1 != batch 3"));
  std::vector<std::int64_t> bad_len{7, 0, 0};
  CHECK_THROWS_WITH(gsu.hard_search(cats, bad_len, cand, sel), Catch::Contains("lengths[0] = 7 exceeds the padded length 6"));
  (void)L;
}

TEST_CASE("GSU soft search equals a full sort at L = 10000 (partial selection)") {
  const Index B = 3, L = 10000, d = 16, K = 50;
  Rng rng(1);
  auto e = testing::random_tensor<float>(Shape{B * L, d}, rng);
  auto q = testing::random_tensor<float>(Shape{B, d}, rng);
  std::vector<std::int64_t> len{10000, 7000, 30};
  GeneralSearchUnit gsu({.top_k = K});
  Selection sel;
  gsu.soft_search<float>(e.matrix(), len, q.matrix(), sel);
  for (Index b = 0; b < B; ++b) {
    std::vector<double> s(static_cast<std::size_t>(len[b]));
    for (Index t = 0; t < len[b]; ++t) {
      double acc = 0;
      for (Index c = 0; c < d; ++c) acc += double(q[b * d + c]) * e[(b * L + t) * d + c];
      s[t] = acc;
    }
    std::vector<Index> order(s.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](Index x, Index y) { return s[x] > s[y]; });
    const Index m = std::min<Index>(K, len[b]);
    CHECK(sel.count[b] == m);
    std::vector<Index> expect(order.begin(), order.begin() + m);
    std::sort(expect.begin(), expect.end());
    std::vector<Index> got(sel.index.begin() + b * K, sel.index.begin() + b * K + m);
    CHECK(got == expect);
  }
  // Ties: the more recent behaviour wins.
  TensorT<double> same(Shape{4, 1}, 1.0), one(Shape{1, 1}, 1.0);
  std::vector<std::int64_t> l4{4};
  GeneralSearchUnit g2({.top_k = 2});
  g2.soft_search<double>(same.matrix(), l4, one.matrix(), sel);
  CHECK(sel.index == std::vector<std::int64_t>{2, 3});
}

TEST_CASE("gather_selected / scatter_add_selected round trip") {
  Selection sel{.batch = 2, .k = 2, .index = {1, -1, 0, 2}, .count = {1, 2}};
  Rng rng(2);
  auto v = seqtest::random_padded(2, 3, 2, rng);
  TensorT<double> g;
  gather_selected<double>(v.matrix(), 3, sel, g);
  CHECK(g[0] == v[1 * 2]);
  CHECK(g[2] == 0.0);
  CHECK(g[3 * 2 + 1] == v[(3 + 2) * 2 + 1]);
  TensorT<double> dv(Shape{6, 2}, 0.0);
  scatter_add_selected<double>(g.matrix(), sel, 3, dv.matrix());
  CHECK(dv[1 * 2] == v[1 * 2]);
  CHECK(dv[0] == 0.0);
  std::vector<std::int64_t> ids{10, 11, 12, 20, 21, 22}, out;
  gather_selected_ids(ids, 3, sel, out, -7);
  CHECK(out == std::vector<std::int64_t>{11, -7, 20, 22});
  CHECK_THROWS_WITH(gather_selected<double>(v.matrix(), 2, sel, g), Catch::Contains("expected selection batch 2 x padded length 2"));
}

TEST_CASE("ExactSearchUnit gradients (add and concat time embeddings, empty retrieval)") {
  for (TimeMode mode : {TimeMode::add, TimeMode::concat}) {
    ParameterArenaT<double> arena(3);
    ExactSearchUnit<double> esu(arena, "esu", {.embed_dim = 4, .num_heads = 2, .time_buckets = 5, .time_mode = mode,
                                               .time_dim = 2, .embedding_init = Init::normal(0, 0.5)});
    const Index D = mode == TimeMode::add ? 4 : 6;
    CHECK(esu.out_features() == D);
    CHECK(arena.at("esu.attn.in_proj_weight").shape == Shape{3 * D, D});
    CHECK(arena.at("esu.time_embedding.weight").shape == Shape{5, mode == TimeMode::add ? 4 : 2});
    Rng rng(4);
    for (auto& p : arena.parameters())
      for (Index i = 0; i < p.numel(); ++i) p.value[i] += 0.3 * rng.normal();
    const Index B = 3, K = 3, d = 4;
    auto cand = testing::random_tensor<double>(Shape{B, d}, rng);
    auto beh = seqtest::random_padded(B, K, d, rng);
    std::vector<std::int64_t> gaps{0, 5, 100, 3, 0, 0, 1, 1, 1};
    std::vector<std::int64_t> len{3, 0, 1};
    TensorT<double> dc(Shape{B, d}), db(Shape{B * K, d});
    ExactSearchUnit<double>::Workspace ws;
    auto rep = seqtest::check_block(
        arena, [&] { return esu.forward(cand.matrix(), beh.matrix(), gaps, len, ws); },
        [&](MatrixView<const double> dy) {
          auto g = esu.backward(dy, ws);
          seqtest::store(g.candidate, dc);
          seqtest::store(g.behaviours, db);
        },
        {{"candidate", cand.data(), dc.data(), cand.numel()}, {"behaviours", beh.data(), db.data(), beh.numel()}});
    INFO(rep.worst);
    CHECK(rep.max_error < 1e-6);
    auto y = esu.forward(cand.matrix(), beh.matrix(), gaps, len, ws);
    for (Index c = 0; c < D; ++c) CHECK(y(1, c) == 0.0);
    std::vector<std::int64_t> short_gaps{1, 2};
    CHECK_THROWS_WITH(esu.forward(cand.matrix(), beh.matrix(), short_gaps, len, ws), Catch::Contains("gaps: size 2"));
  }
}

TEST_CASE("SIM pipeline: GSU selection feeds the ESU, behaviour gradients scatter back") {
  ParameterArenaT<double> arena(5);
  ExactSearchUnit<double> esu(arena, "esu", {.embed_dim = 2, .num_heads = 1, .time_buckets = 4});
  Rng rng(6);
  const Index B = 2, L = 8, d = 2;
  auto e = seqtest::random_padded(B, L, d, rng);
  auto q = testing::random_tensor<double>(Shape{B, d}, rng);
  std::vector<std::int64_t> len{8, 3}, ts(B * L, 0), gaps;
  for (Index i = 0; i < B * L; ++i) ts[i] = 2 * i;
  GeneralSearchUnit gsu({.top_k = 3});
  Selection sel;
  gsu.soft_search<double>(e.matrix(), len, q.matrix(), sel);
  TensorT<double> picked;
  gather_selected<double>(e.matrix(), L, sel, picked);
  gather_selected_ids(ts, L, sel, gaps);
  ExactSearchUnit<double>::Workspace ws;
  auto y = esu.forward(q.matrix(), picked.matrix(), gaps, sel.count, ws);
  CHECK(y.rows == B);
  TensorT<double> dy(Shape{B, d}, 1.0);
  auto g = esu.backward(dy.matrix(), ws);
  TensorT<double> de(Shape{B * L, d}, 0.0);
  scatter_add_selected<double>(g.behaviours, sel, L, de.matrix());
  Index nonzero_rows = 0;
  for (Index r = 0; r < B * L; ++r) nonzero_rows += (de[r * d] != 0.0 || de[r * d + 1] != 0.0);
  CHECK(nonzero_rows == 6);  // exactly the 3 + 3 retrieved behaviours
}
