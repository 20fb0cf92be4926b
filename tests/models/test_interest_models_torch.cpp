// Interest models (types "din", "dmt", "sim") against an independent PyTorch implementation
// (tools/make_interest_model_fixtures.py): the model is built from the config stored in the
// fixture, loads its weights, runs the fixture's batch (variable sequence lengths: empty, full,
// beyond max_len) and must reproduce every output of forward() in a training context (all
// dropouts are 0) and every parameter gradient of loss = sum(out * r), sparse embedding rows
// included. CI uses the committed fixtures; PyTorch is not needed.
#include <nlohmann/json.hpp>

#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"
#include "testing.hpp"
#include "torch_model_fixture.hpp"

using namespace mtrank;

namespace {

void expect_output(ConstMat out, const io::SafetensorsFile& file, const std::string& name) {
  const Tensor want = file.to_float(name);
  REQUIRE(want.rank() == 2);
  REQUIRE(out.rows == want.dim(0));
  REQUIRE(out.cols == want.dim(1));
  std::vector<float> got;
  for (Index b = 0; b < out.rows; ++b)
    for (Index k = 0; k < out.cols; ++k) got.push_back(out(b, k));
  test::expect_close(got.data(), want, name);
}

data::Batch fixture_batch(const io::SafetensorsFile& file, const data::FeatureSchema& schema) {
  data::Batch b;
  const auto sparse = file.to_int64("input.sparse");
  const Index ns = static_cast<Index>(schema.sparse.size());
  b.size = static_cast<Index>(sparse.size()) / ns;
  REQUIRE(b.size * ns == static_cast<Index>(sparse.size()));
  b.sparse = sparse;
  b.dense = file.to_float("input.dense");
  for (const auto& f : schema.sequences) {
    const std::string p = "input.seq." + f.name + ".";
    data::SequenceColumn col;
    col.ids = file.to_int64(p + "ids");
    col.offsets = file.to_int64(p + "offsets");
    REQUIRE(static_cast<Index>(col.offsets.size()) == b.size + 1);
    if (file.contains(p + "times")) {
      const Tensor t = file.to_float(p + "times");
      col.times.assign(t.data(), t.data() + t.numel());
    }
    b.sequences.push_back(std::move(col));
  }
  b.labels = Tensor(Shape{b.size, schema.num_tasks()}, 0.0f);
  b.user.assign(static_cast<std::size_t>(b.size), 0);
  b.scene.assign(static_cast<std::size_t>(b.size), 0);
  return b;
}

struct Checked {
  Index trainable = 0, buffers = 0;
};

/// Builds the fixture's model, compares forward() (and the optional inference / serve outputs)
/// and every trainable parameter's gradient.
Checked check_fixture(const std::string& name, const std::vector<std::string>& must_exist) {
  const auto path = std::filesystem::path(MTRANK_SOURCE_DIR) / "tests/fixtures/models" / (name + ".safetensors");
  const auto file = io::SafetensorsFile::load(path);
  const nlohmann::json config = nlohmann::json::parse(file.metadata().at("config"));
  INFO(config.dump());
  auto model = models::build_model(config);
  CHECK(model->config()["model"]["type"] == name);
  for (const auto& p : must_exist) {
    INFO(p);
    CHECK(model->arena().find(p) != nullptr);
  }
  // Every parameter and buffer must come from the file; inputs and expectations are skipped.
  io::load_arena(model->arena(), file, {.allow_unexpected = true});

  const data::Batch batch = fixture_batch(file, model->schema());
  auto ws = model->make_workspace();
  if (file.contains("expected.out_inference"))
    expect_output(model->forward(batch, *ws, Context::inference()), file, "expected.out_inference");
  if (file.contains("expected.out_serve")) expect_output(model->serve(batch, *ws), file, "expected.out_serve");

  Rng rng(5);
  const Context training = Context::train(rng);
  model->arena().zero_grad();
  ConstMat out = model->forward(batch, *ws, training);
  expect_output(out, file, "expected.out");
  const Tensor r = file.to_float("input.r");
  model->backward(r.matrix(), *ws);

  Checked n;
  for (auto& p : model->arena().parameters()) {
    if (!p.trainable) {
      CHECK_FALSE(file.contains("grad." + p.name));
      ++n.buffers;
      continue;
    }
    const Tensor want = file.to_float("grad." + p.name);
    REQUIRE(want.numel() == p.numel());
    test::expect_close(test::dense_gradient(p).data(), want, "grad." + p.name);
    ++n.trainable;
  }
  // ... and the PyTorch model has no parameter the arena lacks.
  Index file_grads = 0;
  for (const auto& e : file.entries()) file_grads += e.name.starts_with("grad.") ? 1 : 0;
  CHECK(file_grads == n.trainable);
  return n;
}

}  // namespace

TEST_CASE("PyTorch parity: DIN ranker (multi-DIN, Dice and PReLU units) outputs and gradients") {
  // Unit "clicks": item + category behaviours, Dice (batch statistics over the valid behaviours
  // while training, running statistics in expected.out_inference), raw weights. Unit "likes":
  // PReLU, softmax, normalised by length, max_len 3 < the schema's 6. A hashed sparse field and a
  // hashed, mean-pooled sequence outside every unit; shared bottom, PReLU towers, a regression task.
  const Checked n = check_fixture("din", {"interest.clicks.acts.1.running_var", "interest.likes.layers.1.weight",
                                          "embeddings.tag_seq.weight", "towers.1.acts.0.weight"});
  CHECK(n.trainable == 29);  // 4 tables; clicks 3 x 2 + 2 alphas; likes 2 x 2 + 1 slope; bottom 2; towers 2 x (4 + 1)
  CHECK(n.buffers == 4);     // running mean / var of the two Dice layers
}

TEST_CASE("PyTorch parity: DMT (time-gap and learned-position Transformers, GRU unit, MMoE, bias net)") {
  // Unit "click": 2-layer, 2-head encoder with time-gap buckets (times in days, time_scale 24);
  // "cart": learned positions; "order": GRU + target attention. Bias network on a sparse and a
  // dense field (exclusive), added to every task in forward() and dropped by serve().
  const Checked n = check_fixture("dmt", {"interest.click.encoder.layers.1.norm2.bias",
                                          "interest.click.encoder.time_embedding.weight",
                                          "interest.cart.encoder.position_embedding.weight",
                                          "interest.order.gru.weight_hh_l0", "interest.order.target.out_proj.weight",
                                          "gates.2.weight", "bias_net.layers.1.bias"});
  CHECK(n.trainable == 84);
  CHECK(n.buffers == 0);
}

TEST_CASE("PyTorch parity: SIM ranker (hard and soft search, add and concat time embeddings)") {
  // Unit "hard": category search, top_k 3 of up to 12 kept behaviours (more matches than top_k,
  // none, an empty sequence, matches only among the truncated oldest items). Unit "soft": top 3
  // by inner product, time_dim 2 concatenated, time_base 3.
  const Checked n = check_fixture("sim", {"interest.hard.esu.time_embedding.weight", "interest.soft.esu.attn.in_proj_weight"});
  CHECK(n.trainable == 23);
  CHECK(n.buffers == 0);
}
