#include <cstdlib>
#include <string>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/cpu.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/gemm.hpp"
#include "testing.hpp"

using namespace mtrank;

TEST_CASE("Tensor resize reuses capacity and keeps alignment") {
  Tensor t(Shape{4, 8});
  const float* p = t.data();
  CHECK(reinterpret_cast<std::uintptr_t>(p) % kAlignment == 0);
  t.resize(Shape{2, 8});
  CHECK(t.data() == p);
  CHECK(t.numel() == 16);
  t.resize(Shape{100, 100});
  CHECK(t.numel() == 10000);
  Tensor c = t;
  CHECK(c.data() != t.data());
  CHECK(c.shape() == t.shape());
}

TEST_CASE("Large tensors are 2 MiB-aligned for huge pages unless MTRANK_HUGE_PAGES=0") {
  const char* env = std::getenv("MTRANK_HUGE_PAGES");
  const bool huge = !(env && std::string(env) == "0");
  Tensor big(Shape{Index(detail::kHugePageThreshold / sizeof(float)) + 3}, 1.5f);
  const auto addr = reinterpret_cast<std::uintptr_t>(big.data());
  CHECK(addr % kAlignment == 0);
  if (huge) CHECK(addr % (std::uintptr_t(2) << 20) == 0);
  CHECK(big[0] == 1.5f);
  CHECK(big[big.numel() - 1] == 1.5f);
  Tensor copy = big;  // deep copy through the same allocator
  CHECK(copy[big.numel() - 1] == 1.5f);
  CHECK(copy.data() != big.data());
  Tensor small(Shape{16});
  CHECK(reinterpret_cast<std::uintptr_t>(small.data()) % kAlignment == 0);
}

TEST_CASE("MatrixView blocks address the right elements") {
  Tensor t(Shape{3, 4});
  for (Index i = 0; i < 12; ++i) t[i] = float(i);
  Mat m = t.matrix();
  auto cb = m.col_block(1, 2);
  CHECK(cb(2, 1) == 10.0f);
  auto rb = m.row_block(1, 2);
  CHECK(rb(0, 0) == 4.0f);
  ConstMat cm = m;
  CHECK(cm(1, 1) == 5.0f);
}

TEST_CASE("Rng is deterministic for a seed and roughly standard normal") {
  Rng a(123), b(123), c(124);
  CHECK(a.next_u64() == b.next_u64());
  CHECK(a.next_u64() != c.next_u64());
  Rng r(7);
  double s = 0, ss = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    double v = r.normal();
    s += v;
    ss += v * v;
  }
  CHECK(std::abs(s / n) < 0.01);
  CHECK(std::abs(ss / n - 1.0) < 0.02);
}

TEST_CASE("Parameter arena: names, stable pointers, sparse gradients") {
  ParameterArena arena(1);
  auto& w = arena.add("bottom.layers.0.weight", Shape{3, 2}, {.init = Init::uniform(-1, 1)});
  float* wp = w.value;
  for (int i = 0; i < 100; ++i) arena.add(std::string("p") + std::to_string(i), Shape{1000});
  CHECK(arena.at("bottom.layers.0.weight").value == wp);
  CHECK_THROWS_WITH(arena.add("p3", Shape{1}), Catch::Contains("duplicate"));
  CHECK_THROWS_WITH(arena.at("nope"), Catch::Contains("'nope'"));
  auto& emb = arena.add("emb.weight", Shape{1000, 4}, {.init = Init::normal(0, 1e-4), .sparse = true});
  CHECK(emb.grad == nullptr);
  emb.sparse_grad.row(7)[1] += 2.0f;
  emb.sparse_grad.row(3)[0] += 1.0f;
  emb.sparse_grad.row(7)[1] += 2.0f;
  REQUIRE(emb.sparse_grad.rows().size() == 2);
  CHECK(emb.sparse_grad.rows()[0] == 7);
  CHECK(emb.sparse_grad.values()[1] == 4.0f);
  arena.zero_grad();
  CHECK(emb.sparse_grad.rows().empty());
  CHECK(emb.sparse_grad.row(7)[1] == 0.0f);
}

TEST_CASE("Parameter arena: the weights version is per arena, a replica follows its source") {
  ParameterArena a(1), b(2);
  auto& wa = a.add("w", Shape{4, 3});
  auto& buf = a.add("running_mean", Shape{3}, {.trainable = false});
  auto& wb = b.add("w", Shape{4, 3});
  const std::uint64_t a0 = a.weights_version(), b0 = b.weights_version();
  CHECK(wa.weights_version() == a0);
  CHECK(buf.weights_version() == a0);
  a.mark_weights_changed();
  CHECK(a.weights_version() == a0 + 1);
  CHECK(wa.weights_version() == a0 + 1);
  CHECK(wb.weights_version() == b0);  // another arena never moves
  CHECK(Parameter<float>{}.weights_version() == 0);  // outside an arena: a constant

  // A gradient replica's trainable values are the source's: one counter for both.
  ParameterArena replica(3);
  replica.share_values_from(a);
  auto& wr = replica.add("w", Shape{4, 3});
  replica.add("running_mean", Shape{3}, {.trainable = false});
  CHECK(wr.value == wa.value);
  CHECK(replica.weights_version() == a.weights_version());
  a.mark_weights_changed();
  CHECK(wr.weights_version() == a.weights_version());
  replica.copy_buffers_from(a);  // writes the replica's buffers: moves the shared counter
  CHECK(wa.weights_version() == a0 + 3);
  CHECK(b.weights_version() == b0);
}

TEST_CASE("Same arena seed gives bit-identical initial parameters") {
  ParameterArena a(99), b(99);
  auto& pa = a.add("w", Shape{64}, {.init = Init::normal(0, 1)});
  auto& pb = b.add("w", Shape{64}, {.init = Init::normal(0, 1)});
  CHECK(std::equal(pa.value, pa.value + 64, pb.value));
}

TEST_CASE("gemm agrees with the scalar reference for every transpose and odd shapes") {
  Rng rng(3);
  for (auto [M, N, K] : {std::tuple<Index, Index, Index>{1, 1, 1}, {3, 5, 7}, {17, 1, 33}, {64, 31, 9}, {2, 130, 65}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      Tensor A = testing::random_tensor<float>(ta ? Shape{K, M} : Shape{M, K}, rng);
      Tensor B = testing::random_tensor<float>(tb ? Shape{N, K} : Shape{K, N}, rng);
      Tensor C = testing::random_tensor<float>(Shape{M, N}, rng), R = C;
      kernels::gemm(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, B.data(), tb ? K : N, 2.0f, C.data(), N);
      kernels::gemm_ref<float>(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, B.data(), tb ? K : N, 2.0f, R.data(), N);
      for (Index i = 0; i < M * N; ++i) CHECK(C[i] == Approx(R[i]).epsilon(1e-4).margin(1e-4));
      TensorT<double> Ad(A.shape()), Bd(B.shape()), Cd(Shape{M, N}), Rd(Shape{M, N});
      std::copy(A.begin(), A.end(), Ad.begin());
      std::copy(B.begin(), B.end(), Bd.begin());
      kernels::gemm(ta, tb, M, N, K, 1.0, Ad.data(), ta ? M : K, Bd.data(), tb ? K : N, 0.0, Cd.data(), N);
      kernels::gemm_ref<double>(ta, tb, M, N, K, 1.0, Ad.data(), ta ? M : K, Bd.data(), tb ? K : N, 0.0, Rd.data(), N);
      for (Index i = 0; i < M * N; ++i) CHECK(Cd[i] == Approx(Rd[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("ISA detection and cap") {
  auto isas = runnable_isas();
  REQUIRE(!isas.empty());
  CHECK(isas.front() == Isa::ref);
  CHECK(static_cast<int>(active_isa()) <= static_cast<int>(detected_isa()));
  CHECK(parse_isa("avx2") == Isa::avx2);
  CHECK_THROWS_WITH(parse_isa("sse9"), Catch::Contains("MTRANK_ISA"));
}

TEST_CASE("A default tensor is empty and copies safely") {
  Tensor t;
  CHECK(t.numel() == 0);
  Tensor c = t;
  CHECK(c.numel() == 0);
  c = Tensor(Shape{2}, 1.0f);
  c = t;
  CHECK(c.numel() == 0);
}

TEST_CASE("Shapes whose element count overflows throw instead of wrapping") {
  const Index big = Index(1) << 62;
  CHECK_THROWS_WITH(Shape({big, 4}).numel(), Catch::Matchers::Contains("element count overflows 64 bits"));
  CHECK(Shape({big, 1}).numel() == big);
  Tensor t;
  CHECK_THROWS_WITH(t.resize(Shape{Index(1) << 61, 4}), Catch::Matchers::Contains("overflow"));
}

TEST_CASE("Parameter arena: the memory budget rejects a parameter before allocating it, with the numbers") {
  set_parameter_memory_budget(1 << 20);  // 1 MiB for arenas created from now on
  {
    ParameterArena arena(1);
    arena.add("small", Shape{16, 16});  // 1 KiB values + 1 KiB gradient
    CHECK(arena.bytes() == 2 * 16 * 16 * sizeof(float));
    CHECK_THROWS_WITH(arena.add("big", Shape{1000, 1000}),
                      Catch::Matchers::Contains("parameter 'big' [1000, 1000] needs 8000000 bytes") &&
                          Catch::Matchers::Contains("over the memory budget of 1048576 bytes"));
    CHECK(arena.find("big") == nullptr);
    // Sparse tables have no dense gradient: only their values count.
    arena.add("table", Shape{1000, 100}, {.sparse = true});
    CHECK(arena.bytes() == 2 * 16 * 16 * sizeof(float) + 1000 * 100 * sizeof(float));
    CHECK_THROWS_WITH(arena.add("huge", Shape{Index(1) << 40, Index(1) << 30}), Catch::Matchers::Contains("overflows"));
  }
  set_parameter_memory_budget(0);
  CHECK(parameter_memory_budget() > (std::uint64_t(1) << 20));
}

TEST_CASE("Parameter arena: expected shapes are checked before allocation") {
  ParameterArena arena(1);
  arena.expect_shapes({{"w", Shape{4, 3}}}, "'model.safetensors'");
  arena.add("w", Shape{4, 3});
  CHECK_THROWS_WITH(arena.add("v", Shape{2}), "'model.safetensors': has no tensor 'v', which the config builds with shape [2]");
  ParameterArena other(1);
  other.expect_shapes({{"w", Shape{4, 3}}}, "'model.safetensors'");
  CHECK_THROWS_WITH(other.add("w", Shape{50000000, 8}),
                    "'model.safetensors': tensor 'w' has shape [4, 3] but the config builds [50000000, 8]");
  CHECK(other.bytes() == 0);
}
