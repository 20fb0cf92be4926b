// The training loop: shuffled mini-batches, epochs, evaluation per epoch on a validation set,
// early stopping, model selection, progress on stderr (a live bar on a terminal, plain log lines
// otherwise), metrics as JSON lines, and atomic checkpoints that resume to the exact same next step.
//
// Model selection (docs/training.md, "Validation, early stopping and the selected model"): with a
// validation set, every epoch is scored on it, `monitor` picks the best epoch, early stopping
// watches it, the best epoch's full state is written to `checkpoint_path` whenever a new best
// appears, and at the end of fit() the model holds the best epoch's weights. Without a validation
// set nothing is selected: the last epoch is the model (checkpoint_path is written after every
// epoch) and `patience` is ignored (a warning on stderr). The test set is never looked at by
// fit(); test() scores it once, afterwards, as the final record.
//
// Determinism: the permutation of epoch e is drawn from Rng(seed).fork(e), and the RNG for
// stochastic layers at global step t from Rng(seed ^ kStepSalt).fork(t). A run resumed from a
// checkpoint written after step t therefore replays steps t+1, ... bit for bit (same thread count).
//
// Threads: with num_threads() > 1 a step is data-parallel (TrainerOptions::data_parallel_min_rows):
// the batch is cut into one row slice per thread; slice 0 runs on the model, slice s > 0 on a
// gradient replica that shares the model's weights (models::make_gradient_replica). The loss is
// taken over the whole batch, so each slice's backward receives exactly its rows of the
// full-batch output gradient; replica gradients are then added to the model's in slice order
// and one optimiser step follows. The result equals the one-slice step up to float summation
// order, and is bit-identical for the same thread count. Buffers (batch-norm and Dice running
// statistics) follow slice 0, as in PyTorch's DistributedDataParallel.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mtrank/data/batch.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/train/loss.hpp"
#include "mtrank/train/metrics.hpp"
#include "mtrank/train/optimizer.hpp"
#include "mtrank/train/pcgrad.hpp"
#include "mtrank/train/uwl.hpp"

namespace mtrank::train {

struct TrainerOptions {
  Index batch_size = 512;
  Index epochs = 3;
  std::uint64_t seed = 1;
  /// Early stopping: stop after this many epochs without improvement of `monitor` on the
  /// validation set (0 = off; ignored, with a warning, when fit() has no validation set).
  Index patience = 0;
  /// What selects the best epoch: "auc" (mean AUC over binary tasks on the validation set, higher
  /// is better) or "loss" (validation loss, lower is better).
  std::string monitor = "auc";
  /// Per-task loss weights λ_k (empty = all 1) and loss kinds (empty = from the schema:
  /// bce_with_logits for binary tasks, mse for regression).
  std::vector<TaskLossSpec> tasks;
  /// Uncertainty weighting (Kendall et al.) instead of fixed λ_k; adds "uwl.log_var" to the arena.
  bool uwl = false;
  /// PCGrad (Yu et al. 2020) on the shared dense parameters: one backward per task, conflicting
  /// task gradients projected, then summed. Shared = trainable dense parameters whose name
  /// starts with none of `task_specific_prefixes`; embedding tables (sparse rows) and
  /// task-specific parameters get the plain sum of the task gradients.
  bool pcgrad = false;
  std::vector<std::string> task_specific_prefixes = {"towers.", "uwl."};
  /// Weight of the model's regulariser (SNR's L0 penalty).
  double penalty_weight = 1e-4;
  Index eval_batch_size = 4096;
  /// Data-parallel steps when num_threads() > 1: slices of at least this many rows, one per
  /// thread (fewer slices for small batches; one slice = intra-op threads only). 0 = off.
  /// PCGrad steps always run as one slice.
  Index data_parallel_min_rows = 64;
  /// Stop an epoch after this many steps (0 = full epoch); for smoke tests and timing.
  Index max_steps_per_epoch = 0;
  /// JSON lines, one record per epoch and the final test record (record_json); "" = none.
  std::string metrics_path;
  /// Called with every record written to metrics_path (the same JSON), e.g. to print it.
  std::function<void(const nlohmann::ordered_json&)> on_record;
  /// The selected model's checkpoint ("" = none), full state (weights, optimiser, position),
  /// written atomically. With a validation set: whenever the monitored metric improves, so it
  /// always holds the best epoch so far (and resumes from the end of that epoch). Without one:
  /// after every epoch (the last epoch is the model).
  std::string checkpoint_path;
  /// The last epoch's full state, written atomically after every epoch, to resume() from
  /// ("" = none). Must differ from checkpoint_path.
  std::string last_checkpoint_path;
  /// -1: a live bar when stderr is a terminal, plain lines otherwise; 0: plain lines; 1: bar; 2: silent.
  int progress = -1;
  Index log_every = 0;
};

/// Loss and metrics of a model on one dataset.
struct Evaluation {
  double loss = 0;                 // mean total loss (the fixed task weights λ_k; no UWL, no penalty)
  std::vector<TaskMetrics> tasks;  // per task, over all rows
  std::vector<SceneMetrics> scenes;  // per scene; empty unless schema.num_scenes > 1 and rows carry scene ids
};

struct EpochRecord {
  Index epoch = 0;                 // 1-based
  Index steps = 0;
  std::int64_t global_step = 0;    // optimiser steps after this epoch
  double train_loss = 0;           // mean total loss over the epoch's steps
  double rows_per_second = 0;
  double valid_loss = 0;
  std::vector<TaskMetrics> valid;  // empty when no validation set
  std::vector<SceneMetrics> valid_scenes;
  double score = TaskMetrics::nan;  // the monitored value on the validation set (mean AUC or loss)
  bool improved = false;            // the best epoch so far (written to checkpoint_path)
  Index best_epoch = 0;             // the best epoch so far (0: none, no validation set)
};

/// The final record: the test set scored once with the selected weights.
struct TestRecord {
  Index epoch = 0;                  // the epoch whose weights were scored (the best, or the last)
  std::int64_t global_step = 0;     // optimiser steps of those weights
  bool selected = false;            // the weights were selected on the validation set (best epoch)
  Evaluation test;
  double score = TaskMetrics::nan;  // the monitored value on the test set
};

class Trainer {
 public:
  Trainer(models::Model& model, Optimizer& optimizer, TrainerOptions opt);

  /// Trains from the current position (epoch/step, see resume()) until `epochs` are done or early
  /// stopping triggers. Returns one record per epoch run now. With a validation set (non-null,
  /// rows > 0) the model holds the best epoch's weights afterwards (see the file comment); the
  /// optimiser state and the position stay those of the last epoch (resume from
  /// last_checkpoint_path to continue training).
  std::vector<EpochRecord> fit(const data::Dataset& train, const data::Dataset* valid = nullptr);

  /// Scores `test` once with the model's current weights (after fit(): the selected epoch's) and
  /// writes the final record ({"record": "test", ...}) to metrics_path / on_record.
  TestRecord test(const data::Dataset& test);

  /// Loss and metrics of the model on `data` (inference mode, no gradient).
  std::pair<double, std::vector<TaskMetrics>> evaluate(const data::Dataset& data) const;
  /// The same with per-scene metrics (multi-scene models).
  Evaluation evaluate_detailed(const data::Dataset& data) const;
  /// The monitored value of an evaluation: mean AUC over binary tasks ("auc") or the loss ("loss").
  double monitored(const Evaluation& e) const;

  /// One optimisation step on `batch`; returns the total loss. Exposed for custom loops.
  double train_step(const data::Batch& batch);

  /// Writes the model, the optimiser state and the loop position to `path` (atomic).
  void save_checkpoint(const std::filesystem::path& path) const;
  /// Loads weights, optimiser state and loop position written by save_checkpoint.
  void resume(const std::filesystem::path& path);

  Index epoch() const { return epoch_; }
  /// The best epoch so far (1-based; 0 = none) and its monitored value.
  Index best_epoch() const { return best_epoch_; }
  std::int64_t global_step() const { return global_step_; }
  const MultiTaskLoss<float>& loss() const { return loss_; }
  const TrainerOptions& options() const { return opt_; }
  /// Row slices the last train_step ran (1: the whole batch on the model, intra-op threads).
  int last_slices() const { return last_slices_; }

 private:
  /// Loss of `out` on the batch's labels (UWL-combined, plus the model's penalty); writes
  /// d total / d out into grad_.
  double loss_and_output_gradient(ConstMat out, const data::Batch& batch);
  double data_parallel_step(const data::Batch& batch, int slices, const Rng& step_rng);
  void ensure_replicas(int slices);
  void plan_reduction(int slices);
  void reduce_replica_gradients(int slices);
  void pcgrad_backward(ConstMat g);
  void log_progress(Index done, Index total, double loss, double rows_per_s, bool final);
  void write_json_line(const nlohmann::ordered_json& record) const;
  void save_position_after_epoch(const std::string& path);
  void keep_best_weights();
  bool restore_best_weights();

  models::Model& model_;
  Optimizer& optimizer_;
  TrainerOptions opt_;
  MultiTaskLoss<float> loss_;
  std::optional<UncertaintyWeighting<float>> uwl_;
  std::unique_ptr<models::Model::Workspace> ws_;
  Tensor grad_, task_grad_, pc_grads_;
  std::vector<Parameter<float>*> shared_;
  std::vector<float> pc_out_;
  PcGradWorkspace<float> pc_ws_;
  data::Batch batch_;
  // Data-parallel state: replicas_[s - 1] and ws_dp_[s - 1] run slice s > 0.
  std::vector<std::unique_ptr<models::Model>> replicas_;
  std::vector<std::unique_ptr<models::Model::Workspace>> ws_dp_;
  std::vector<data::Batch> slice_batch_;
  std::vector<ConstMat> slice_out_;
  std::vector<Rng> slice_rng_;
  Tensor out_;
  int last_slices_ = 1;
  struct ReductionPlan {  // which replica gradients add into which model gradient, cached
    struct Chunk {
      std::size_t param;
      Index begin, end;
    };
    int slices = 0;
    std::size_t params = 0;
    std::vector<std::vector<const Parameter<float>*>> sources;  // per model parameter
    std::vector<Chunk> dense;
    std::vector<std::size_t> sparse;
  } reduction_;
  Index epoch_ = 0;           // current epoch (0-based)
  Index step_in_epoch_ = 0;   // steps done in the current epoch
  std::int64_t global_step_ = 0;
  double best_ = 0;                  // best score, higher is better (-loss for "loss")
  bool has_best_ = false;
  Index best_epoch_ = 0;             // 1-based epoch of best_
  std::int64_t best_global_step_ = 0;
  std::vector<std::vector<float>> best_values_;  // arena values of the best epoch when not on disk
  Index model_epoch_ = 0;             // the epoch whose weights the model holds (0: untrained)
  std::int64_t model_step_ = 0;       // and their global step
  bool model_selected_ = false;       // the model holds the validation-selected best weights
  Index bad_epochs_ = 0;
  bool bar_ = false;
};

/// Loss specs from a schema: bce_with_logits for binary tasks, mse for regression, weight 1.
std::vector<TaskLossSpec> default_task_losses(const data::FeatureSchema& schema);

/// {"count", "mean_prediction", "mean_label", and "auc", "gauc", "log_loss", "calibration" for
/// binary tasks or "mse" for regression}; non-finite values are null.
/// (Ordered JSON: keys keep the documented order, tasks the schema's.)
nlohmann::ordered_json task_metrics_json(const TaskMetrics& m);
/// {"<task>": task_metrics_json, ...} in task order.
nlohmann::ordered_json tasks_json(const std::vector<TaskMetrics>& ms);
/// [{"scene": s, "rows": n, "tasks": tasks_json}, ...], or null when `scenes` is empty.
nlohmann::ordered_json scenes_json(const std::vector<SceneMetrics>& scenes);

/// The JSON line of an epoch / the final test record (docs/cli.md, "Records"). Both have the keys
///   record ("epoch" | "test"), epoch, steps, global_step, train_loss, rows_per_second, split
///   ("valid" | "test" | null), loss, monitor, score, best, best_epoch, tasks, scenes
/// with null where a value does not apply.
nlohmann::ordered_json record_json(const EpochRecord& r, const std::string& monitor);
nlohmann::ordered_json record_json(const TestRecord& r, const std::string& monitor);

}  // namespace mtrank::train
