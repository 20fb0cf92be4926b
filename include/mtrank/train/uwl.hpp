// Uncertainty weighting of task losses (Kendall, Gal & Cipolla, CVPR 2018):
//
//   L = Σ_k ½·exp(−s_k)·L_k + ½·s_k,      s_k = log σ_k², learned
//   ∂L/∂L_k = ½·exp(−s_k)                (the scale for task k's output gradient)
//   ∂L/∂s_k = −½·exp(−s_k)·L_k + ½
//
// s lives in the parameter arena as "<prefix>.log_var" [K] (dense, trainable), so the
// optimiser updates it with everything else and checkpoints save it. L_k is whatever the
// caller balances, normally λ_k·L_k from MultiTaskLoss (see LossResult::weighted): the
// gradient MultiTaskLoss wrote for column k is then multiplied by scale_k
// (scale_task_gradients). Tasks with no labelled row in the batch (count 0) are left out:
// no loss term, scale 0 and no gradient for their s_k.
#pragma once
#include <cmath>
#include <span>
#include <string_view>

#include "mtrank/core/arena.hpp"

namespace mtrank::train {

struct UncertaintyWeightingOptions {
  Index num_tasks = 0;
  double init_log_var = 0.0;  // s_k at start (0 = equal weights ½)
};

template <class T = float>
class UncertaintyWeighting {
 public:
  UncertaintyWeighting() = default;
  /// Parameter "uwl.log_var".
  UncertaintyWeighting(ParameterArenaT<T>& arena, UncertaintyWeightingOptions opt)
      : UncertaintyWeighting(arena, "uwl", opt) {}
  UncertaintyWeighting(ParameterArenaT<T>& arena, std::string_view prefix, UncertaintyWeightingOptions opt) : opt_(opt) {
    require(opt.num_tasks > 0, "UncertaintyWeighting '", prefix, "': num_tasks must be > 0, got ", opt.num_tasks);
    require(std::isfinite(opt.init_log_var), "UncertaintyWeighting '", prefix, "': init_log_var must be finite");
    log_var_ = &arena.add(join_name(prefix, "log_var"), Shape{opt.num_tasks}, {.init = Init::constant(opt.init_log_var)});
  }

  /// Returns the balanced total; writes ½·exp(−s_k) (0 for absent tasks) into `scale` [K] and
  /// ACCUMULATES ∂L/∂s into the arena gradient of log_var. `counts` [K] (optional): tasks with
  /// count 0 are absent. Throws for non-finite losses of present tasks.
  double combine(std::span<const double> task_losses, std::span<double> scale,
                 std::span<const Index> counts = {}) const {
    const Index K = opt_.num_tasks;
    require(log_var_ != nullptr, "UncertaintyWeighting: not constructed");
    if (static_cast<Index>(task_losses.size()) != K)
      fail("UncertaintyWeighting: ", task_losses.size(), " task losses, expected ", K);
    if (static_cast<Index>(scale.size()) != K) fail("UncertaintyWeighting: scale has ", scale.size(), " entries, expected ", K);
    if (!counts.empty() && static_cast<Index>(counts.size()) != K)
      fail("UncertaintyWeighting: counts has ", counts.size(), " entries, expected ", K, " or none");
    double total = 0;
    for (Index k = 0; k < K; ++k) {
      if (!counts.empty() && counts[k] == 0) {
        scale[k] = 0;
        continue;
      }
      const double L = task_losses[k];
      if (!std::isfinite(L)) fail("UncertaintyWeighting: loss of task ", k, " is ", L, " (expected finite)");
      const double s = log_var_->value[k];
      const double c = 0.5 * std::exp(-s);
      scale[k] = c;
      total += c * L + 0.5 * s;
      log_var_->grad[k] += static_cast<T>(-c * L + 0.5);
    }
    return total;
  }

  /// Current ½·exp(−s_k) without touching gradients (for logging).
  double scale(Index k) const { return 0.5 * std::exp(-double(log_var_->value[k])); }
  const T* log_var() const { return log_var_->value; }
  Parameter<T>& log_var_param() const { return *log_var_; }
  Index num_tasks() const { return opt_.num_tasks; }

 private:
  UncertaintyWeightingOptions opt_;
  Parameter<T>* log_var_ = nullptr;
};

extern template class UncertaintyWeighting<float>;
extern template class UncertaintyWeighting<double>;

}  // namespace mtrank::train
