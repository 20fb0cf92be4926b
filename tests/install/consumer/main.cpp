// Builds against the installed tree only: a tiny MLP forward pass.
#include <cstdio>

#include <mtrank/nn/mlp.hpp>

int main() {
  mtrank::ParameterArena arena(1);
  mtrank::nn::Mlp<float> mlp(arena, "mlp", {.in = 4, .layers = {8, 1}, .activate_last = false});
  mtrank::Tensor x(mtrank::Shape{2, 4}, 0.5f);
  mtrank::nn::Mlp<float>::Workspace ws;
  auto y = mlp.forward(x.matrix(), ws);
  std::printf("consumer: mlp output shape [%ld, %ld], y[0] = %f\n", (long)y.rows, (long)y.cols, y(0, 0));
  return y.rows == 2 && y.cols == 1 ? 0 : 1;
}
