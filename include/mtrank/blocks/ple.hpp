// CGC / PLE (Tang et al., RecSys 2020): progressive layered extraction.
//
// One extraction level (CgcLevel) with K tasks, n_t task-specific experts per task and n_s
// shared experts, all with output width h:
//   task k:   m_k = sum over [E_k,1..E_k,n_t ; S_1..S_n_s] of g_k(x_k) * expert(input)
//             g_k = softmax gate on the task input x_k over n_t + n_s experts
//   shared:   m_s = sum over all K*n_t + n_s experts of g_s(x_s) * expert(input)
//             (only on levels that feed another level, i.e. all but the last)
//   task experts of task k read x_k; shared experts read x_s.
// PleBackbone stacks levels: level 0 gets x_k = x_s = x; level l+1 gets x_k = m_k and
// x_s = m_s of level l; the towers read the last level's m_k. CGC is PLE with one level.
//
// Parameters (level l):
//   levels.{l}.task_experts.{k}.{e}.<expert params>   levels.{l}.shared_experts.{e}.<...>
//   levels.{l}.task_gates.{k}.weight/bias              levels.{l}.shared_gate.weight/bias
// The gate columns are ordered [task k's experts; shared experts] for task gates and
// [task 0's experts; ...; task K-1's experts; shared experts] for the shared gate.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/blocks/gate.hpp"

namespace mtrank::blocks {

template <class ExpertOptions = nn::MlpOptions>
struct CgcLevelOptions {
  Index in = 0;  // width of every task input and of the shared input
  Index num_tasks = 0;
  Index num_task_experts = 1;    // per task
  Index num_shared_experts = 1;
  ExpertOptions task_expert{};
  ExpertOptions shared_expert{};
  SoftmaxGateOptions gate{};  // bias / temperature / top_k for every gate of the level
  bool shared_gate = false;   // true on every level except the last
};

template <class E = nn::Mlp<float>>
  requires Expert<E>
class CgcLevel {
 public:
  using Scalar = typename E::Scalar;
  using T = Scalar;
  using Options = CgcLevelOptions<ExpertOptionsOf<E>>;
  struct Workspace {
    std::vector<typename E::Workspace> experts;  // task experts (k-major) then shared experts
    std::vector<MatrixView<const T>> f;
    std::vector<typename SoftmaxGate<T>::Workspace> gates;  // K task gates then the shared gate
    std::vector<TensorT<T>> mix;                            // K task mixtures then the shared one
    std::vector<MatrixView<const T>> task_out;
    MatrixView<const T> shared_out;
    std::vector<MatrixView<const T>> sel;  // scratch: the experts one gate mixes
    std::vector<MatrixView<T>> dsel;
    std::vector<TensorT<T>> df;
    std::vector<MatrixView<T>> df_views;
    TensorT<T> dg;
    std::vector<TensorT<T>> d_in;  // K task-input grads then the shared-input grad
    std::vector<MatrixView<const T>> d_task_in;
    MatrixView<const T> d_shared_in;
  };

  CgcLevel() = default;
  CgcLevel(ParameterArenaT<T>& arena, std::string_view prefix, Options opt) : opt_(std::move(opt)), name_(prefix) {
    require(opt_.in > 0, "CGC level '", prefix, "': in must be > 0, got ", opt_.in);
    require(opt_.num_tasks > 0, "CGC level '", prefix, "': num_tasks must be > 0");
    require(opt_.num_task_experts >= 0 && opt_.num_shared_experts >= 0, "CGC level '", prefix,
            "': num_task_experts and num_shared_experts must be >= 0");
    require(opt_.num_task_experts + opt_.num_shared_experts > 0, "CGC level '", prefix,
            "': num_task_experts + num_shared_experts must be > 0 (a gate over zero experts)");
    const Index K = opt_.num_tasks, nt = opt_.num_task_experts, ns = opt_.num_shared_experts;
    for (Index k = 0; k < K; ++k)
      for (Index e = 0; e < nt; ++e)
        experts_.push_back(ExpertTraits<E>::make(
            arena, join_name(prefix, "task_experts." + std::to_string(k) + "." + std::to_string(e)), opt_.in,
            opt_.task_expert));
    for (Index e = 0; e < ns; ++e)
      experts_.push_back(ExpertTraits<E>::make(arena, join_name(prefix, "shared_experts." + std::to_string(e)),
                                               opt_.in, opt_.shared_expert));
    h_ = experts_[0].out_features();
    for (std::size_t i = 0; i < experts_.size(); ++i)
      require(experts_[i].out_features() == h_, "CGC level '", prefix, "': ", expert_name(static_cast<Index>(i)),
              " has output width ", experts_[i].out_features(), " but ", expert_name(0), " has ", h_,
              " (task_expert and shared_expert must end at the same width)");
    for (Index k = 0; k < K; ++k) {
      SoftmaxGateOptions g = opt_.gate;
      g.in = opt_.in;
      g.num_experts = nt + ns;
      gates_.emplace_back(arena, join_name(prefix, "task_gates." + std::to_string(k)), g);
    }
    if (opt_.shared_gate) {
      SoftmaxGateOptions g = opt_.gate;
      g.in = opt_.in;
      g.num_experts = K * nt + ns;
      gates_.emplace_back(arena, join_name(prefix, "shared_gate"), g);
    }
  }

  /// task_in: K inputs [B, in]; shared_in [B, in]. Outputs in ws.task_out (and ws.shared_out).
  const std::vector<MatrixView<const T>>& forward(const std::vector<MatrixView<const T>>& task_in,
                                                  MatrixView<const T> shared_in, Workspace& ws,
                                                  const Context& ctx = {}) const {
    const Index K = opt_.num_tasks, nt = opt_.num_task_experts;
    require(static_cast<Index>(task_in.size()) == K, "CGC level '", name_, "': ", task_in.size(),
            " task inputs but num_tasks is ", K);
    for (Index k = 0; k < K; ++k) require_shape(task_in[k], shared_in.rows, opt_.in, "CGC level task input");
    require_shape(shared_in, shared_in.rows, opt_.in, "CGC level shared input");
    const Index B = shared_in.rows;
    ws.experts.resize(experts_.size());
    ws.f.resize(experts_.size());
    for (Index i = 0; i < static_cast<Index>(experts_.size()); ++i) {
      MatrixView<const T> in = i < K * nt ? task_in[static_cast<std::size_t>(i / nt)] : shared_in;
      ws.f[i] = experts_[i].forward(in, ws.experts[i], ctx);
    }
    ws.gates.resize(gates_.size());
    ws.mix.resize(gates_.size());
    ws.task_out.resize(static_cast<std::size_t>(K));
    for (std::size_t gi = 0; gi < gates_.size(); ++gi) {
      const bool shared = static_cast<Index>(gi) == K;
      MatrixView<const T> gin = shared ? shared_in : task_in[gi];
      MatrixView<const T> g = gates_[gi].forward(gin, ws.gates[gi], ctx);
      select(static_cast<Index>(gi), ws.f, ws.sel);
      MatrixView<T> m = ensure(ws.mix[gi], B, h_);
      mixture_forward(g, ws.sel, m);
      if (shared) ws.shared_out = m;
      else ws.task_out[gi] = m;
    }
    if (!opt_.shared_gate) ws.shared_out = {};
    return ws.task_out;
  }

  /// d_task_out: K grads [B, h]; d_shared_out: grad of the shared mixture (empty when the level
  /// has no shared gate or it is unused). Results in ws.d_task_in (K) and ws.d_shared_in.
  void backward(const std::vector<MatrixView<const T>>& d_task_out, MatrixView<const T> d_shared_out, Workspace& ws,
                bool need_dx = true) const {
    const Index K = opt_.num_tasks, nt = opt_.num_task_experts;
    require(static_cast<Index>(d_task_out.size()) == K, "CGC level '", name_, "' backward: ", d_task_out.size(),
            " task gradients but num_tasks is ", K);
    const Index B = ws.task_out.empty() ? 0 : ws.task_out[0].rows;
    ws.df.resize(experts_.size());
    ws.df_views.resize(experts_.size());
    for (std::size_t i = 0; i < experts_.size(); ++i) {
      ws.df_views[i] = ensure(ws.df[i], B, h_);
      ws.df[i].zero();
    }
    ws.d_in.resize(static_cast<std::size_t>(K + 1));
    std::vector<MatrixView<T>> d_in(static_cast<std::size_t>(K + 1));
    if (need_dx)
      for (Index k = 0; k <= K; ++k) {
        d_in[k] = ensure(ws.d_in[k], B, opt_.in);
        ws.d_in[k].zero();
      }
    for (std::size_t gi = 0; gi < gates_.size(); ++gi) {
      const bool shared = static_cast<Index>(gi) == K;
      MatrixView<const T> dm = shared ? d_shared_out : d_task_out[gi];
      if (shared && dm.empty()) continue;
      require_shape(dm, B, h_, "CGC level backward mixture gradient");
      select(static_cast<Index>(gi), ws.f, ws.sel);
      select_mut(static_cast<Index>(gi), ws.df_views, ws.dsel);
      MatrixView<T> dg = ensure(ws.dg, B, gates_[gi].num_experts());
      mixture_backward(dm, MatrixView<const T>(ws.gates[gi].g.matrix()), ws.sel, dg, ws.dsel);
      MatrixView<const T> dxg = gates_[gi].backward(dg, ws.gates[gi], need_dx);
      if (need_dx) add_into(dxg, d_in[shared ? K : gi]);
    }
    for (Index i = 0; i < static_cast<Index>(experts_.size()); ++i) {
      MatrixView<const T> dxe = experts_[i].backward(ws.df_views[i], ws.experts[i], need_dx);
      if (need_dx) add_into(dxe, d_in[i < K * nt ? i / nt : K]);
    }
    ws.d_task_in.assign(static_cast<std::size_t>(K), MatrixView<const T>{});
    ws.d_shared_in = {};
    if (need_dx) {
      for (Index k = 0; k < K; ++k) ws.d_task_in[k] = d_in[k];
      ws.d_shared_in = d_in[K];
    }
  }

  Index num_tasks() const { return opt_.num_tasks; }
  Index in_features() const { return opt_.in; }
  /// Input columns >= cols are constants (a first level: every expert and gate reads the input).
  void limit_input_grad(Index cols) {
    for (auto& e : experts_) limit_input_grad_if_supported(e, cols);
    for (auto& g : gates_) g.limit_input_grad(cols);
  }
  Index out_features() const { return h_; }
  bool has_shared_gate() const { return opt_.shared_gate; }
  const Options& options() const { return opt_; }

 private:
  std::string expert_name(Index i) const {
    const Index nt = opt_.num_task_experts, K = opt_.num_tasks;
    if (i < K * nt) return "task_experts." + std::to_string(i / nt) + "." + std::to_string(i % nt);
    return "shared_experts." + std::to_string(i - K * nt);
  }
  // The experts gate `gi` mixes, in gate-column order.
  template <class V>
  void select_impl(Index gi, const std::vector<V>& all, std::vector<V>& out) const {
    const Index K = opt_.num_tasks, nt = opt_.num_task_experts, ns = opt_.num_shared_experts;
    out.clear();
    if (gi == K) {
      out.assign(all.begin(), all.end());
      return;
    }
    for (Index e = 0; e < nt; ++e) out.push_back(all[static_cast<std::size_t>(gi * nt + e)]);
    for (Index e = 0; e < ns; ++e) out.push_back(all[static_cast<std::size_t>(K * nt + e)]);
  }
  void select(Index gi, const std::vector<MatrixView<const T>>& all, std::vector<MatrixView<const T>>& out) const {
    select_impl(gi, all, out);
  }
  void select_mut(Index gi, const std::vector<MatrixView<T>>& all, std::vector<MatrixView<T>>& out) const {
    select_impl(gi, all, out);
  }

  Options opt_;
  std::string name_;
  Index h_ = 0;
  std::vector<E> experts_;
  std::vector<SoftmaxGate<T>> gates_;
};

template <class ExpertOptions = nn::MlpOptions>
struct PleLevelSpec {
  Index num_task_experts = 1;
  Index num_shared_experts = 1;
  ExpertOptions task_expert{};
  ExpertOptions shared_expert{};
};

template <class ExpertOptions = nn::MlpOptions>
struct PleOptions {
  Index in = 0;
  Index num_tasks = 0;
  std::vector<PleLevelSpec<ExpertOptions>> levels;  // one level = CGC
  SoftmaxGateOptions gate{};                        // bias / temperature / top_k for every gate
};

template <class E = nn::Mlp<float>>
  requires Expert<E>
class PleBackbone {
 public:
  using Scalar = typename E::Scalar;
  using T = Scalar;
  using Options = PleOptions<ExpertOptionsOf<E>>;
  struct Workspace {
    std::vector<typename CgcLevel<E>::Workspace> levels;
    std::vector<MatrixView<const T>> first_in;
    std::vector<MatrixView<const T>> outs;
    TensorT<T> dx;
  };

  PleBackbone() = default;
  PleBackbone(ParameterArenaT<T>& arena, std::string_view prefix, Options opt) : opt_(std::move(opt)) {
    require(opt_.in > 0, "PLE '", prefix, "': in must be > 0, got ", opt_.in);
    require(!opt_.levels.empty(), "PLE '", prefix, "': levels must not be empty");
    require(opt_.num_tasks > 0, "PLE '", prefix, "': num_tasks must be > 0");
    Index width = opt_.in;
    for (std::size_t l = 0; l < opt_.levels.size(); ++l) {
      const auto& s = opt_.levels[l];
      levels_.emplace_back(arena, join_name(prefix, "levels." + std::to_string(l)),
                           typename CgcLevel<E>::Options{.in = width,
                                                         .num_tasks = opt_.num_tasks,
                                                         .num_task_experts = s.num_task_experts,
                                                         .num_shared_experts = s.num_shared_experts,
                                                         .task_expert = s.task_expert,
                                                         .shared_expert = s.shared_expert,
                                                         .gate = opt_.gate,
                                                         .shared_gate = l + 1 < opt_.levels.size()});
      width = levels_.back().out_features();
    }
  }

  const std::vector<MatrixView<const T>>& forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    require(x.cols == opt_.in, "PLE: input has ", x.cols, " columns, expected ", opt_.in);
    ws.levels.resize(levels_.size());
    ws.first_in.assign(static_cast<std::size_t>(opt_.num_tasks), x);
    const std::vector<MatrixView<const T>>* task_in = &ws.first_in;
    MatrixView<const T> shared_in = x;
    for (std::size_t l = 0; l < levels_.size(); ++l) {
      task_in = &levels_[l].forward(*task_in, shared_in, ws.levels[l], ctx);
      shared_in = ws.levels[l].shared_out;
    }
    ws.outs = *task_in;
    return ws.outs;
  }

  MatrixView<const T> backward(const std::vector<MatrixView<const T>>& d_tasks, Workspace& ws, bool need_dx = true) const {
    require(static_cast<Index>(d_tasks.size()) == opt_.num_tasks, "PLE backward: ", d_tasks.size(),
            " task gradients but num_tasks is ", opt_.num_tasks);
    const std::vector<MatrixView<const T>>* d = &d_tasks;
    MatrixView<const T> d_shared{};
    for (std::size_t l = levels_.size(); l-- > 0;) {
      levels_[l].backward(*d, d_shared, ws.levels[l], need_dx || l > 0);
      d = &ws.levels[l].d_task_in;
      d_shared = ws.levels[l].d_shared_in;
    }
    if (!need_dx) return {};
    const Index B = d_shared.rows;
    MatrixView<T> dx = ensure(ws.dx, B, opt_.in);
    copy(d_shared, dx);
    for (const auto& dk : *d) add_into(dk, dx);
    return dx;
  }

  double penalty(double) const { return 0.0; }
  Index num_tasks() const { return opt_.num_tasks; }
  Index out_features(Index) const { return levels_.back().out_features(); }
  Index in_features() const { return opt_.in; }
  /// Input columns >= cols are constants: the first level skips their gradient.
  void limit_input_grad(Index cols) { levels_.front().limit_input_grad(cols); }
  std::size_t num_levels() const { return levels_.size(); }
  const CgcLevel<E>& level(std::size_t l) const { return levels_[l]; }
  const Options& options() const { return opt_; }

 private:
  Options opt_;
  std::vector<CgcLevel<E>> levels_;
};

extern template class CgcLevel<nn::Mlp<float>>;
extern template class CgcLevel<nn::Mlp<double>>;
extern template class PleBackbone<nn::Mlp<float>>;
extern template class PleBackbone<nn::Mlp<double>>;

}  // namespace mtrank::blocks
