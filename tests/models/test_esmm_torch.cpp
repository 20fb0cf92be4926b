// ESMM against an independent PyTorch implementation (tools/make_esmm_fixture.py): same
// weights and inputs, compare both outputs (ctr logit, ctcvr logit) and every parameter
// gradient of loss = sum(out * r). CI uses the committed fixture; PyTorch is not needed.
#include <nlohmann/json.hpp>

#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"
#include "testing.hpp"

using namespace mtrank;

namespace {
// |got - want| <= 1e-5 * max(|want|, 0.05 * max|want over the tensor|, 1e-2): relative 1e-5 with
// a small absolute floor for entries near zero (float rounding of sums of many terms).
void expect_close(const float* got, const Tensor& want, const std::string& what) {
  double scale = 0;
  for (Index i = 0; i < want.numel(); ++i) scale = std::max(scale, double(std::abs(want[i])));
  for (Index i = 0; i < want.numel(); ++i) {
    const double tol = 1e-5 * std::max({double(std::abs(want[i])), 0.05 * scale, 1e-2});
    INFO(what << "[" << i << "] got " << got[i] << " want " << want[i]);
    CHECK(std::abs(double(got[i]) - double(want[i])) <= tol);
  }
}
}  // namespace

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
  expect_close(out.data, file.to_float("expected.out"), "out");
  model->backward(r.matrix(), *ws);

  Index checked = 0;
  for (auto& p : model->arena().parameters()) {
    const Tensor want = file.to_float("grad." + p.name);
    REQUIRE(want.numel() == p.numel());
    std::vector<float> got(static_cast<std::size_t>(p.numel()), 0.0f);
    if (p.sparse) {
      const Index w = p.sparse_grad.width();
      for (std::size_t s = 0; s < p.sparse_grad.rows().size(); ++s)
        for (Index c = 0; c < w; ++c) got[p.sparse_grad.rows()[s] * w + c] = p.sparse_grad.values()[s * w + c];
    } else {
      std::copy(p.grad, p.grad + p.numel(), got.begin());
    }
    expect_close(got.data(), want, "grad." + p.name);
    ++checked;
  }
  CHECK(checked == 9);  // embedding table + 2 towers x (2 weights + 2 biases)
}
