#include "mtrank/nn/transformer.hpp"

#include "fixtures/sequence/seq_testing.hpp"

using namespace mtrank;
using namespace mtrank::nn;

namespace {
void randomize(ParameterArenaT<double>& arena, Rng& rng, double s = 0.4) {
  for (auto& p : arena.parameters())
    if (p.trainable)
      for (Index i = 0; i < p.numel(); ++i) p.value[i] += s * rng.normal();
}
}  // namespace

TEST_CASE("TransformerEncoderLayer: PyTorch parameter names") {
  ParameterArena arena;
  TransformerEncoderLayer<float> layer(arena, "enc", {.d_model = 8, .nhead = 2, .dim_feedforward = 16});
  for (const char* n : {"enc.self_attn.in_proj_weight", "enc.self_attn.in_proj_bias", "enc.self_attn.out_proj.weight",
                        "enc.self_attn.out_proj.bias", "enc.linear1.weight", "enc.linear1.bias", "enc.linear2.weight",
                        "enc.linear2.bias", "enc.norm1.weight", "enc.norm1.bias", "enc.norm2.weight", "enc.norm2.bias"})
    CHECK(arena.find(n) != nullptr);
  CHECK(arena.at("enc.linear1.weight").shape == Shape{16, 8});
}

TEST_CASE("TransformerEncoderLayer gradients (masks, empty sequence) and zero padding rows") {
  ParameterArenaT<double> arena(1);
  TransformerEncoderLayer<double> layer(arena, "l", {.d_model = 4, .nhead = 2, .dim_feedforward = 6, .dropout = 0.0});
  Rng rng(2);
  randomize(arena, rng);
  const Index B = 3, L = 4, d = 4;
  auto x = seqtest::random_padded(B, L, d, rng);
  std::vector<std::int64_t> len{4, 2, 0};
  SeqWindows w;
  make_windows(len, B, B * L, 0, Overflow::truncate, "x", w);
  TensorT<double> dx(Shape{B * L, d});
  TransformerEncoderLayer<double>::Workspace ws;
  auto rep = seqtest::check_block(
      arena, [&] { return layer.forward(x.matrix(), w, ws); },
      [&](MatrixView<const double> dy) { seqtest::store(layer.backward(dy, ws), dx); },
      {{"x", x.data(), dx.data(), x.numel()}});
  INFO(rep.worst);
  CHECK(rep.max_error < 1e-6);
  auto y = layer.forward(x.matrix(), w, ws);
  for (Index c = 0; c < d; ++c) {
    CHECK(y(1 * L + 2, c) == 0.0);
    CHECK(y(2 * L + 0, c) == 0.0);
    CHECK(dx[(1 * L + 3) * d + c] == 0.0);
  }
}

TEST_CASE("TransformerEncoder with learned positions and with time-gap buckets: gradients") {
  for (PositionKind pos : {PositionKind::learned, PositionKind::time_gap, PositionKind::none}) {
    ParameterArenaT<double> arena(3);
    TransformerEncoder<double> enc(arena, "enc",
                                   {.layer = {.d_model = 4, .nhead = 2, .dim_feedforward = 5, .dropout = 0.0},
                                    .num_layers = 2,
                                    .position = pos,
                                    .max_len = 3,
                                    .time_buckets = 6,
                                    .embedding_init = Init::normal(0, 0.5)});
    if (pos == PositionKind::learned) CHECK(arena.at("enc.position_embedding.weight").shape == Shape{3, 4});
    if (pos == PositionKind::time_gap) CHECK(arena.at("enc.time_embedding.weight").shape == Shape{6, 4});
    CHECK(arena.find("enc.layers.1.norm2.bias") != nullptr);
    Rng rng(4);
    randomize(arena, rng, 0.3);
    const Index B = 3, L = 4, d = 4;
    auto x = seqtest::random_padded(B, L, d, rng);
    std::vector<std::int64_t> len{4, 1, 0};  // sample 0 is truncated to its last 3 items
    std::vector<std::int64_t> gaps{0, 3, 17, 1000, 5, 0, 0, 0, 9, 9, 9, 9};
    TensorT<double> dx(Shape{B * L, d});
    TransformerEncoder<double>::Workspace ws;
    auto rep = seqtest::check_block(
        arena, [&] { return enc.forward(x.matrix(), len, ws, {}, gaps); },
        [&](MatrixView<const double> dy) { seqtest::store(enc.backward(dy, ws), dx); },
        {{"x", x.data(), dx.data(), x.numel()}});
    INFO(rep.worst);
    CHECK(rep.max_error < 1e-6);
    for (Index c = 0; c < d; ++c) CHECK(dx[c] == 0.0);  // truncated (oldest) item
  }
}

TEST_CASE("TransformerEncoder: truncation equals encoding the most recent items, bad input") {
  ParameterArenaT<double> arena(5);
  TransformerEncoderOptions opt{.layer = {.d_model = 4, .nhead = 1, .dim_feedforward = 4, .dropout = 0.0},
                                .position = PositionKind::learned,
                                .max_len = 2,
                                .embedding_init = Init::normal(0, 0.5)};
  TransformerEncoder<double> enc(arena, "e", opt);
  Rng rng(6);
  auto x = seqtest::random_padded(1, 3, 4, rng);
  std::vector<std::int64_t> len{3};
  TransformerEncoder<double>::Workspace ws, ws2;
  auto y = enc.forward(x.matrix(), len, ws);
  TensorT<double> tail(Shape{2, 4});
  for (Index i = 0; i < 8; ++i) tail[i] = x[4 + i];
  std::vector<std::int64_t> len2{2};
  auto y2 = enc.forward(tail.matrix(), len2, ws2);
  CHECK(seqtest::max_diff(y.row_block(1, 2), y2) < 1e-14);
  opt.overflow = Overflow::reject;
  ParameterArenaT<double> arena2(5);
  TransformerEncoder<double> strict(arena2, "e", opt);
  CHECK_THROWS_WITH(strict.forward(x.matrix(), len, ws), Catch::Contains("exceeds max_len 2"));
  ParameterArenaT<double> arena3(5);
  TransformerEncoder<double> timed(arena3, "e", {.layer = opt.layer, .position = PositionKind::time_gap});
  std::vector<std::int64_t> short_gaps{1, 2};
  CHECK_THROWS_WITH(timed.forward(x.matrix(), len, ws, {}, short_gaps), Catch::Contains("gaps: size 2 != sequence rows 3"));
  std::vector<std::int64_t> neg_gaps{1, -2, 3};
  CHECK_THROWS_WITH(timed.forward(x.matrix(), len, ws, {}, neg_gaps), Catch::Contains("negative"));
}
