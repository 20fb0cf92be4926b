// Multi-task losses: binary cross-entropy on logits, MSE and Huber per task, with label masks,
// per-sample weights and per-task weights; pairwise BPR.
//
// For a [B, K] matrix of model outputs x (logits for binary tasks, raw predictions for
// regression), labels y [B, K], mask m [B, K] (1 = label present, 0 = absent) and sample
// weights w [B] (all 1 when omitted), task k's loss is the weighted mean over present rows
//
//   L_k = Σ_b w_b m_bk ℓ_k(x_bk, y_bk) / Σ_b w_b m_bk        (L_k = 0 when no row is present)
//
// and the total is Σ_k λ_k L_k with λ_k = TaskLossSpec::weight. The per-element losses are
//
//   bce_with_logits  ℓ = max(x, 0) − x·y + log1p(exp(−|x|))      dℓ/dx = σ(x) − y
//   mse              ℓ = (x − y)²                                dℓ/dx = 2 (x − y)
//   huber(δ)         ℓ = ½ d² if |d| ≤ δ else δ (|d| − ½ δ)      dℓ/dx = clamp(d, −δ, δ), d = x − y
//
// (PyTorch's BCEWithLogitsLoss, MSELoss and HuberLoss with reduction='mean' over present rows.)
// The gradient written by compute() is d(total)/dx, so column k holds λ_k dL_k/dx; masked
// entries get exactly 0. Accumulation is in double for both T = float and T = double.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mtrank/core/tensor.hpp"
#include "mtrank/train/metrics.hpp"

namespace mtrank::train {

enum class LossKind { bce_with_logits, mse, huber };

const char* loss_kind_name(LossKind k);
/// "bce_with_logits" (alias "bce"), "mse", "huber"; throws naming `field` otherwise.
LossKind parse_loss_kind(const std::string& s, const std::string& field = "loss");
/// Binary tasks are evaluated with AUC/log loss, regression tasks with MSE.
inline TaskKind task_kind(LossKind k) { return k == LossKind::bce_with_logits ? TaskKind::binary : TaskKind::regression; }

struct TaskLossSpec {
  std::string name;                       // used in error messages and metrics
  LossKind kind = LossKind::bce_with_logits;
  double weight = 1.0;                    // λ_k ≥ 0
  double huber_delta = 1.0;               // δ > 0 (huber only)
};

/// Parses [{"name": "ctr", "loss": "bce_with_logits", "weight": 1.0, "huber_delta": 1.0}, ...].
std::vector<TaskLossSpec> parse_task_loss_specs(const nlohmann::json& j, const std::string& path = "tasks");

struct LossResult {
  std::vector<double> task_loss;        // L_k (weighted mean over present rows; 0 when none)
  std::vector<Index> task_count;        // number of present rows per task
  std::vector<double> task_weight_sum;  // Σ_b w_b m_bk
  double total = 0;                     // Σ_k λ_k L_k
  /// λ_k L_k: the task's contribution to total (what UWL and PCGrad balance).
  double weighted(std::size_t k, const std::vector<TaskLossSpec>& specs) const { return specs[k].weight * task_loss[k]; }
};

template <class T = float>
class MultiTaskLoss {
 public:
  MultiTaskLoss() = default;
  explicit MultiTaskLoss(std::vector<TaskLossSpec> tasks);

  /// Computes the losses and writes d(total)/d(outputs) into `grad` (shape [B, K]; pass an empty
  /// view to skip the gradient). `mask` may be empty (all present); `sample_weight` may be empty
  /// (all 1), otherwise it has B finite, non-negative entries. Throws mtrank::Error naming the
  /// task and row for NaN/Inf outputs, NaN/Inf labels on present entries, BCE labels outside
  /// [0, 1], and mask values other than 0/1.
  LossResult compute(MatrixView<const T> outputs, MatrixView<const T> labels, MatrixView<const T> mask,
                     std::span<const T> sample_weight, MatrixView<T> grad) const;

  /// Overload without sample weights.
  LossResult compute(MatrixView<const T> outputs, MatrixView<const T> labels, MatrixView<const T> mask,
                     MatrixView<T> grad) const {
    return compute(outputs, labels, mask, {}, grad);
  }

  const std::vector<TaskLossSpec>& tasks() const { return tasks_; }
  Index num_tasks() const { return static_cast<Index>(tasks_.size()); }

 private:
  std::vector<TaskLossSpec> tasks_;
};

/// Per-element loss and derivative (exposed for tests and custom reductions).
template <class T>
double element_loss(LossKind kind, double delta, T x, T y, double* dldx);

/// Multiplies column k of `grad` by scale[k] (e.g. the UWL scales ½·exp(−s_k)).
template <class T>
void scale_task_gradients(MatrixView<T> grad, std::span<const double> scale);

/// Pairwise BPR loss over (positive, negative) index pairs into `scores`:
///   L = Σ_p v_p · (−log σ(s_pos − s_neg)) / Σ_p v_p,  −log σ(d) = max(−d, 0) + log1p(exp(−|d|))
/// with pair weights v (all 1 when empty). ACCUMULATES scale · dL/ds into `grad` (same length as
/// scores; may be empty to skip), since a score can appear in several pairs. Returns L (0 for no
/// pairs). Throws for out-of-range indices and non-finite scores.
template <class T>
double bpr_loss(std::span<const T> scores, std::span<const std::pair<Index, Index>> pairs, std::span<T> grad,
                std::span<const T> pair_weight = {}, double scale = 1.0);

extern template class MultiTaskLoss<float>;
extern template class MultiTaskLoss<double>;

}  // namespace mtrank::train
