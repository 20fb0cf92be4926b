// ESMM against an independent PyTorch implementation (tools/make_esmm_fixture.py): same
// weights and inputs, compare both outputs (ctr logit, ctcvr logit) and every parameter
// gradient of loss = sum(out * r). CI uses the committed fixture; PyTorch is not needed.
#include <nlohmann/json.hpp>

#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"
#include "testing.hpp"
#include "torch_model_fixture.hpp"

using namespace mtrank;


TEST_CASE("PyTorch parity: ESMM outputs and gradients") {
  const auto path = std::filesystem::path(MTRANK_SOURCE_DIR) / "tests/fixtures/models/esmm.safetensors";
  const auto file = io::SafetensorsFile::load(path);
  const nlohmann::json config = nlohmann::json::parse(R"({
    "schema": {"sparse": [{"name": "item", "vocab": 10, "dim": 4}], "dense": ["x"],
               "tasks": [{"name": "ctr"}, {"name": "ctcvr"}]},
    "model": {"type": "esmm", "tower": {"hidden": [8]}}})");
  auto model = models::build_model(config);
  io::load_arena(model->arena(), file, {.allow_unexpected = true});

  const auto ids = file.to_int64("input.ids");
  const Tensor dense = file.to_float("input.dense");
  const Tensor r = file.to_float("input.r");
  data::Batch b;
  b.size = static_cast<Index>(ids.size());
  b.sparse.assign(ids.begin(), ids.end());
  b.dense = dense;
  auto ws = model->make_workspace();
  model->arena().zero_grad();
  ConstMat out = model->forward(b, *ws, Context::inference());
  REQUIRE(out.rows == b.size);
  REQUIRE(out.cols == 2);
  test::expect_close(out.data, file.to_float("expected.out"), "out");
  model->backward(r.matrix(), *ws);

  Index checked = 0;
  for (auto& p : model->arena().parameters()) {
    const Tensor want = file.to_float("grad." + p.name);
    REQUIRE(want.numel() == p.numel());
    test::expect_close(test::dense_gradient(p).data(), want, "grad." + p.name);
    ++checked;
  }
  CHECK(checked == 9);  // embedding table + 2 towers x (2 weights + 2 biases)
}
