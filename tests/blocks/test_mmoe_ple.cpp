#include "block_testing.hpp"
#include "mtrank/blocks/mmoe.hpp"
#include "mtrank/blocks/ple.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using mtrank::blocks::testing::check_backbone;
using mtrank::testing::random_tensor;

using MlpD = nn::Mlp<double>;

static_assert(MultiTaskBackbone<MmoeBackbone<MlpD>>);
static_assert(MultiTaskBackbone<PleBackbone<MlpD>>);
static_assert(Expert<MlpD>);

TEST_CASE("MMoE: parameter names, output shapes and the mixture definition") {
  ParameterArenaT<double> arena(1);
  MmoeBackbone<MlpD> mmoe(arena, "",
                          {.in = 5, .num_experts = 3, .num_tasks = 2, .expert = {.layers = {6, 4}}});
  for (const char* n : {"experts.0.layers.0.weight", "experts.2.layers.1.bias", "gates.0.weight", "gates.1.bias"})
    CHECK(arena.find(n) != nullptr);
  CHECK(arena.at("gates.1.weight").shape == Shape{3, 5});
  Rng rng(2);
  TensorT<double> x = random_tensor<double>(Shape{4, 5}, rng);
  MmoeBackbone<MlpD>::Workspace ws;
  const auto& outs = mmoe.forward(x.matrix(), ws);
  REQUIRE(outs.size() == 2);
  CHECK(outs[1].rows == 4);
  CHECK(outs[1].cols == 4);
  // Recompute task 1 from its parts.
  typename MlpD::Workspace ew;
  typename SoftmaxGate<double>::Workspace gw;
  auto g = mmoe.gate(1).forward(x.matrix(), gw);
  TensorT<double> ref(Shape{4, 4}, 0.0);
  for (Index e = 0; e < 3; ++e) {
    auto f = mmoe.expert(e).forward(x.matrix(), ew);
    for (Index b = 0; b < 4; ++b)
      for (Index c = 0; c < 4; ++c) ref.matrix()(b, c) += g(b, e) * f(b, c);
  }
  for (Index b = 0; b < 4; ++b)
    for (Index c = 0; c < 4; ++c) CHECK(outs[1](b, c) == Approx(ref.matrix()(b, c)).epsilon(1e-12));
  CHECK(mmoe.penalty(1.0) == 0.0);
}

TEST_CASE("MMoE gradients match finite differences") {
  for (Index top_k : {Index(0), Index(2)}) {
    for (bool training : {false, true}) {
      INFO("top_k " << top_k << " training " << training);
      ParameterArenaT<double> arena(5);
      MmoeBackbone<MlpD> mmoe(arena, "mmoe",
                              {.in = 4, .num_experts = 3, .num_tasks = 3,
                               .expert = {.layers = {5, 3}, .activation = nn::ActivationKind::tanh},
                               .gate = {.temperature = 1.3, .top_k = top_k}});
      MmoeBackbone<MlpD>::Workspace ws;
      auto rep = check_backbone(arena, mmoe, 5, [&] { return Context{training, nullptr}; }, ws);
      INFO(rep.worst);
      CHECK(rep.checked > 100);
      CHECK(rep.max_error < 1e-6);
    }
  }
}

TEST_CASE("MMoE: bad configs name the field") {
  ParameterArena arena;
  using M = MmoeBackbone<nn::Mlp<float>>;
  CHECK_THROWS_WITH(M(arena, "a", {.in = 4, .num_experts = 0, .num_tasks = 2, .expert = {.layers = {3}}}),
                    Catch::Contains("num_experts") && Catch::Contains("zero experts"));
  CHECK_THROWS_WITH(M(arena, "b", {.in = 4, .num_experts = 2, .num_tasks = 2, .expert = {.layers = {3}},
                                   .task_gates = {SoftmaxGateOptions{}}}),
                    Catch::Contains("task_gates has 1 entries but num_tasks is 2"));
  CHECK_THROWS_WITH(M(arena, "c", {.in = 4, .num_experts = 2, .num_tasks = 1, .expert = {.layers = {3}},
                                   .gate = {.top_k = 3}}),
                    Catch::Contains("top_k 3"));
  M ok(arena, "d", {.in = 4, .num_experts = 2, .num_tasks = 2, .expert = {.layers = {3}}});
  M::Workspace ws;
  Tensor x(Shape{2, 4}, 0.5f);
  ok.forward(x.matrix(), ws);
  std::vector<MatrixView<const float>> one{ws.outs[0]};
  CHECK_THROWS_WITH(ok.backward(one, ws), Catch::Contains("1 task gradients but num_tasks is 2"));
  Tensor bad(Shape{2, 3});
  CHECK_THROWS_WITH(ok.forward(bad.matrix(), ws), Catch::Contains("expected 4"));
}

TEST_CASE("PLE: parameter names and gate widths follow the level structure") {
  ParameterArenaT<double> arena(1);
  PleBackbone<MlpD> ple(arena, "",
                        {.in = 6, .num_tasks = 2,
                         .levels = {{.num_task_experts = 2, .num_shared_experts = 1,
                                     .task_expert = {.layers = {4}}, .shared_expert = {.layers = {5, 4}}},
                                    {.num_task_experts = 1, .num_shared_experts = 2,
                                     .task_expert = {.layers = {3}}, .shared_expert = {.layers = {3}}}}});
  CHECK(arena.at("levels.0.task_experts.1.1.layers.0.weight").shape == Shape{4, 6});
  CHECK(arena.at("levels.0.shared_experts.0.layers.1.weight").shape == Shape{4, 5});
  CHECK(arena.at("levels.0.task_gates.0.weight").shape == Shape{3, 6});   // 2 own + 1 shared
  CHECK(arena.at("levels.0.shared_gate.weight").shape == Shape{5, 6});    // 2*2 task + 1 shared
  CHECK(arena.at("levels.1.task_gates.1.weight").shape == Shape{3, 4});   // 1 own + 2 shared
  CHECK(arena.find("levels.1.shared_gate.weight") == nullptr);            // last level: no shared gate
  CHECK(arena.at("levels.1.task_experts.0.0.layers.0.weight").shape == Shape{3, 4});
  CHECK(ple.out_features(0) == 3);
  CHECK(ple.num_levels() == 2);
}

TEST_CASE("PLE and CGC gradients match finite differences") {
  struct Case {
    std::vector<PleLevelSpec<nn::MlpOptions>> levels;
    Index tasks;
  };
  nn::MlpOptions e4{.layers = {4}, .activation = nn::ActivationKind::tanh};
  nn::MlpOptions e3{.layers = {5, 3}, .activation = nn::ActivationKind::gelu};
  std::vector<Case> cases{
      {{{.num_task_experts = 1, .num_shared_experts = 2, .task_expert = e4, .shared_expert = e4}}, 2},  // CGC
      {{{.num_task_experts = 2, .num_shared_experts = 1, .task_expert = e4, .shared_expert = e4},
        {.num_task_experts = 1, .num_shared_experts = 1, .task_expert = e3, .shared_expert = e3}},
       2},
      {{{.num_task_experts = 1, .num_shared_experts = 1, .task_expert = e4, .shared_expert = e4},
        {.num_task_experts = 0, .num_shared_experts = 2, .task_expert = e3, .shared_expert = e3},
        {.num_task_experts = 2, .num_shared_experts = 0, .task_expert = e3, .shared_expert = e3}},
       3},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    INFO("case " << i);
    ParameterArenaT<double> arena(9);
    PleBackbone<MlpD> ple(arena, "ple", {.in = 5, .num_tasks = cases[i].tasks, .levels = cases[i].levels,
                                         .gate = {.temperature = 0.8}});
    PleBackbone<MlpD>::Workspace ws;
    auto rep = check_backbone(arena, ple, 4, [] { return Context{}; }, ws);
    INFO(rep.worst);
    CHECK(rep.checked > 100);
    CHECK(rep.max_error < 1e-6);
  }
}

TEST_CASE("PLE: bad configs name the field") {
  ParameterArena arena;
  using P = PleBackbone<nn::Mlp<float>>;
  CHECK_THROWS_WITH(P(arena, "a", {.in = 4, .num_tasks = 2,
                                   .levels = {{.num_task_experts = 0, .num_shared_experts = 0,
                                               .task_expert = {.layers = {3}}, .shared_expert = {.layers = {3}}}}}),
                    Catch::Contains("zero experts"));
  CHECK_THROWS_WITH(P(arena, "b", {.in = 4, .num_tasks = 2,
                                   .levels = {{.task_expert = {.layers = {3}}, .shared_expert = {.layers = {4}}}}}),
                    Catch::Contains("shared_experts.0 has output width 4"));
  CHECK_THROWS_WITH(P(arena, "c", {.in = 4, .num_tasks = 2}), Catch::Contains("levels must not be empty"));
  CHECK_THROWS_WITH(P(arena, "d", {.in = 4, .num_tasks = 1, .levels = {{.task_expert = {.layers = {3}},
                                                                      .shared_expert = {.layers = {3}}}},
                                   .gate = {.top_k = 5}}),
                    Catch::Contains("top_k 5"));
}
