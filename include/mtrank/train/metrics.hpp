// Evaluation metrics per task: exact AUC (ties count ½), GAUC, log loss, calibration, MSE.
//
//   AUC  = Σ_{pos p, neg n} v_p v_n ([s_p > s_n] + ½ [s_p = s_n]) / (Σ_pos v_p · Σ_neg v_n)
//          computed by one sort over scores and a sweep over tie groups (O(n log n));
//          with unit weights this is the Mann–Whitney statistic with average ranks.
//   GAUC = Σ_u n_u AUC_u / Σ_u n_u over users u that have both classes; n_u = the user's
//          impressions (sum of sample weights when weighted). One-class users are skipped.
//   log loss    = −Σ v (y log p + (1−y) log(1−p)) / Σ v with p clipped to [ε, 1−ε]
//   calibration = mean prediction / mean label (weighted)
//   MSE         = Σ v (p − y)² / Σ v (regression tasks)
//
// Undefined values (AUC with one class, calibration with mean label 0, anything on an empty
// set) are NaN. Non-finite scores and labels are rejected with mtrank::Error; labels of binary
// tasks must be exactly 0 or 1.
#pragma once
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "mtrank/core/tensor.hpp"
#include "mtrank/data/schema.hpp"

namespace mtrank::train {

/// One task-kind type for the whole library (declared with the feature schema).
using data::TaskKind;

/// Exact AUC with ties; `weights` may be empty. NaN when a class is absent.
double auc(std::span<const float> scores, std::span<const float> labels, std::span<const float> weights = {});

struct GaucResult {
  double value = std::numeric_limits<double>::quiet_NaN();
  Index users = 0;          // users with both classes (the ones averaged)
  Index skipped_users = 0;  // users with a single class
};

/// Group AUC over `users` (same length as scores); `weights` may be empty.
GaucResult gauc(std::span<const float> scores, std::span<const float> labels, std::span<const std::int64_t> users,
                std::span<const float> weights = {});

/// Weighted binary log loss with probabilities clipped to [eps, 1 − eps].
double log_loss(std::span<const float> probs, std::span<const float> labels, std::span<const float> weights = {},
                double eps = 1e-7);

struct TaskMetrics {
  static constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  std::string name;
  TaskKind kind = TaskKind::binary;
  Index count = 0;            // present rows
  double weight_sum = 0;      // Σ v over present rows
  double mean_prediction = nan;
  double mean_label = nan;
  // binary tasks
  double auc = nan;
  double gauc = nan;
  Index gauc_users = 0;
  Index gauc_skipped_users = 0;
  double log_loss = nan;
  double calibration = nan;   // mean_prediction / mean_label
  // both kinds (for binary tasks: the Brier score)
  double mse = nan;
};

/// Metrics for each of K tasks. `probs`, `labels` [N, K]; `mask` [N, K] (empty = all present;
/// otherwise 0/1); `users` [N] or empty (no GAUC); `weights` [N] or empty; `kinds` [K];
/// `names` [K] or empty (then "task<k>"). Binary tasks take probabilities, not logits.
std::vector<TaskMetrics> evaluate_tasks(MatrixView<const float> probs, MatrixView<const float> labels,
                                        MatrixView<const float> mask, std::span<const std::int64_t> users,
                                        std::span<const TaskKind> kinds, std::span<const std::string> names = {},
                                        std::span<const float> weights = {}, double log_loss_eps = 1e-7);

/// Metrics of the rows of one scene (multi-scene / multi-domain models, schema.num_scenes > 1).
struct SceneMetrics {
  std::int32_t scene = 0;
  Index rows = 0;                  // rows of this scene
  std::vector<TaskMetrics> tasks;  // evaluate_tasks over those rows (count 0 and NaN when none)
};

/// Per-scene metrics: evaluate_tasks on the rows of each scene 0 .. num_scenes - 1, in scene
/// order. `scenes` [N] holds each row's scene id; an id outside [0, num_scenes) is an error.
/// The other arguments are those of evaluate_tasks.
std::vector<SceneMetrics> evaluate_tasks_by_scene(MatrixView<const float> probs, MatrixView<const float> labels,
                                                  MatrixView<const float> mask, std::span<const std::int64_t> users,
                                                  std::span<const std::int32_t> scenes, std::int32_t num_scenes,
                                                  std::span<const TaskKind> kinds,
                                                  std::span<const std::string> names = {},
                                                  std::span<const float> weights = {}, double log_loss_eps = 1e-7);

/// Streaming evaluation: append batches, then compute(). Keeps the present entries of every
/// task (exact AUC needs all scores), so memory is O(evaluated rows × tasks).
class MetricAccumulator {
 public:
  MetricAccumulator() = default;
  MetricAccumulator(std::vector<TaskKind> kinds, std::vector<std::string> names = {}, double log_loss_eps = 1e-7);

  /// Same arguments as evaluate_tasks for one batch. Validates the whole batch before
  /// storing any of it, so a rejected batch leaves the accumulator unchanged.
  void append(MatrixView<const float> probs, MatrixView<const float> labels, MatrixView<const float> mask,
              std::span<const std::int64_t> users = {}, std::span<const float> weights = {});
  std::vector<TaskMetrics> compute() const;
  void clear();
  Index rows() const { return rows_; }
  Index num_tasks() const { return static_cast<Index>(kinds_.size()); }

 private:
  struct Column {
    std::vector<float> score, label, weight;
    std::vector<std::int64_t> user;
  };
  std::vector<TaskKind> kinds_;
  std::vector<std::string> names_;
  double eps_ = 1e-7;
  std::vector<Column> cols_;
  Index rows_ = 0;
  bool weighted_ = false, with_users_ = false;
};

}  // namespace mtrank::train
