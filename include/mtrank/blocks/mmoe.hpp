// MMoE backbone (Ma et al., KDD 2018): E experts f_e on the shared input, K softmax gates,
// task k's input to its tower is m_k = sum_e g_k(x)_e f_e(x).
//
// Parameters: experts.{e}.<expert params> (e.g. experts.0.layers.0.weight),
//             gates.{k}.weight [E, in], gates.{k}.bias [E].
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/blocks/gate.hpp"

namespace mtrank::blocks {

template <class ExpertOptions = nn::MlpOptions>
struct MmoeOptions {
  Index in = 0;
  Index num_experts = 0;
  Index num_tasks = 0;
  ExpertOptions expert{};        // its `in` is set to `in`
  SoftmaxGateOptions gate{};     // in / num_experts are filled in; bias, temperature, top_k used
  std::vector<SoftmaxGateOptions> task_gates{};  // optional per-task gate options (size num_tasks)
};

template <class E = nn::Mlp<float>>
  requires Expert<E>
class MmoeBackbone {
 public:
  using Scalar = typename E::Scalar;
  using T = Scalar;
  using Options = MmoeOptions<ExpertOptionsOf<E>>;
  struct Workspace {
    std::vector<typename E::Workspace> experts;
    std::vector<MatrixView<const T>> f;
    std::vector<typename SoftmaxGate<T>::Workspace> gates;
    std::vector<TensorT<T>> mix;
    std::vector<MatrixView<const T>> outs;
    std::vector<TensorT<T>> df;
    std::vector<MatrixView<T>> df_views;
    TensorT<T> dg, dx;
  };

  MmoeBackbone() = default;
  MmoeBackbone(ParameterArenaT<T>& arena, std::string_view prefix, Options opt) : opt_(std::move(opt)) {
    require(opt_.in > 0, "MMoE '", prefix, "': in must be > 0, got ", opt_.in);
    require(opt_.num_experts > 0, "MMoE '", prefix, "': num_experts must be > 0 (a gate over zero experts)");
    require(opt_.num_tasks > 0, "MMoE '", prefix, "': num_tasks must be > 0");
    require(opt_.task_gates.empty() || static_cast<Index>(opt_.task_gates.size()) == opt_.num_tasks, "MMoE '",
            prefix, "': task_gates has ", opt_.task_gates.size(), " entries but num_tasks is ", opt_.num_tasks);
    for (Index e = 0; e < opt_.num_experts; ++e)
      experts_.push_back(ExpertTraits<E>::make(arena, join_name(prefix, "experts." + std::to_string(e)), opt_.in,
                                               opt_.expert));
    h_ = experts_[0].out_features();
    for (Index e = 1; e < opt_.num_experts; ++e)
      require(experts_[e].out_features() == h_, "MMoE '", prefix, "': experts.", e, " has output width ",
              experts_[e].out_features(), " but experts.0 has ", h_);
    for (Index k = 0; k < opt_.num_tasks; ++k) {
      SoftmaxGateOptions g = opt_.task_gates.empty() ? opt_.gate : opt_.task_gates[k];
      g.in = opt_.in;
      g.num_experts = opt_.num_experts;
      gates_.emplace_back(arena, join_name(prefix, "gates." + std::to_string(k)), g);
    }
  }

  const std::vector<MatrixView<const T>>& forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    require(x.cols == opt_.in, "MMoE: input has ", x.cols, " columns, expected ", opt_.in);
    const std::size_t NE = experts_.size(), K = gates_.size();
    ws.experts.resize(NE);
    ws.f.resize(NE);
    for (std::size_t e = 0; e < NE; ++e) ws.f[e] = experts_[e].forward(x, ws.experts[e], ctx);
    ws.gates.resize(K);
    ws.mix.resize(K);
    ws.outs.resize(K);
    for (std::size_t k = 0; k < K; ++k) {
      MatrixView<const T> g = gates_[k].forward(x, ws.gates[k], ctx);
      MatrixView<T> m = ensure(ws.mix[k], x.rows, h_);
      mixture_forward(g, ws.f, m);
      ws.outs[k] = m;
    }
    return ws.outs;
  }

  MatrixView<const T> backward(const std::vector<MatrixView<const T>>& d_tasks, Workspace& ws, bool need_dx = true) const {
    const std::size_t NE = experts_.size(), K = gates_.size();
    require(d_tasks.size() == K, "MMoE backward: ", d_tasks.size(), " task gradients but num_tasks is ", K);
    const Index B = ws.outs.empty() ? 0 : ws.outs[0].rows;
    ws.df.resize(NE);
    ws.df_views.resize(NE);
    for (std::size_t e = 0; e < NE; ++e) {
      ws.df_views[e] = ensure(ws.df[e], B, h_);
      ws.df[e].zero();
    }
    MatrixView<T> dx;
    if (need_dx) {
      dx = ensure(ws.dx, B, opt_.in);
      ws.dx.zero();
    }
    MatrixView<T> dg = ensure(ws.dg, B, opt_.num_experts);
    for (std::size_t k = 0; k < K; ++k) {
      require_shape(d_tasks[k], B, h_, "MMoE backward d_tasks[k]");
      mixture_backward(d_tasks[k], MatrixView<const T>(ws.gates[k].g.matrix()), ws.f, dg, ws.df_views);
      MatrixView<const T> dxg = gates_[k].backward(dg, ws.gates[k], need_dx);
      if (need_dx) add_into(dxg, dx);
    }
    for (std::size_t e = 0; e < NE; ++e) {
      MatrixView<const T> dxe = experts_[e].backward(ws.df_views[e], ws.experts[e], need_dx);
      if (need_dx) add_into(dxe, dx);
    }
    return need_dx ? MatrixView<const T>(dx) : MatrixView<const T>{};
  }

  double penalty(double) const { return 0.0; }
  Index num_tasks() const { return opt_.num_tasks; }
  Index num_experts() const { return opt_.num_experts; }
  Index out_features(Index) const { return h_; }
  Index in_features() const { return opt_.in; }
  /// Input columns >= cols are constants: experts and gates skip their gradient.
  void limit_input_grad(Index cols) {
    for (auto& e : experts_) limit_input_grad_if_supported(e, cols);
    for (auto& g : gates_) g.limit_input_grad(cols);
  }
  const E& expert(Index e) const { return experts_[static_cast<std::size_t>(e)]; }
  const SoftmaxGate<T>& gate(Index k) const { return gates_[static_cast<std::size_t>(k)]; }
  const Options& options() const { return opt_; }

 private:
  Options opt_;
  Index h_ = 0;
  std::vector<E> experts_;
  std::vector<SoftmaxGate<T>> gates_;
};

extern template class MmoeBackbone<nn::Mlp<float>>;
extern template class MmoeBackbone<nn::Mlp<double>>;

}  // namespace mtrank::blocks
