// SNR: sub-network routing (Ma et al., AAAI 2019) with hard-concrete codes (Louizos et al.,
// ICLR 2018).
//
// HardConcreteGate: one code z_ji per connection (lower sub-network i -> upper j), parameter
// log_alpha [n_upper, n_lower]. One noise sample per forward call, shared by the batch.
//   training:  u ~ U(0, 1); s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
//              s_bar = s (zeta - gamma) + gamma;  z = min(1, max(0, s_bar))
//   inference: z = min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma))
//   L0 penalty: sum_ji sigmoid(log_alpha_ji - beta log(-gamma / zeta))
//
// SNR backbone: stage 0 has n_0 sub-networks (experts) on the input x; every later stage s has
// n_s sub-networks whose inputs are routed from the previous stage's outputs u_i:
//   SNR-Trans: v_j = sum_i z_ji W_ji u_i   (W_ji [in_s, width(u_i)], no bias)
//   SNR-Aver:  v_j = sum_i z_ji u_i        (every width(u_i) must equal in_s)
// and sub-network j of stage s maps v_j to its output (an Mlp with no layers passes v_j
// through). Task k reads last-stage sub-network task_subnet[k] (default k).
//
// Parameters:
//   subnets.{s}.{j}.<expert params>
//   routes.{s-1}.log_alpha [n_s, n_{s-1}]
//   routes.{s-1}.transforms.{j}.{i}.weight [in_s, width(u_i)]      (Trans only)
#pragma once
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/backbone.hpp"
#include "mtrank/kernels/activation.hpp"
#include "mtrank/nn/linear.hpp"

namespace mtrank::blocks {

struct HardConcreteOptions {
  Index rows = 0;  // upper sub-networks
  Index cols = 0;  // lower sub-networks
  double beta = 2.0 / 3.0;
  double gamma = -0.1;
  double zeta = 1.1;
  // log_alpha ~ N(log_alpha_mean, log_alpha_std^2); mean 0 is Louizos et al.'s default
  // (drop rate 0.5); a positive mean starts with most connections open.
  double log_alpha_mean = 0.0;
  double log_alpha_std = 0.01;
};

template <class T = float>
class HardConcreteGate {
 public:
  using Scalar = T;
  struct Workspace {
    TensorT<T> u, s, z;
    bool training = false;
  };

  HardConcreteGate() = default;
  HardConcreteGate(ParameterArenaT<T>& arena, std::string_view prefix, HardConcreteOptions opt) : opt_(opt) {
    require(opt.rows > 0 && opt.cols > 0, "hard-concrete gate '", prefix, "': rows and cols must be > 0, got ",
            opt.rows, " x ", opt.cols);
    require(opt.beta > 0, "hard-concrete gate '", prefix, "': beta must be > 0, got ", opt.beta);
    require(opt.gamma < 0 && opt.zeta > 1, "hard-concrete gate '", prefix,
            "': need gamma < 0 < 1 < zeta, got gamma=", opt.gamma, " zeta=", opt.zeta);
    log_alpha_ = &arena.add(join_name(prefix, "log_alpha"), Shape{opt.rows, opt.cols},
                            {.init = Init::normal(opt.log_alpha_mean, opt.log_alpha_std)});
  }

  /// Codes z [rows, cols]. Training draws u from ctx.rng unless `fixed_u` (rows*cols values in
  /// (0, 1)) is given; inference is deterministic.
  MatrixView<const T> forward(Workspace& ws, const Context& ctx = {}, const T* fixed_u = nullptr) const {
    const Index n = opt_.rows * opt_.cols;
    ws.training = ctx.training;
    MatrixView<T> z = ensure(ws.z, opt_.rows, opt_.cols);
    ensure(ws.s, opt_.rows, opt_.cols);
    const T* la = log_alpha_->value;
    const double span = opt_.zeta - opt_.gamma;
    if (ctx.training) {
      ensure(ws.u, opt_.rows, opt_.cols);
      if (!fixed_u) require(ctx.rng != nullptr, "hard-concrete gate '", log_alpha_->name, "': training needs Context::rng");
      for (Index i = 0; i < n; ++i) {
        const double u = fixed_u ? double(fixed_u[i]) : ctx.rng->uniform_open();
        ws.u[i] = static_cast<T>(u);
        const double s = kernels::sigmoid_scalar((std::log(u) - std::log1p(-u) + double(la[i])) / opt_.beta);
        ws.s[i] = static_cast<T>(s);
        z.data[i] = static_cast<T>(std::min(1.0, std::max(0.0, s * span + opt_.gamma)));
      }
    } else {
      for (Index i = 0; i < n; ++i) {
        const double s = kernels::sigmoid_scalar(double(la[i]));
        ws.s[i] = static_cast<T>(s);
        z.data[i] = static_cast<T>(std::min(1.0, std::max(0.0, s * span + opt_.gamma)));
      }
    }
    return z;
  }

  /// dz [rows, cols] -> accumulates d log_alpha (zero where z is clamped).
  void backward(MatrixView<const T> dz, Workspace& ws) const {
    require_shape(dz, opt_.rows, opt_.cols, "hard-concrete gate backward dz");
    const double span = opt_.zeta - opt_.gamma;
    T* g = log_alpha_->grad;
    for (Index i = 0; i < opt_.rows * opt_.cols; ++i) {
      const double s = ws.s[i];
      const double sbar = s * span + opt_.gamma;
      if (sbar <= 0.0 || sbar >= 1.0) continue;
      const double ds = ws.training ? s * (1 - s) / opt_.beta : s * (1 - s);
      g[i] += static_cast<T>(double(dz.data[(i / opt_.cols) * dz.stride + i % opt_.cols]) * span * ds);
    }
  }

  /// weight * sum sigmoid(log_alpha - beta log(-gamma/zeta)); accumulates its gradient.
  double penalty(double weight) const {
    const double shift = opt_.beta * std::log(-opt_.gamma / opt_.zeta);
    double total = 0;
    for (Index i = 0; i < opt_.rows * opt_.cols; ++i) {
      const double p = kernels::sigmoid_scalar(double(log_alpha_->value[i]) - shift);
      total += p;
      log_alpha_->grad[i] += static_cast<T>(weight * p * (1 - p));
    }
    return weight * total;
  }

  /// Expected number of open connections P(z > 0) summed (what the penalty estimates).
  Index rows() const { return opt_.rows; }
  Index cols() const { return opt_.cols; }
  const HardConcreteOptions& options() const { return opt_; }
  Parameter<T>& log_alpha() const { return *log_alpha_; }

 private:
  HardConcreteOptions opt_;
  Parameter<T>* log_alpha_ = nullptr;
};

template <class ExpertOptions = nn::MlpOptions>
struct SnrStage {
  Index num_subnets = 0;
  ExpertOptions subnet{};  // its `in` is set by the backbone
  Index in = 0;            // stages >= 1: width of v_j (0: width of the lower sub-networks)
};

template <class ExpertOptions = nn::MlpOptions>
struct SnrOptions {
  Index in = 0;
  Index num_tasks = 0;
  std::vector<SnrStage<ExpertOptions>> stages;  // >= 2: stage 0 on the input, then routed stages
  std::vector<Index> task_subnet{};             // task k reads last-stage sub-network task_subnet[k]
  HardConcreteOptions code{};                   // beta / gamma / zeta / init (rows, cols set per route)
};

enum class SnrKind { trans, aver };

template <class E, SnrKind Kind>
  requires Expert<E>
class SnrBackbone {
 public:
  using Scalar = typename E::Scalar;
  using T = Scalar;
  using Options = SnrOptions<ExpertOptionsOf<E>>;
  static constexpr SnrKind kind = Kind;
  struct RouteWorkspace {
    typename HardConcreteGate<T>::Workspace code;
    std::vector<typename nn::Linear<T>::Workspace> transforms;  // [j * n_lower + i] (Trans)
    std::vector<TensorT<T>> v, dv;                              // per upper sub-network
    TensorT<T> dz, scaled;
  };
  struct Workspace {
    std::vector<std::vector<typename E::Workspace>> subnets;  // [stage][j]
    std::vector<std::vector<MatrixView<const T>>> u;          // outputs [stage][j]
    std::vector<RouteWorkspace> routes;
    std::vector<MatrixView<const T>> outs;
    std::vector<std::vector<TensorT<T>>> du;  // [stage][j]
    TensorT<T> dx;
    // Tests and fixtures: when it holds one tensor per route (shape [n_s, n_{s-1}], values in
    // (0, 1)), training uses this noise instead of drawing from ctx.rng.
    std::vector<TensorT<T>> fixed_noise;
  };

  SnrBackbone() = default;
  SnrBackbone(ParameterArenaT<T>& arena, std::string_view prefix, Options opt) : opt_(std::move(opt)), name_(prefix) {
    const char* what = Kind == SnrKind::trans ? "SNR-Trans" : "SNR-Aver";
    require(opt_.in > 0, what, " '", prefix, "': in must be > 0, got ", opt_.in);
    require(opt_.stages.size() >= 2, what, " '", prefix, "': stages needs at least 2 entries (lower and upper), got ",
            opt_.stages.size());
    for (std::size_t s = 0; s < opt_.stages.size(); ++s)
      require(opt_.stages[s].num_subnets > 0, what, " '", prefix, "': stages[", s, "].num_subnets must be > 0");
    const Index n_last = opt_.stages.back().num_subnets;
    require(opt_.num_tasks > 0, what, " '", prefix, "': num_tasks must be > 0");
    if (opt_.task_subnet.empty()) {
      require(opt_.num_tasks == n_last, what, " '", prefix, "': num_tasks ", opt_.num_tasks,
              " != last stage's num_subnets ", n_last, " (set task_subnet to map tasks to sub-networks)");
      for (Index k = 0; k < opt_.num_tasks; ++k) opt_.task_subnet.push_back(k);
    }
    require(static_cast<Index>(opt_.task_subnet.size()) == opt_.num_tasks, what, " '", prefix, "': task_subnet has ",
            opt_.task_subnet.size(), " entries but num_tasks is ", opt_.num_tasks);
    for (Index k = 0; k < opt_.num_tasks; ++k)
      require(opt_.task_subnet[k] >= 0 && opt_.task_subnet[k] < n_last, what, " '", prefix, "': task_subnet[", k,
              "] = ", opt_.task_subnet[k], " out of range [0, ", n_last, ")");

    subnets_.resize(opt_.stages.size());
    for (std::size_t s = 0; s < opt_.stages.size(); ++s) {
      const auto& st = opt_.stages[s];
      const std::size_t n_low = s ? subnets_[s - 1].size() : 0;
      Index in = opt_.in;
      if (s > 0) {
        in = st.in > 0 ? st.in : subnets_[s - 1][0].out_features();
        const std::string route = join_name(prefix, "routes." + std::to_string(s - 1));
        HardConcreteOptions c = opt_.code;
        c.rows = st.num_subnets;
        c.cols = static_cast<Index>(n_low);
        codes_.emplace_back(arena, route, c);
        transforms_.emplace_back();
        for (Index j = 0; j < st.num_subnets; ++j)
          for (std::size_t i = 0; i < n_low; ++i) {
            const Index w = subnets_[s - 1][i].out_features();
            if constexpr (Kind == SnrKind::trans) {
              transforms_.back().emplace_back(
                  arena, join_name(route, "transforms." + std::to_string(j) + "." + std::to_string(i)),
                  nn::LinearOptions{.in = w, .out = in, .bias = false});
            } else {
              if (w != in)
                fail("SNR-Aver '", prefix, "': connection ", i, "->", j, " of route ", s - 1,
                     " (stages[", s - 1, "] sub-network ", i, " -> stages[", s, "] sub-network ", j, "): lower width ",
                     w, " != upper input width ", in, " (SNR-Aver needs equal widths; use SNR-Trans)");
            }
          }
      }
      for (Index j = 0; j < st.num_subnets; ++j)
        subnets_[s].push_back(ExpertTraits<E>::make(
            arena, join_name(prefix, "subnets." + std::to_string(s) + "." + std::to_string(j)), in, st.subnet));
    }
  }

  const std::vector<MatrixView<const T>>& forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const {
    require(x.cols == opt_.in, name(), ": input has ", x.cols, " columns, expected ", opt_.in);
    const std::size_t S = subnets_.size();
    const Index B = x.rows;
    ws.subnets.resize(S);
    ws.u.resize(S);
    ws.routes.resize(S - 1);
    const bool fixed = !ws.fixed_noise.empty();
    if (fixed)
      require(ws.fixed_noise.size() == S - 1, name(), ": fixed_noise has ", ws.fixed_noise.size(),
              " tensors, expected one per route (", S - 1, ")");
    for (std::size_t s = 0; s < S; ++s) {
      const std::size_t n = subnets_[s].size();
      ws.subnets[s].resize(n);
      ws.u[s].resize(n);
      if (s == 0) {
        for (std::size_t j = 0; j < n; ++j) ws.u[0][j] = subnets_[0][j].forward(x, ws.subnets[0][j], ctx);
        continue;
      }
      RouteWorkspace& rw = ws.routes[s - 1];
      const std::size_t n_low = subnets_[s - 1].size();
      const T* u_fixed = nullptr;
      if (fixed) {
        require(ws.fixed_noise[s - 1].numel() == static_cast<Index>(n * n_low), name(), ": fixed_noise[", s - 1,
                "] has ", ws.fixed_noise[s - 1].numel(), " values, expected ", n * n_low);
        u_fixed = ws.fixed_noise[s - 1].data();
      }
      MatrixView<const T> z = codes_[s - 1].forward(rw.code, ctx, u_fixed);
      rw.v.resize(n);
      if constexpr (Kind == SnrKind::trans) rw.transforms.resize(n * n_low);
      for (std::size_t j = 0; j < n; ++j) {
        const Index in = subnets_[s][j].in_features();
        MatrixView<T> v = ensure(rw.v[j], B, in);
        rw.v[j].zero();
        for (std::size_t i = 0; i < n_low; ++i) {
          const T zji = z(static_cast<Index>(j), static_cast<Index>(i));
          if (zji == T(0)) continue;  // closed connection: no work (its gradient is zero too)
          MatrixView<const T> t = ws.u[s - 1][i];
          if constexpr (Kind == SnrKind::trans)
            t = transforms_[s - 1][j * n_low + i].forward(t, rw.transforms[j * n_low + i], ctx);
          for (Index b = 0; b < B; ++b) {
            const T* tb = t.row(b);
            T* vb = v.row(b);
            for (Index c = 0; c < in; ++c) vb[c] += zji * tb[c];
          }
        }
        ws.u[s][j] = subnets_[s][j].forward(v, ws.subnets[s][j], ctx);
      }
    }
    ws.outs.resize(static_cast<std::size_t>(opt_.num_tasks));
    for (Index k = 0; k < opt_.num_tasks; ++k) ws.outs[k] = ws.u[S - 1][static_cast<std::size_t>(opt_.task_subnet[k])];
    return ws.outs;
  }

  MatrixView<const T> backward(const std::vector<MatrixView<const T>>& d_tasks, Workspace& ws, bool need_dx = true) const {
    require(static_cast<Index>(d_tasks.size()) == opt_.num_tasks, name(), " backward: ", d_tasks.size(),
            " task gradients but num_tasks is ", opt_.num_tasks);
    const std::size_t S = subnets_.size();
    const Index B = ws.outs.empty() ? 0 : ws.outs[0].rows;
    ws.du.resize(S);
    for (std::size_t s = 1; s < S; ++s) {
      ws.du[s].resize(subnets_[s].size());
      for (std::size_t j = 0; j < subnets_[s].size(); ++j) {
        ensure(ws.du[s][j], B, subnets_[s][j].out_features());
        ws.du[s][j].zero();
      }
    }
    for (Index k = 0; k < opt_.num_tasks; ++k) {
      const std::size_t j = static_cast<std::size_t>(opt_.task_subnet[k]);
      require_shape(d_tasks[k], B, subnets_[S - 1][j].out_features(), "SNR backward d_tasks[k]");
      add_into(d_tasks[k], ws.du[S - 1][j].matrix());
    }
    // Stage-0 sub-network gradients are summed here before their backward.
    ws.du[0].resize(subnets_[0].size());
    for (std::size_t i = 0; i < subnets_[0].size(); ++i) {
      ensure(ws.du[0][i], B, subnets_[0][i].out_features());
      ws.du[0][i].zero();
    }
    for (std::size_t s = S; s-- > 1;) {
      RouteWorkspace& rw = ws.routes[s - 1];
      const std::size_t n = subnets_[s].size(), n_low = subnets_[s - 1].size();
      MatrixView<const T> z = rw.code.z.matrix();
      MatrixView<T> dz = ensure(rw.dz, static_cast<Index>(n), static_cast<Index>(n_low));
      rw.dz.zero();
      for (std::size_t j = 0; j < n; ++j) {
        MatrixView<const T> dv = subnets_[s][j].backward(ws.du[s][j].matrix(), ws.subnets[s][j], true);
        for (std::size_t i = 0; i < n_low; ++i) {
          const T zji = z(static_cast<Index>(j), static_cast<Index>(i));
          if (zji == T(0)) continue;
          MatrixView<T> du = ws.du[s - 1][i].matrix();
          if constexpr (Kind == SnrKind::trans) {
            auto& tw = rw.transforms[j * n_low + i];
            MatrixView<const T> t = tw.y.matrix();
            dz(j, i) = dot(dv, t);
            MatrixView<T> sc = ensure(rw.scaled, B, dv.cols);
            for (Index b = 0; b < B; ++b)
              for (Index c = 0; c < dv.cols; ++c) sc(b, c) = zji * dv(b, c);
            add_into(transforms_[s - 1][j * n_low + i].backward(sc, tw, true), du);
          } else {
            dz(j, i) = dot(dv, ws.u[s - 1][i]);
            for (Index b = 0; b < B; ++b)
              for (Index c = 0; c < dv.cols; ++c) du(b, c) += zji * dv(b, c);
          }
        }
      }
      codes_[s - 1].backward(dz, rw.code);
    }
    MatrixView<T> dx;
    if (need_dx) {
      dx = ensure(ws.dx, B, opt_.in);
      ws.dx.zero();
    }
    for (std::size_t i = 0; i < subnets_[0].size(); ++i) {
      MatrixView<const T> d = subnets_[0][i].backward(ws.du[0][i].matrix(), ws.subnets[0][i], need_dx);
      if (need_dx) add_into(d, dx);
    }
    return need_dx ? MatrixView<const T>(dx) : MatrixView<const T>{};
  }

  /// weight * sum of the L0 penalties of every route; accumulates the gradient.
  double penalty(double weight) const {
    double p = 0;
    for (const auto& c : codes_) p += c.penalty(weight);
    return p;
  }

  Index num_tasks() const { return opt_.num_tasks; }
  Index out_features(Index k) const {
    return subnets_.back()[static_cast<std::size_t>(opt_.task_subnet[static_cast<std::size_t>(k)])].out_features();
  }
  Index in_features() const { return opt_.in; }
  /// Input columns >= cols are constants: the first stage's sub-networks skip their gradient.
  void limit_input_grad(Index cols) {
    for (auto& e : subnets_.front()) limit_input_grad_if_supported(e, cols);
  }
  std::size_t num_routes() const { return codes_.size(); }
  const HardConcreteGate<T>& code(std::size_t r) const { return codes_[r]; }
  const Options& options() const { return opt_; }

 private:
  std::string name() const { return std::string(Kind == SnrKind::trans ? "SNR-Trans '" : "SNR-Aver '") + name_ + "'"; }
  static T dot(MatrixView<const T> a, MatrixView<const T> b) {
    T s = 0;
    for (Index r = 0; r < a.rows; ++r)
      for (Index c = 0; c < a.cols; ++c) s += a(r, c) * b(r, c);
    return s;
  }
  Options opt_;
  std::string name_;
  std::vector<std::vector<E>> subnets_;
  std::vector<HardConcreteGate<T>> codes_;
  std::vector<std::vector<nn::Linear<T>>> transforms_;  // [route][j * n_low + i]
};

template <class E = nn::Mlp<float>>
using SnrTransBackbone = SnrBackbone<E, SnrKind::trans>;
template <class E = nn::Mlp<float>>
using SnrAverBackbone = SnrBackbone<E, SnrKind::aver>;

extern template class HardConcreteGate<float>;
extern template class HardConcreteGate<double>;
extern template class SnrBackbone<nn::Mlp<float>, SnrKind::trans>;
extern template class SnrBackbone<nn::Mlp<double>, SnrKind::trans>;
extern template class SnrBackbone<nn::Mlp<float>, SnrKind::aver>;
extern template class SnrBackbone<nn::Mlp<double>, SnrKind::aver>;

}  // namespace mtrank::blocks
