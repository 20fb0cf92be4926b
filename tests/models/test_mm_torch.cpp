// MM model (type "mm": SNR-Trans, base-task towers, fusion head) against an independent PyTorch
// implementation (tools/make_mm_fixture.py): same config, weights and batch; every output
// (base logits / predictions and the fused score, in schema column order) and every parameter
// gradient of loss = sum(out * r). CI uses the committed fixtures; PyTorch is not needed.
#include "mtrank/models/embedded_model.hpp"
#include "mtrank/models/mm_fusion.hpp"
#include "torch_model_fixture.hpp"

using namespace mtrank;

namespace {
using MmModel = models::EmbeddedModel<models::MmNet<float>>;
std::vector<Tensor>& mm_noise(const models::Model& m, models::Model::Workspace& ws) {
  REQUIRE(dynamic_cast<const MmModel*>(&m) != nullptr);
  return static_cast<MmModel::Work&>(ws).net.base.backbone.fixed_noise;
}
}  // namespace

TEST_CASE("PyTorch parity: mm, fusion mode mlp, detach, inference") {
  // Fused task in the middle of the task list, user field not the first sparse field, a binary
  // and a regression base task; with detach the fused loss reaches only the head and u.
  const auto res = test::run_torch_fixture("mm_mlp.safetensors", mm_noise);
  CHECK(res.mismatches == 0);
  CHECK(res.parameters == 32);
  CHECK(res.nonzero_grads == 32);
}

TEST_CASE("PyTorch parity: mm, fusion mode user_weights, no detach, training with fixed code noise") {
  // Three SNR stages (task_subnet [0, 1, 1], a stage with its own input width), PReLU towers,
  // two-layer fusion Mlp; without detach the fused loss reaches the base towers through q.
  const auto res = test::run_torch_fixture("mm_user_weights.safetensors", mm_noise);
  CHECK(res.mismatches == 0);
  CHECK(res.parameters == 62);
  CHECK(res.nonzero_grads == 61);  // all but one closed connection's transform (code 0)
}
