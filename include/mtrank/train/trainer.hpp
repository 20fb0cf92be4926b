// The training loop: shuffled mini-batches, epochs, evaluation per epoch, early stopping,
// progress on stderr (a live bar on a terminal, plain log lines otherwise), metrics as JSON
// lines, and atomic checkpoints that resume to the exact same next step.
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
  /// Early stopping: stop after this many epochs without improvement of `monitor` (0 = off).
  Index patience = 0;
  /// "auc" (mean AUC over binary tasks, higher is better) or "loss" (validation loss, lower is better).
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
  /// JSON lines with one record per epoch (and per `log_every` steps when > 0); "" = none.
  std::string metrics_path;
  /// Checkpoint written atomically at the end of every epoch ("" = none).
  std::string checkpoint_path;
  /// -1: a live bar when stderr is a terminal, plain lines otherwise; 0: plain lines; 1: bar; 2: silent.
  int progress = -1;
  Index log_every = 0;
};

struct EpochRecord {
  Index epoch = 0;
  Index steps = 0;
  double train_loss = 0;       // mean total loss over the epoch's steps
  double rows_per_second = 0;
  double valid_loss = 0;
  std::vector<TaskMetrics> valid;  // empty when no validation set
  bool improved = false;
};

class Trainer {
 public:
  Trainer(models::Model& model, Optimizer& optimizer, TrainerOptions opt);

  /// Trains from the current position (epoch/step, see resume()) until `epochs` are done or early
  /// stopping triggers. Returns one record per epoch run now.
  std::vector<EpochRecord> fit(const data::Dataset& train, const data::Dataset* valid = nullptr);

  /// Loss and metrics of the model on `data` (inference mode, no gradient).
  std::pair<double, std::vector<TaskMetrics>> evaluate(const data::Dataset& data) const;

  /// One optimisation step on `batch`; returns the total loss. Exposed for custom loops.
  double train_step(const data::Batch& batch);

  /// Writes the model, the optimiser state and the loop position to `path` (atomic).
  void save_checkpoint(const std::filesystem::path& path) const;
  /// Loads weights, optimiser state and loop position written by save_checkpoint.
  void resume(const std::filesystem::path& path);

  Index epoch() const { return epoch_; }
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
  void write_json_line(const nlohmann::json& record) const;

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
  double best_ = 0;
  bool has_best_ = false;
  Index bad_epochs_ = 0;
  bool bar_ = false;
};

/// Loss specs from a schema: bce_with_logits for binary tasks, mse for regression, weight 1.
std::vector<TaskLossSpec> default_task_losses(const data::FeatureSchema& schema);

}  // namespace mtrank::train
