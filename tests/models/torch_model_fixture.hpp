// Whole-model PyTorch parity from a committed fixture (written by tools/make_*_fixture.py through
// tools/model_fixture_torch.py): the fixture's metadata holds the JSON config, the model is built
// from it with models::build_model, the fixture's weights are loaded by name, and the forward
// outputs and every parameter gradient of loss = sum(out * r) are compared with PyTorch's.
#pragma once
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"
#include "testing.hpp"

namespace mtrank::test {

// |got - want| <= rel * max(|want|, 0.05 * max|want over the tensor|, 1e-2): relative error with
// a small absolute floor for entries near zero (float rounding of sums of many terms).
inline Index count_far(const float* got, const Tensor& want, const std::string& what, double rel) {
  double scale = 0;
  for (Index i = 0; i < want.numel(); ++i) scale = std::max(scale, double(std::abs(want[i])));
  Index bad = 0;
  for (Index i = 0; i < want.numel(); ++i) {
    const double tol = rel * std::max({double(std::abs(want[i])), 0.05 * scale, 1e-2});
    INFO(what << "[" << i << "] got " << got[i] << " want " << want[i]);
    const bool ok = std::abs(double(got[i]) - double(want[i])) <= tol;
    CHECK(ok);
    bad += ok ? 0 : 1;
  }
  return bad;
}

/// count_far where the caller needs no count.
inline void expect_close(const float* got, const Tensor& want, const std::string& what, double rel = 1e-5) {
  count_far(got, want, what, rel);
}

/// A parameter's gradient as a dense vector of numel() entries (sparse-row gradients scattered
/// into their rows).
inline std::vector<float> dense_gradient(const Parameter<float>& p) {
  std::vector<float> got(static_cast<std::size_t>(p.numel()), 0.0f);
  if (p.sparse) {
    const Index w = p.sparse_grad.width();
    for (std::size_t s = 0; s < p.sparse_grad.rows().size(); ++s)
      for (Index c = 0; c < w; ++c) got[p.sparse_grad.rows()[s] * w + c] += p.sparse_grad.values()[s * w + c];
  } else {
    std::copy(p.grad, p.grad + p.numel(), got.begin());
  }
  return got;
}

struct TorchFixtureResult {
  Index parameters = 0;       // parameters whose gradient was compared
  Index nonzero_grads = 0;    // of those, parameters with a non-zero expected gradient
  Index mismatches = 0;       // entries outside the tolerance (outputs and gradients)
};

/// Access to the model's SNR fixed-noise slot (SnrBackbone::Workspace::fixed_noise) inside a
/// workspace, for fixtures recorded in training context.
using NoiseSlot = std::function<std::vector<Tensor>&(const models::Model&, models::Model::Workspace&)>;

inline TorchFixtureResult run_torch_fixture(const std::string& name, const NoiseSlot& noise_slot, double rel = 1e-5) {
  const auto path = std::filesystem::path(MTRANK_SOURCE_DIR) / "tests/fixtures/models" / name;
  const auto file = io::SafetensorsFile::load(path);
  const nlohmann::json config = nlohmann::json::parse(file.metadata().at("config"));
  const std::string context = file.metadata().at("context");
  auto model = models::build_model(config);
  const io::LoadReport report = io::load_arena(model->arena(), file, {.allow_unexpected = true});
  // Every tensor that is not a parameter is an input, an expected value or a gradient: the
  // reference and mtrank agree on the parameter set exactly.
  for (const auto& u : report.unexpected) {
    INFO("fixture tensor " << u << " names no parameter of the model");
    CHECK((u.rfind("input.", 0) == 0 || u.rfind("expected.", 0) == 0 || u.rfind("grad.", 0) == 0));
  }
  const data::FeatureSchema& schema = model->schema();

  data::Batch b;
  const auto sparse = file.to_int64("input.sparse");
  const Tensor dense = file.to_float("input.dense");
  const Tensor r = file.to_float("input.r");
  b.size = r.dim(0);
  b.sparse.assign(sparse.begin(), sparse.end());
  b.dense = dense;
  if (file.find("input.scene")) {
    for (auto s : file.to_int64("input.scene")) b.scene.push_back(static_cast<std::int32_t>(s));
  }
  for (const auto& q : schema.sequences) {
    data::SequenceColumn col;
    col.ids = file.to_int64("input.seq." + q.name + ".ids");
    col.offsets = file.to_int64("input.seq." + q.name + ".offsets");
    b.sequences.push_back(std::move(col));
  }

  auto ws = model->make_workspace();
  Rng rng(7);
  Context ctx = Context::inference();
  if (context == "training") {
    REQUIRE(noise_slot);
    auto& noise = noise_slot(*model, *ws);
    noise.clear();
    for (int i = 0; file.find("input.noise." + std::to_string(i)); ++i) noise.push_back(file.to_float("input.noise." + std::to_string(i)));
    REQUIRE(!noise.empty());
    ctx = Context::train(rng);
  } else {
    REQUIRE(context == "inference");
  }

  TorchFixtureResult res;
  model->arena().zero_grad();
  ConstMat out = model->forward(b, *ws, ctx);
  REQUIRE(out.rows == b.size);
  REQUIRE(out.cols == schema.num_tasks());
  const Tensor want_out = file.to_float("expected.out");
  std::vector<float> got_out(static_cast<std::size_t>(out.rows * out.cols));
  for (Index i = 0; i < out.rows; ++i)
    for (Index k = 0; k < out.cols; ++k) got_out[i * out.cols + k] = out(i, k);
  res.mismatches += count_far(got_out.data(), want_out, name + " out", rel);
  model->backward(r.matrix(), *ws);

  for (auto& p : model->arena().parameters()) {
    const Tensor want = file.to_float("grad." + p.name);
    REQUIRE(want.numel() == p.numel());
    res.mismatches += count_far(dense_gradient(p).data(), want, name + " grad." + p.name, rel);
    ++res.parameters;
    bool nonzero = false;
    for (Index i = 0; i < want.numel(); ++i) nonzero = nonzero || want[i] != 0.0f;
    res.nonzero_grads += nonzero ? 1 : 0;
  }
  return res;
}

}  // namespace mtrank::test
