#include <algorithm>
#include <set>

#include "mtrank/nn/embedding.hpp"
#include "mtrank/nn/embedding_bag.hpp"
#include "mtrank/train/grad_check.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::nn;
using kernels::PoolingMode;
using mtrank::testing::random_vector;

TEST_CASE("Embedding: parameter, lookup, hashing and id errors") {
  ParameterArena arena(1);
  Embedding<float> emb(arena, "embeddings.item_id", {.rows = 10, .dim = 3, .name = "item_id"});
  auto& p = arena.at("embeddings.item_id.weight");
  CHECK(p.shape == Shape{10, 3});
  CHECK(p.sparse);
  CHECK(p.grad == nullptr);
  double sq = 0;
  for (Index i = 0; i < p.numel(); ++i) sq += double(p.value[i]) * p.value[i];
  CHECK(std::sqrt(sq / 30) < 1e-3);  // N(0, 1e-4^2) default init
  CHECK(std::sqrt(sq / 30) > 1e-6);

  Embedding<float>::Workspace ws;
  std::vector<std::int64_t> ids = {3, 0, 9, 3};
  auto y = emb.forward(ids, ws);
  REQUIRE(y.rows == 4);
  REQUIRE(y.cols == 3);
  for (Index b = 0; b < 4; ++b)
    for (Index c = 0; c < 3; ++c) CHECK(y(b, c) == emb.weight()(ids[b], c));

  std::vector<std::int64_t> bad = {1, 10};
  CHECK_THROWS_WITH(emb.forward(bad, ws), "embedding 'item_id': id 10 out of range [0, 10) (vocabulary size 10, no oov_row)");
  std::vector<std::int64_t> neg = {-3};
  CHECK_THROWS_WITH(emb.forward(neg, ws), "embedding 'item_id': id -3 out of range [0, 10) (vocabulary size 10, no oov_row)");

  ParameterArena a2(1);
  Embedding<float> big(a2, "e", {.rows = 1048576, .dim = 1, .init = Init::zeros(), .name = "item_id"});
  std::vector<std::int64_t> over = {1048577};
  CHECK_THROWS_WITH(big.forward(over, ws), "embedding 'item_id': id 1048577 out of range [0, 1048576) (vocabulary size 1048576, no oov_row)");

  Embedding<float> hashed(a2, "h", {.rows = 7, .dim = 2, .hash = true});
  std::vector<std::int64_t> any = {-5, 1048577, 3};
  auto yh = hashed.forward(any, ws);
  for (Index b = 0; b < 3; ++b) {
    const Index r = data::hash_id(any[b], 7);
    CHECK(hashed.row_of(any[b]) == r);
    CHECK(yh(b, 0) == hashed.weight()(r, 0));
  }
  CHECK_THROWS_WITH(Embedding<float>(a2, "z", {.rows = 0, .dim = 2}), Catch::Contains("rows and dim must be > 0"));
}

TEST_CASE("Embedding backward touches only the rows of the batch and accumulates") {
  ParameterArena arena(2);
  Embedding<float> emb(arena, "emb", {.rows = 1000, .dim = 17});
  Embedding<float>::Workspace ws;
  std::vector<std::int64_t> ids = {5, 999, 5, 42, 0};
  emb.forward(ids, ws);
  Tensor dy(Shape{5, 17});
  for (Index i = 0; i < dy.numel(); ++i) dy[i] = float(i % 17) + 1.0f;
  emb.backward(dy.matrix(), ws);
  auto& g = emb.weight_param().sparse_grad;
  std::set<Index> rows(g.rows().begin(), g.rows().end());
  CHECK(rows == std::set<Index>{0, 5, 42, 999});
  CHECK(g.rows().size() == 4);
  for (std::size_t s = 0; s < g.rows().size(); ++s) {
    const float mult = g.rows()[s] == 5 ? 2.0f : 1.0f;
    for (Index c = 0; c < 17; ++c) CHECK(g.values()[s * 17 + c] == mult * float(c + 1));
  }
  emb.backward(dy.matrix(), ws);  // accumulates
  CHECK(g.values()[0] == 2.0f * (g.rows()[0] == 5 ? 2.0f : 1.0f));
  Tensor bad(Shape{4, 17});
  CHECK_THROWS_WITH(emb.backward(bad.matrix(), ws), Catch::Contains("expected shape [5, 17]"));
}

TEST_CASE("EmbeddingBag forward: sum/mean, empty bags, weights, offset errors") {
  ParameterArena arena(3);
  for (PoolingMode mode : {PoolingMode::sum, PoolingMode::mean}) {
    EmbeddingBag<float> bag(arena, mode == PoolingMode::sum ? "s" : "m",
                            {.rows = 20, .dim = 5, .mode = mode, .init = Init::normal(0, 1), .name = "tags"});
    EmbeddingBag<float>::Workspace ws;
    std::vector<std::int64_t> ids = {1, 2, 3, 19, 4};
    std::vector<Index> offsets = {0, 3, 3, 4, 5};  // bags: {1,2,3}, {}, {19}, {4}
    std::vector<float> w = {0.5f, -1.0f, 2.0f, 3.0f, 1.0f};
    for (bool weighted : {false, true}) {
      auto y = weighted ? bag.forward(ids, offsets, ws, std::span<const float>(w)) : bag.forward(ids, offsets, ws);
      REQUIRE(y.rows == 4);
      for (Index b = 0; b < 4; ++b)
        for (Index c = 0; c < 5; ++c) {
          double want = 0;
          for (Index j = offsets[b]; j < offsets[b + 1]; ++j) want += (weighted ? w[j] : 1.0) * bag.weight()(ids[j], c);
          const Index len = offsets[b + 1] - offsets[b];
          if (mode == PoolingMode::mean && len > 0) want /= double(len);
          CHECK(y(b, c) == Approx(want).margin(1e-6));
        }
    }
    std::vector<Index> bad0 = {1, 3, 3, 4, 5};
    CHECK_THROWS_WITH(bag.forward(ids, bad0, ws), Catch::Contains("offsets[0] must be 0"));
    std::vector<Index> bad_dec = {0, 3, 2, 4, 5};
    CHECK_THROWS_WITH(bag.forward(ids, bad_dec, ws), Catch::Contains("non-decreasing"));
    std::vector<Index> bad_end = {0, 3, 3, 4};
    CHECK_THROWS_WITH(bag.forward(ids, bad_end, ws), Catch::Contains("must equal the number of ids 5"));
    std::vector<float> short_w = {1.0f};
    CHECK_THROWS_WITH(bag.forward(ids, offsets, ws, std::span<const float>(short_w)),
                      Catch::Contains("per_sample_weights has 1 entries, expected 5"));
    std::vector<std::int64_t> bad_ids = {1, 2, 3, 20, 4};
    CHECK_THROWS_WITH(bag.forward(bad_ids, offsets, ws), "embedding 'tags': id 20 out of range [0, 20) (vocabulary size 20, no oov_row)");
  }
}

namespace {
template <class Block>
GradCheckReport check_bag(PoolingMode mode, bool weighted, bool hash) {
  ParameterArenaT<double> arena(11);
  EmbeddingBag<double> bag(arena, "bag", {.rows = 13, .dim = 4, .hash = hash, .mode = mode, .init = Init::normal(0, 1)});
  std::vector<std::int64_t> ids = {1, 7, 7, 12, 3, 0, 5, 2, 1000003};
  if (!hash) ids.back() = 9;
  std::vector<Index> offsets = {0, 3, 3, 4, 9};
  Rng rng(5);
  std::vector<double> w = random_vector(ids.size(), rng);
  auto r = random_vector(4 * 4, rng);
  typename EmbeddingBag<double>::Workspace ws;
  std::span<const double> ws_w = weighted ? std::span<const double>(w) : std::span<const double>();
  auto loss = [&] { return dot_loss(bag.forward(ids, offsets, ws, ws_w), r); };
  std::vector<double> dw(w.size(), 0.0);
  auto analytic = [&] {
    bag.forward(ids, offsets, ws, ws_w);
    TensorT<double> dy(Shape{4, 4});
    std::copy(r.begin(), r.end(), dy.begin());
    auto g = bag.backward(dy.matrix(), ws);
    if (weighted) std::copy(g.begin(), g.end(), dw.begin());
  };
  std::vector<GradCheckInput> inputs;
  if (weighted) inputs.push_back({"per_sample_weights", w.data(), dw.data(), Index(w.size())});
  return grad_check(arena, loss, analytic, inputs);
}
}  // namespace

TEST_CASE("EmbeddingBag gradients match finite differences (table and per-sample weights)") {
  for (PoolingMode mode : {PoolingMode::sum, PoolingMode::mean})
    for (bool weighted : {false, true})
      for (bool hash : {false, true}) {
        INFO("mode " << int(mode) << " weighted " << weighted << " hash " << hash);
        auto rep = check_bag<EmbeddingBag<double>>(mode, weighted, hash);
        INFO(rep.worst);
        CHECK(rep.ok(1e-7));
        CHECK(rep.checked > 0);
      }
}

TEST_CASE("Embedding gradients match finite differences") {
  ParameterArenaT<double> arena(12);
  Embedding<double> emb(arena, "emb", {.rows = 9, .dim = 3, .init = Init::normal(0, 1)});
  std::vector<std::int64_t> ids = {4, 0, 4, 8, 2};
  Rng rng(6);
  auto r = random_vector(5 * 3, rng);
  Embedding<double>::Workspace ws;
  auto loss = [&] { return dot_loss(emb.forward(ids, ws), r); };
  auto analytic = [&] {
    emb.forward(ids, ws);
    TensorT<double> dy(Shape{5, 3});
    std::copy(r.begin(), r.end(), dy.begin());
    emb.backward(dy.matrix(), ws);
  };
  auto rep = grad_check(arena, loss, analytic);
  INFO(rep.worst);
  CHECK(rep.ok(1e-7));
  CHECK(rep.checked == 27);
}

TEST_CASE("EmbeddingBag float backward (SIMD kernels) agrees with double and touches only batch rows") {
  ParameterArena af(4);
  ParameterArenaT<double> ad(4);
  const EmbeddingBagOptions opt{.rows = 500, .dim = 33, .mode = PoolingMode::mean, .init = Init::normal(0, 1)};
  EmbeddingBag<float> bf(af, "b", opt);
  EmbeddingBag<double> bd(ad, "b", opt);
  for (Index i = 0; i < 500 * 33; ++i) ad.at("b.weight").value[i] = af.at("b.weight").value[i];
  std::vector<std::int64_t> ids = {3, 499, 3, 17, 250, 250, 250, 1};
  std::vector<Index> offsets = {0, 2, 2, 7, 8};
  std::vector<float> wf = {1.f, 2.f, -1.f, 0.5f, 0.25f, 1.f, 3.f, -2.f};
  std::vector<double> wd(wf.begin(), wf.end());
  EmbeddingBag<float>::Workspace wsf;
  EmbeddingBag<double>::Workspace wsd;
  auto yf = bf.forward(ids, offsets, wsf, std::span<const float>(wf));
  auto yd = bd.forward(ids, offsets, wsd, std::span<const double>(wd));
  for (Index b = 0; b < 4; ++b)
    for (Index c = 0; c < 33; ++c) CHECK(yf(b, c) == Approx(yd(b, c)).margin(1e-5));
  Tensor dyf(Shape{4, 33});
  TensorT<double> dyd(Shape{4, 33});
  for (Index i = 0; i < dyf.numel(); ++i) dyd[i] = dyf[i] = float(i % 7) - 3.0f;
  auto gwf = bf.backward(dyf.matrix(), wsf);
  auto gwd = bd.backward(dyd.matrix(), wsd);
  REQUIRE(gwf.size() == 8);
  for (std::size_t j = 0; j < 8; ++j) CHECK(gwf[j] == Approx(gwd[j]).margin(1e-4));
  auto& gf = bf.weight_param().sparse_grad;
  auto& gd = bd.weight_param().sparse_grad;
  CHECK(std::set<Index>(gf.rows().begin(), gf.rows().end()) == std::set<Index>{1, 3, 17, 250, 499});
  REQUIRE(gf.rows() == gd.rows());
  for (std::size_t i = 0; i < gf.rows().size() * 33; ++i) CHECK(gf.values()[i] == Approx(gd.values()[i]).margin(1e-5));
}
