// Builds against the installed tree only: a tiny MLP forward pass, then a small multi-task model
// served through Predictor with a request built by field name (RequestBuilder).
#include <cstdio>

#include <mtrank/models/model.hpp>
#include <mtrank/nn/mlp.hpp>
#include <mtrank/serve/predictor.hpp>
#include <mtrank/serve/request_builder.hpp>

int main() {
  mtrank::ParameterArena arena(1);
  mtrank::nn::Mlp<float> mlp(arena, "mlp", {.in = 4, .layers = {8, 1}, .activate_last = false});
  mtrank::Tensor x(mtrank::Shape{2, 4}, 0.5f);
  mtrank::nn::Mlp<float>::Workspace ws;
  auto y = mlp.forward(x.matrix(), ws);
  std::printf("consumer: mlp output shape [%ld, %ld], y[0] = %f\n", (long)y.rows, (long)y.cols, y(0, 0));
  if (y.rows != 2 || y.cols != 1) return 1;

  const auto config = nlohmann::json::parse(R"({
    "seed": 1,
    "schema": {"sparse": [{"name": "user_id", "vocab": 100, "dim": 4, "side": "user"},
                          {"name": "item_id", "vocab": 1000, "dim": 4, "side": "item"},
                          {"name": "city", "vocab": 64, "dim": 4, "hash": true, "side": "context"}],
               "dense": [{"name": "item_pop", "side": "item"}],
               "sequences": [{"name": "clicks", "max_len": 8, "table": "item_id"}],
               "tasks": [{"name": "click"}, {"name": "like"}]},
    "model": {"type": "mmoe", "num_experts": 2, "expert": {"layers": [8]}, "tower": {"hidden": [4]}},
    "serving": {"fusion": {"type": "weighted_sum", "weights": {"click": 1, "like": 2}}}})");
  mtrank::serve::Predictor predictor(mtrank::models::build_model(config));
  mtrank::serve::RequestBuilder rb(predictor);
  rb.set_user("user_id", 42).set_user("city", "Paris").set_sequence("clicks", {7, 8, 9}, {2.0f, 1.0f, 0.5f});
  for (int item : {7, 11, 13}) rb.add_candidate({{"item_id", item}, {"item_pop", 0.25 * item}});
  const mtrank::serve::Scores s = predictor.score(rb.request());
  for (mtrank::Index i = 0; i < s.probs.rows; ++i)
    std::printf("consumer: candidate %ld click %.6f like %.6f fused %.6f\n", (long)i, s.probs(i, 0), s.probs(i, 1), s.fused[i]);
  return s.probs.rows == 3 && s.probs.cols == 2 ? 0 : 1;
}
