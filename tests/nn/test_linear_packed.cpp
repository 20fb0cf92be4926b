// Serving passes (Context::serving()) of float layers run on packed weight copies: they agree with
// plain inference, and never serve stale weights after an optimiser step, a parameter load or an
// explicit invalidation.
#include <atomic>
#include <cmath>
#include <thread>

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

TEST_CASE("Serving passes see every weight update", "[nn][packed]") {
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
  SECTION("after a hand edit and invalidate_packed_weights()") {
    arena.at("mlp.layers.0.weight").value[5] += 1.0f;
    kernels::invalidate_packed_weights();
    REQUIRE(serve_matches_plain());
  }
  SECTION("with packed inference switched off") {
    kernels::set_packed_inference(false);
    arena.at("mlp.layers.0.weight").value[5] += 1.0f;  // no invalidation needed: nothing is packed
    const bool ok = serve_matches_plain();
    kernels::set_packed_inference(true);
    kernels::invalidate_packed_weights();
    REQUIRE(ok);
  }
}

TEST_CASE("bf16 inference uses bf16 weights for small batches only", "[nn][packed][bf16]") {
  if (!kernels::bf16_available()) {
    CHECK_THROWS_AS(kernels::set_bf16_inference(true), Error);
    return;
  }
  kernels::set_bf16_inference(true);
  CHECK(kernels::inference_format(1) == kernels::WeightFormat::bf16);
  CHECK(kernels::inference_format(kernels::kBf16MaxRows) == kernels::WeightFormat::bf16);
  CHECK(kernels::inference_format(kernels::kBf16MaxRows + 1) == kernels::WeightFormat::f32);
  ParameterArena arena(13);
  nn::Mlp<float> mlp(arena, "mlp", {.in = 64, .layers = {128, 64, 1}, .activation = nn::ActivationKind::relu});
  const Tensor x = random_input(4, 64, 2);
  nn::Mlp<float>::Workspace ws, ws_ref;
  const ConstMat b = mlp.forward(x.matrix(), ws, Context::serving());
  kernels::set_bf16_inference(false);
  CHECK(kernels::inference_format(1) == kernels::WeightFormat::f32);
  const ConstMat f = mlp.forward(x.matrix(), ws_ref, Context::inference());
  double err2 = 0, ref2 = 0;
  for (Index r = 0; r < 4; ++r) {
    err2 += (b(r, 0) - f(r, 0)) * (b(r, 0) - f(r, 0));
    ref2 += f(r, 0) * f(r, 0);
  }
  CHECK(err2 > 0);  // bf16 really ran
  CHECK(std::sqrt(err2 / ref2) <= 2e-2);
}

TEST_CASE("Switching the serving weight format while serving passes run is safe", "[nn][packed]") {
  ParameterArena arena(14);
  nn::Mlp<float> mlp(arena, "mlp", {.in = 64, .layers = {96, 1}, .activation = nn::ActivationKind::relu});
  const Tensor x = random_input(3, 64, 4);
  nn::Mlp<float>::Workspace ref_ws;
  const ConstMat plain = mlp.forward(x.matrix(), ref_ws, Context::inference());
  const std::vector<float> want = {plain(0, 0), plain(1, 0), plain(2, 0)};
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread server([&] {
    nn::Mlp<float>::Workspace ws;
    while (!stop.load()) {
      const ConstMat y = mlp.forward(x.matrix(), ws, Context::serving());
      for (Index r = 0; r < 3; ++r)  // f32 or int8 weights: within int8's error of the f32 result
        if (!(std::abs(y(r, 0) - want[static_cast<std::size_t>(r)]) <= 0.05 * (1.0 + std::abs(want[static_cast<std::size_t>(r)])))) bad.fetch_add(1);
    }
  });
  for (int i = 0; i < 200; ++i) kernels::set_inference_weights(i % 2 ? "int8" : "f32");
  stop.store(true);
  server.join();
  kernels::set_inference_weights("f32");
  CHECK(bad.load() == 0);
  CHECK_THROWS_WITH(kernels::set_inference_weights("fp16"), Catch::Contains("expected \"f32\", \"bf16\" or \"int8\""));
}
