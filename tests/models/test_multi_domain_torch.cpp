// Multi-domain model (type "multi_domain") against an independent PyTorch implementation
// (tools/make_multi_domain_fixture.py): same config, weights and batch; every output and every
// parameter gradient (embedding tables, scene embedding and per-scene transforms included) of
// loss = sum(out * r). CI uses the committed fixtures; PyTorch is not needed.
#include "mtrank/models/multi_domain.hpp"
#include "torch_model_fixture.hpp"

using namespace mtrank;

namespace {
std::vector<Tensor>& multi_domain_noise(const models::Model& m, models::Model::Workspace& ws) {
  const auto& md = dynamic_cast<const models::MultiDomainModel&>(m);
  return models::MultiDomainNet<float>::fixed_noise(static_cast<models::MultiDomainModel::Work&>(ws).net,
                                                    md.net().options());
}
}  // namespace

TEST_CASE("PyTorch parity: multi_domain, SNR-Trans, inference, 3 scenes, all wirings") {
  // Slot-wise EPNet with a domain field, transform with bias, expert gates, PPNet on the default
  // priors, a sequence sharing item_id's table, one route code clamped at 1 and one at 0.
  const auto res = test::run_torch_fixture("multi_domain.safetensors", multi_domain_noise);
  CHECK(res.mismatches == 0);
  CHECK(res.parameters == 80);
  CHECK(res.nonzero_grads == 79);  // all but the closed connection's transform (code 0)
}

TEST_CASE("PyTorch parity: multi_domain, SNR-Aver, training with fixed code noise, unit-wise gate") {
  // Three SNR stages with task_subnet [1, 0], transform to out_dim 3 without bias, unit-wise
  // EPNet, explicit PPNet prior, two PReLU tower layers, sum pooling, dot interactions.
  const auto res = test::run_torch_fixture("multi_domain_train_aver.safetensors", multi_domain_noise);
  CHECK(res.mismatches == 0);
  CHECK(res.parameters == 89);
  CHECK(res.nonzero_grads == 89);  // the codes mix closed (0), open and clamped-at-1 connections
}

TEST_CASE("PyTorch parity: multi_domain wiring ablation, E' into the backbone, O into expert gates and PPNet") {
  // No embedding transform, wiring.features off: O is read only through sg(.), so the EPNet gate
  // gets no gradient (docs/models.md) and the reference agrees.
  const auto res = test::run_torch_fixture("multi_domain_wiring_experts_towers.safetensors", multi_domain_noise);
  CHECK(res.mismatches == 0);
  CHECK(res.parameters == 54);
  CHECK(res.nonzero_grads == 50);  // all but epnet.gate.layers.{0,1}.{weight,bias}
}

TEST_CASE("PyTorch parity: multi_domain wiring ablation, O into the backbone only, linear towers") {
  const auto res = test::run_torch_fixture("multi_domain_wiring_features.safetensors", multi_domain_noise);
  CHECK(res.mismatches == 0);
  CHECK(res.parameters == 38);
  CHECK(res.nonzero_grads == 38);
}
