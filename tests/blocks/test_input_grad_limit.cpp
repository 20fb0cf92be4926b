// limit_input_grad on the multi-task backbones: with input columns >= cols declared constant,
// a backbone's parameter gradients and the leading dx columns are exactly those of an unlimited
// twin (same weights, same input), and the trailing dx columns are 0. The twin's gradients are
// the ones the finite-difference tests (test_mmoe_ple.cpp, test_snr.cpp) check.
#include "block_testing.hpp"
#include "mtrank/blocks/mmoe.hpp"
#include "mtrank/blocks/ple.hpp"
#include "mtrank/blocks/snr.hpp"
#include "mtrank/models/multitask_net.hpp"
#include "mtrank/models/shared_bottom.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using mtrank::testing::random_tensor;
using mtrank::testing::random_vector;

using MlpD = nn::Mlp<double>;

namespace {

template <class Backbone, class Make>
void check_limited_twin(const Make& make, Index cols) {
  ParameterArenaT<double> arena_full(6), arena_part(6);
  Backbone full = make(arena_full);
  Backbone part = make(arena_part);
  static_assert(LimitsInputGrad<Backbone>);
  part.limit_input_grad(cols);
  const Index B = 5, in = full.in_features();
  Rng rng(21);
  const TensorT<double> x = random_tensor<double>(Shape{B, in}, rng);
  std::vector<TensorT<double>> dys;
  for (Index k = 0; k < full.num_tasks(); ++k) {
    dys.emplace_back(Shape{B, full.out_features(k)});
    const auto r = random_vector(static_cast<std::size_t>(dys.back().numel()), rng);
    std::copy(r.begin(), r.end(), dys.back().begin());
  }
  std::vector<MatrixView<const double>> d;
  for (auto& t : dys) d.push_back(t.matrix());
  typename Backbone::Workspace wf, wp;
  full.forward(x.matrix(), wf, Context{});
  part.forward(x.matrix(), wp, Context{});
  const auto dx_full = full.backward(d, wf, true);
  const auto dx_part = part.backward(d, wp, true);
  REQUIRE(dx_part.rows == B);
  REQUIRE(dx_part.cols == in);
  for (Index r = 0; r < B; ++r)
    for (Index c = 0; c < in; ++c) {
      CAPTURE(r, c);
      CHECK(dx_part(r, c) == (c < cols ? dx_full(r, c) : 0.0));
    }
  std::size_t compared = 0;
  for (const auto& p : arena_full.parameters()) {
    if (!p.trainable) continue;
    CAPTURE(p.name);
    const auto& q = arena_part.at(p.name);
    for (Index i = 0; i < p.numel(); ++i) CHECK(p.grad[i] == q.grad[i]);
    ++compared;
  }
  CHECK(compared >= 4);
}

}  // namespace

TEST_CASE("limit_input_grad: MMoE, PLE, SNR and shared-bottom keep their gradients, dx tail is 0") {
  const nn::MlpOptions e{.layers = {6, 4}, .activation = nn::ActivationKind::tanh};
  for (const Index cols : {Index(0), Index(3), Index(7)}) {
    CAPTURE(cols);
    check_limited_twin<MmoeBackbone<MlpD>>(
        [&](ParameterArenaT<double>& a) {
          return MmoeBackbone<MlpD>(a, "mmoe", {.in = 7, .num_experts = 3, .num_tasks = 2, .expert = e});
        },
        cols);
    check_limited_twin<PleBackbone<MlpD>>(
        [&](ParameterArenaT<double>& a) {
          return PleBackbone<MlpD>(
              a, "ple",
              {.in = 7,
               .num_tasks = 2,
               .levels = {{.num_task_experts = 1, .num_shared_experts = 1, .task_expert = e, .shared_expert = e},
                          {.num_task_experts = 1, .num_shared_experts = 1, .task_expert = e, .shared_expert = e}}});
        },
        cols);
    check_limited_twin<SnrAverBackbone<MlpD>>(
        [&](ParameterArenaT<double>& a) {
          return SnrAverBackbone<MlpD>(a, "snr",
                                       {.in = 7,
                                        .num_tasks = 2,
                                        .stages = {{.num_subnets = 3, .subnet = e}, {.num_subnets = 2, .subnet = e}},
                                        .code = {.log_alpha_mean = 1.0, .log_alpha_std = 1.5}});
        },
        cols);
    check_limited_twin<models::SharedBottom<double>>(
        [&](ParameterArenaT<double>& a) {
          return models::SharedBottom<double>(a, "sb", {.in = 7, .num_tasks = 2, .bottom = e});
        },
        cols);
  }
}
