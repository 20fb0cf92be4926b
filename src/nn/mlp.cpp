#include "mtrank/nn/mlp.hpp"

namespace mtrank::nn {

template <class T>
Mlp<T>::Mlp(ParameterArenaT<T>& arena, std::string_view prefix, MlpOptions opt) : opt_(std::move(opt)) {
  require(opt_.in > 0, "Mlp '", prefix, "': in must be > 0");
  Index width = opt_.in;
  for (std::size_t i = 0; i < opt_.layers.size(); ++i) {
    const Index out = opt_.layers[i];
    require(out > 0, "Mlp '", prefix, "': layers[", i, "] must be > 0, got ", out);
    const std::string idx = std::to_string(i);
    linears_.emplace_back(arena, join_name(prefix, "layers." + idx), LinearOptions{.in = width, .out = out});
    const bool act = opt_.activate_last || i + 1 < opt_.layers.size();
    if (opt_.batch_norm && act) norms_.emplace_back(arena, join_name(prefix, "norms." + idx), BatchNormOptions{.width = out});
    else norms_.emplace_back();
    acts_.emplace_back(arena, join_name(prefix, "acts." + idx),
                       ActivationOptions{.kind = act ? opt_.activation : ActivationKind::identity, .width = out});
    drops_.emplace_back(DropoutOptions{.p = act ? opt_.dropout : 0.0});
    width = out;
  }
}

namespace {
// The fused form of `kind` after a Linear, or nullopt when it must run separately.
std::optional<kernels::FusedActivation> fusable(ActivationKind kind, bool training) {
  switch (kind) {
    case ActivationKind::identity: return kernels::FusedActivation::identity;
    case ActivationKind::relu: return kernels::FusedActivation::relu;
    case ActivationKind::sigmoid: return kernels::FusedActivation::sigmoid;
    case ActivationKind::tanh: return kernels::FusedActivation::tanh;
    case ActivationKind::gelu:
      if (!training) return kernels::FusedActivation::gelu_erf;
      return std::nullopt;
    case ActivationKind::prelu:
    case ActivationKind::dice: return std::nullopt;
  }
  return std::nullopt;
}
}  // namespace

template <class T>
MatrixView<const T> Mlp<T>::forward(MatrixView<const T> x, Workspace& ws, const Context& ctx) const {
  ws.layers.resize(linears_.size());
  MatrixView<const T> h = x;
  for (std::size_t i = 0; i < linears_.size(); ++i) {
    auto& lw = ws.layers[i];
    lw.fused_gelu = false;
    if (activated(i) && !opt_.batch_norm) {
      if (const auto fa = fusable(acts_[i].kind(), ctx.training)) {
        lw.linear.x = h;
        MatrixView<T> y = ensure(lw.act.y, h.rows, linears_[i].out_features());
        linears_[i].forward_into(h, y, *fa, ctx);
        lw.act.x = y;  // relu backward needs only sign(x) = sign(y); sigmoid / tanh use y
        lw.fused_gelu = *fa == kernels::FusedActivation::gelu_erf;
        h = drops_[i].forward(y, lw.drop, ctx);
        continue;
      }
    }
    h = linears_[i].forward(h, lw.linear, ctx);
    if (!activated(i)) continue;
    if (opt_.batch_norm) h = norms_[i].forward(h, lw.norm, ctx);
    h = acts_[i].forward(h, lw.act, ctx);
    h = drops_[i].forward(h, lw.drop, ctx);
  }
  ws.y = h;
  return h;
}

template <class T>
MatrixView<const T> Mlp<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  MatrixView<const T> g = dy;
  for (std::size_t k = linears_.size(); k-- > 0;) {
    auto& lw = ws.layers[k];
    if (activated(k)) {
      if (lw.fused_gelu) {  // recompute the pre-activation the fused inference forward did not keep
        MatrixView<T> z = ensure(lw.linear.y, lw.linear.x.rows, linears_[k].out_features());
        linears_[k].forward_into(lw.linear.x, z, kernels::FusedActivation::identity, Context::inference());
        lw.act.x = z;
      }
      g = drops_[k].backward(g, lw.drop);
      g = acts_[k].backward(g, lw.act);
      if (opt_.batch_norm) g = norms_[k].backward(g, lw.norm);
    }
    g = linears_[k].backward(g, lw.linear, need_dx || k > 0);
  }
  return need_dx ? g : MatrixView<const T>{};
}

template class Mlp<float>;
template class Mlp<double>;
template class BatchNorm<float>;
template class BatchNorm<double>;

}  // namespace mtrank::nn
