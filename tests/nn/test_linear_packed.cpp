// Serving passes (Context::serving(w)) of float layers run on packed weight copies in the format of
// the serving plan w: they agree with plain inference, never serve stale weights after an
// optimiser step, a parameter load or mark_weights_changed() on their own arena, and are never
// disturbed by another arena's changes.
#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "mtrank/io/safetensors.hpp"
#include "mtrank/kernels/bf16.hpp"
#include "mtrank/kernels/packed_linear.hpp"
#include "mtrank/nn/mlp.hpp"
#include "mtrank/train/optimizer.hpp"
#include "testing.hpp"

using namespace mtrank;

namespace {
Tensor random_input(Index rows, Index cols, std::uint64_t seed) {
  Rng rng(seed);
  Tensor x(Shape{rows, cols});
  for (float& v : x) v = static_cast<float>(rng.normal());
  return x;
}
double max_diff(ConstMat a, ConstMat b) {
  double d = 0;
  for (Index r = 0; r < a.rows; ++r)
    for (Index c = 0; c < a.cols; ++c) d = std::max(d, std::abs(double(a(r, c)) - double(b(r, c))));
  return d;
}
}  // namespace

TEST_CASE("Mlp serving pass on packed weights matches plain inference", "[nn][packed]") {
  ParameterArena arena(11);
  nn::Mlp<float> mlp(arena, "mlp", {.in = 37, .layers = {64, 33, 1}, .activation = nn::ActivationKind::relu});
  for (Index rows : {1, 5, 14, 29, 256}) {
    const Tensor x = random_input(rows, 37, 100 + rows);
    nn::Mlp<float>::Workspace ws_plain, ws_packed;
    const ConstMat plain = mlp.forward(x.matrix(), ws_plain, Context::inference());
    const ConstMat packed = mlp.forward(x.matrix(), ws_packed, Context::serving());
    INFO("rows " << rows);
    REQUIRE(max_diff(plain, packed) <= 1e-5);
  }
}

TEST_CASE("Serving passes see every weight update of their own arena", "[nn][packed]") {
  ParameterArena arena(12);
  nn::Mlp<float> mlp(arena, "mlp", {.in = 16, .layers = {32, 1}, .activation = nn::ActivationKind::tanh});
  const Tensor x = random_input(8, 16, 1);
  nn::Mlp<float>::Workspace ws, ws_ref;
  auto serve_matches_plain = [&] {
    const ConstMat s = mlp.forward(x.matrix(), ws, Context::serving());
    const ConstMat p = mlp.forward(x.matrix(), ws_ref, Context::inference());
    return max_diff(s, p) <= 1e-5;
  };
  REQUIRE(serve_matches_plain());

  SECTION("after an optimiser step") {
    Rng rng(3);
    mlp.forward(x.matrix(), ws, Context::train(rng));
    Tensor dy(Shape{8, 1});
    for (float& v : dy) v = 1.0f;
    arena.zero_grad();
    mlp.backward(dy.matrix(), ws);
    train::Adam opt(train::AdamOptions{.lr = 0.1});
    opt.step(arena);
    REQUIRE(serve_matches_plain());
  }
  SECTION("after a parameter load") {
    ParameterArena other(99);
    nn::Mlp<float> donor(other, "mlp", {.in = 16, .layers = {32, 1}, .activation = nn::ActivationKind::tanh});
    const auto dir = testing::temp_dir("packed_load");
    io::save_arena(dir / "w.safetensors", other);
    io::load_arena(arena, io::SafetensorsFile::load(dir / "w.safetensors"));
    REQUIRE(serve_matches_plain());
  }
  SECTION("after a hand edit and arena.mark_weights_changed()") {
    arena.at("mlp.layers.0.weight").value[5] += 1.0f;
    arena.mark_weights_changed();
    REQUIRE(serve_matches_plain());
  }
  SECTION("with packed inference switched off") {
    kernels::set_packed_inference(false);
    arena.at("mlp.layers.0.weight").value[5] += 1.0f;  // no invalidation needed: nothing is packed
    const bool ok = serve_matches_plain();
    kernels::set_packed_inference(true);
    arena.mark_weights_changed();
    REQUIRE(ok);
  }
  SECTION("but not after another arena's step, load or mark_weights_changed()") {
    // Hand-edit without marking: the copies stay as packed (the documented contract), which
    // makes visible whether someone else's change dropped them.
    const ConstMat before = mlp.forward(x.matrix(), ws, Context::serving());
    const Tensor packed_before = [&] {
      Tensor t(Shape{before.rows, before.cols});
      copy(before, t.matrix());
      return t;
    }();
    arena.at("mlp.layers.0.weight").value[5] += 1.0f;
    ParameterArena other(99);
    nn::Mlp<float> donor(other, "mlp", {.in = 16, .layers = {32, 1}, .activation = nn::ActivationKind::tanh});
    const auto dir = testing::temp_dir("packed_other");
    io::save_arena(dir / "w.safetensors", other);
    io::load_arena(other, io::SafetensorsFile::load(dir / "w.safetensors"));
    train::Adam opt(train::AdamOptions{.lr = 0.1});
    opt.step(other);
    other.mark_weights_changed();
    const ConstMat after = mlp.forward(x.matrix(), ws, Context::serving());
    REQUIRE(max_diff(after, packed_before.matrix()) == 0);
    REQUIRE(!serve_matches_plain());
    arena.mark_weights_changed();
    REQUIRE(serve_matches_plain());
  }
}

TEST_CASE("inference_format maps a serving plan to a packed format per batch", "[nn][packed]") {
  using kernels::WeightFormat;
  for (Index m : {Index(1), kernels::kBf16MaxRows, kernels::kBf16MaxRows + 1, Index(1024)}) {
    CHECK(kernels::inference_format(m, ServingWeights::f32) == WeightFormat::f32);
    CHECK(kernels::inference_format(m, ServingWeights::int8) == WeightFormat::int8);
  }
  const WeightFormat small = kernels::bf16_available() ? WeightFormat::bf16 : WeightFormat::f32;
  CHECK(kernels::inference_format(1, ServingWeights::bf16) == small);
  CHECK(kernels::inference_format(kernels::kBf16MaxRows, ServingWeights::bf16) == small);
  CHECK(kernels::inference_format(kernels::kBf16MaxRows + 1, ServingWeights::bf16) == WeightFormat::f32);
  CHECK(parse_serving_weights("int8") == ServingWeights::int8);
  CHECK(std::string(serving_weights_name(ServingWeights::bf16)) == "bf16");
  CHECK_THROWS_WITH(parse_serving_weights("fp16"), Catch::Contains("expected \"f32\", \"bf16\" or \"int8\""));
}

TEST_CASE("bf16 serving weights are used for small batches only", "[nn][packed][bf16]") {
  if (!kernels::bf16_available()) {
    WARN("skipped: no AVX512_BF16 (or MTRANK_ISA caps below avx512)");
    return;
  }
  ParameterArena arena(13);
  nn::Mlp<float> mlp(arena, "mlp", {.in = 64, .layers = {128, 64, 1}, .activation = nn::ActivationKind::relu});
  const Tensor x = random_input(4, 64, 2);
  nn::Mlp<float>::Workspace ws, ws_ref;
  const ConstMat b = mlp.forward(x.matrix(), ws, Context::serving(ServingWeights::bf16));
  const ConstMat f = mlp.forward(x.matrix(), ws_ref, Context::inference());
  double err2 = 0, ref2 = 0;
  for (Index r = 0; r < 4; ++r) {
    err2 += (b(r, 0) - f(r, 0)) * (b(r, 0) - f(r, 0));
    ref2 += f(r, 0) * f(r, 0);
  }
  CHECK(err2 > 0);  // bf16 really ran
  CHECK(std::sqrt(err2 / ref2) <= 2e-2);
  // A batch above kBf16MaxRows runs on f32 copies: the f32 plan's result, bit for bit.
  const Tensor big = random_input(kernels::kBf16MaxRows + 3, 64, 5);
  nn::Mlp<float>::Workspace ws_big, ws_f32;
  const ConstMat yb = mlp.forward(big.matrix(), ws_big, Context::serving(ServingWeights::bf16));
  const ConstMat yf = mlp.forward(big.matrix(), ws_f32, Context::serving(ServingWeights::f32));
  CHECK(max_diff(yb, yf) == 0);
}

TEST_CASE("One model served in two weight formats at once: each pass uses its own copies", "[nn][packed]") {
  ParameterArena arena(14);
  nn::Mlp<float> mlp(arena, "mlp", {.in = 64, .layers = {96, 1}, .activation = nn::ActivationKind::relu});
  const Tensor x = random_input(3, 64, 4);
  std::vector<ServingWeights> plans = {ServingWeights::f32, ServingWeights::int8};
  if (kernels::bf16_available()) plans.push_back(ServingWeights::bf16);
  // Single-threaded references, each from a fresh model with the same weights (seed).
  std::vector<std::vector<float>> want;
  for (ServingWeights w : plans) {
    ParameterArena a(14);
    nn::Mlp<float> m(a, "mlp", {.in = 64, .layers = {96, 1}, .activation = nn::ActivationKind::relu});
    nn::Mlp<float>::Workspace ws;
    const ConstMat y = m.forward(x.matrix(), ws, Context::serving(w));
    want.push_back({y(0, 0), y(1, 0), y(2, 0)});
  }
  for (std::size_t p = 1; p < plans.size(); ++p) CHECK(want[p] != want[0]);  // the formats really differ
  std::atomic<int> bad{0}, runs{0};
  std::vector<std::thread> servers;
  for (int t = 0; t < 4; ++t)
    servers.emplace_back([&, t] {
      nn::Mlp<float>::Workspace ws;
      for (int n = 0; n < 300; ++n) {
        const std::size_t p = static_cast<std::size_t>(n + t) % plans.size();
        const ConstMat y = mlp.forward(x.matrix(), ws, Context::serving(plans[p]));
        for (Index r = 0; r < 3; ++r)
          if (y(r, 0) != want[p][static_cast<std::size_t>(r)]) bad.fetch_add(1);
        runs.fetch_add(1);
      }
    });
  for (auto& th : servers) th.join();
  CHECK(runs == 4 * 300);
  CHECK(bad == 0);
}
