#include "mtrank/train/trainer.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "mtrank/core/threading.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/kernels/packed_linear.hpp"
#include "mtrank/models/parallel_inference.hpp"

namespace mtrank::train {

namespace {
constexpr std::uint64_t kStepSalt = 0xd1b54a32d192ed03ULL;

// "  click auc 0.7012 gauc 0.6543 logloss 0.4321  dwell mse 0.1234": one progress line's metrics.
std::string metrics_summary(const std::vector<TaskMetrics>& tasks) {
  std::string summary;
  for (const auto& m : tasks) {
    char buf[160];
    if (m.kind == TaskKind::binary)
      std::snprintf(buf, sizeof buf, "  %s auc %.4f gauc %.4f logloss %.4f", m.name.c_str(), m.auc, m.gauc, m.log_loss);
    else
      std::snprintf(buf, sizeof buf, "  %s mse %.4f", m.name.c_str(), m.mse);
    summary += buf;
  }
  return summary;
}

std::vector<Index> epoch_permutation(Index rows, std::uint64_t seed, Index epoch) {
  std::vector<Index> perm(static_cast<std::size_t>(rows));
  std::iota(perm.begin(), perm.end(), Index{0});
  Rng rng = Rng(seed).fork(static_cast<std::uint64_t>(epoch));
  for (Index i = rows - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(static_cast<std::uint64_t>(i + 1))]);
  return perm;
}

double mean_auc(const std::vector<TaskMetrics>& m) {
  double s = 0;
  int n = 0;
  for (auto& t : m)
    if (t.kind == TaskKind::binary && std::isfinite(t.auc)) s += t.auc, ++n;
  return n ? s / n : std::nan("");
}

using ojson = nlohmann::ordered_json;
ojson num_or_null(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }
}  // namespace

nlohmann::ordered_json task_metrics_json(const TaskMetrics& m) {
  ojson t = {{"count", m.count}, {"mean_prediction", num_or_null(m.mean_prediction)},
                      {"mean_label", num_or_null(m.mean_label)}};
  if (m.kind == TaskKind::binary) {
    t["auc"] = num_or_null(m.auc);
    t["gauc"] = num_or_null(m.gauc);
    t["log_loss"] = num_or_null(m.log_loss);
    t["calibration"] = num_or_null(m.calibration);
  } else {
    t["mse"] = num_or_null(m.mse);
  }
  return t;
}

nlohmann::ordered_json tasks_json(const std::vector<TaskMetrics>& ms) {
  ojson j = ojson::object();
  for (auto& m : ms) j[m.name] = task_metrics_json(m);
  return j;
}

nlohmann::ordered_json scenes_json(const std::vector<SceneMetrics>& scenes) {
  if (scenes.empty()) return nullptr;
  ojson j = ojson::array();
  for (auto& s : scenes) j.push_back({{"scene", s.scene}, {"rows", s.rows}, {"tasks", tasks_json(s.tasks)}});
  return j;
}

nlohmann::ordered_json record_json(const EpochRecord& r, const std::string& monitor) {
  const bool evaluated = !r.valid.empty();
  using json = ojson;
  return json{{"record", "epoch"},
              {"epoch", r.epoch},
              {"steps", r.steps},
              {"global_step", r.global_step},
              {"train_loss", num_or_null(r.train_loss)},
              {"rows_per_second", num_or_null(r.rows_per_second)},
              {"split", evaluated ? json("valid") : json(nullptr)},
              {"loss", evaluated ? num_or_null(r.valid_loss) : json(nullptr)},
              {"monitor", monitor},
              {"score", evaluated ? num_or_null(r.score) : json(nullptr)},
              {"best", evaluated ? json(r.improved) : json(nullptr)},
              {"best_epoch", r.best_epoch > 0 ? json(r.best_epoch) : json(nullptr)},
              {"tasks", evaluated ? tasks_json(r.valid) : json(nullptr)},
              {"scenes", scenes_json(r.valid_scenes)}};
}

nlohmann::ordered_json record_json(const TestRecord& r, const std::string& monitor) {
  using json = ojson;
  return json{{"record", "test"},
              {"epoch", r.epoch},
              {"steps", nullptr},
              {"global_step", r.global_step},
              {"train_loss", nullptr},
              {"rows_per_second", nullptr},
              {"split", "test"},
              {"loss", num_or_null(r.test.loss)},
              {"monitor", monitor},
              {"score", num_or_null(r.score)},
              {"best", r.selected},
              {"best_epoch", r.selected ? json(r.epoch) : json(nullptr)},
              {"tasks", tasks_json(r.test.tasks)},
              {"scenes", scenes_json(r.test.scenes)}};
}

std::vector<TaskLossSpec> default_task_losses(const data::FeatureSchema& schema) {
  std::vector<TaskLossSpec> specs;
  for (auto& t : schema.tasks)
    specs.push_back({t.name, t.kind == data::TaskKind::binary ? LossKind::bce_with_logits : LossKind::mse, 1.0});
  return specs;
}

Trainer::Trainer(models::Model& model, Optimizer& optimizer, TrainerOptions opt)
    : model_(model), optimizer_(optimizer), opt_(std::move(opt)) {
  require(opt_.batch_size > 0, "trainer.batch_size: expected > 0, got ", opt_.batch_size);
  require(opt_.epochs >= 0, "trainer.epochs: expected >= 0, got ", opt_.epochs);
  require(opt_.eval_batch_size > 0, "trainer.eval_batch_size: expected > 0, got ", opt_.eval_batch_size);  // 0 looped forever
  require(opt_.data_parallel_min_rows >= 0, "trainer.data_parallel_min_rows: expected >= 0, got ",
          opt_.data_parallel_min_rows);
  require(opt_.checkpoint_path.empty() || opt_.checkpoint_path != opt_.last_checkpoint_path,
          "trainer: checkpoint_path and last_checkpoint_path must differ (both '", opt_.checkpoint_path, "')");
  require(opt_.monitor == "auc" || opt_.monitor == "loss", "trainer.monitor: expected \"auc\" or \"loss\", got \"",
          opt_.monitor, "\"");
  if (opt_.tasks.empty()) opt_.tasks = default_task_losses(model.schema());
  require(static_cast<Index>(opt_.tasks.size()) == model.num_tasks(), "trainer.tasks: ", opt_.tasks.size(),
          " task specs, the model has ", model.num_tasks(), " tasks");
  if (opt_.uwl) {
    for (auto& t : opt_.tasks) t.weight = 1.0;  // UWL learns the balance
    uwl_.emplace(model.arena(), "uwl", UncertaintyWeightingOptions{.num_tasks = model.num_tasks()});
  }
  loss_ = MultiTaskLoss<float>(opt_.tasks);
  if (opt_.pcgrad) {
    for (auto& p : model.arena().parameters()) {
      if (!p.trainable || p.sparse) continue;
      bool specific = false;
      for (auto& prefix : opt_.task_specific_prefixes) specific = specific || p.name.rfind(prefix, 0) == 0;
      if (!specific) shared_.push_back(&p);
    }
  }
  ws_ = model.make_workspace();
  bar_ = opt_.progress == 1 || (opt_.progress == -1 && isatty(STDERR_FILENO));
}

double Trainer::train_step(const data::Batch& batch) {
  auto& arena = model_.arena();
  Rng step_rng = Rng(opt_.seed ^ kStepSalt).fork(static_cast<std::uint64_t>(global_step_));
  const bool pcgrad_step = opt_.pcgrad && model_.num_tasks() > 1 && !shared_.empty();
  const int slices = opt_.data_parallel_min_rows > 0 && !pcgrad_step
                         ? models::row_slice_count(batch.size, num_threads(), opt_.data_parallel_min_rows)
                         : 1;
  last_slices_ = slices;
  if (slices > 1) {
    const double total = data_parallel_step(batch, slices, step_rng);
    optimizer_.step(arena);
    ++global_step_;
    return total;
  }
  arena.zero_grad();
  const Context ctx = Context::train(step_rng);
  ConstMat out = model_.forward(batch, *ws_, ctx);
  const double total = loss_and_output_gradient(out, batch);
  const ConstMat g = grad_.matrix();
  if (pcgrad_step) {
    pcgrad_backward(g);
  } else {
    model_.backward(g, *ws_);
  }
  optimizer_.step(arena);
  ++global_step_;
  return total;
}

double Trainer::loss_and_output_gradient(ConstMat out, const data::Batch& batch) {
  Mat g = ensure(grad_, out.rows, out.cols);
  LossResult r = loss_.compute(out, batch.labels.matrix(), batch.label_mask.matrix(), g);
  double total = r.total;
  if (uwl_) {
    std::vector<double> scale(static_cast<std::size_t>(model_.num_tasks()));
    total = uwl_->combine(r.task_loss, scale, r.task_count);
    scale_task_gradients<float>(g, scale);
  }
  // The regulariser's gradient goes into the model's arena (after its gradients were zeroed).
  if (opt_.penalty_weight != 0) total += model_.penalty(opt_.penalty_weight);
  return total;
}

void Trainer::ensure_replicas(int slices) {
  while (static_cast<int>(replicas_.size()) < slices - 1) {
    replicas_.push_back(models::make_gradient_replica(model_));
    ws_dp_.push_back(replicas_.back()->make_workspace());
  }
  if (static_cast<int>(slice_batch_.size()) < slices) slice_batch_.resize(static_cast<std::size_t>(slices));
}

double Trainer::data_parallel_step(const data::Batch& batch, int slices, const Rng& step_rng) {
  ensure_replicas(slices);
  const Index B = batch.size;
  auto slice_model = [&](int s) -> models::Model& { return s == 0 ? model_ : *replicas_[static_cast<std::size_t>(s - 1)]; };
  auto slice_ws = [&](int s) -> models::Model::Workspace& { return s == 0 ? *ws_ : *ws_dp_[static_cast<std::size_t>(s - 1)]; };
  // Buffers follow the model (slice 0); copied before the slices run, as slice 0 updates them.
  for (int s = 1; s < slices; ++s) slice_model(s).arena().copy_buffers_from(model_.arena());
  slice_rng_.clear();
  for (int s = 0; s < slices; ++s) slice_rng_.push_back(step_rng.fork(static_cast<std::uint64_t>(s)));
  slice_out_.assign(static_cast<std::size_t>(slices), ConstMat{});
  models::for_each_row_slice(B, slices, [&](int s, Index begin, Index end) {
    models::Model& m = slice_model(s);
    m.arena().zero_grad();
    data::Batch& part = slice_batch_[static_cast<std::size_t>(s)];
    data::slice_batch(batch, begin, end, part);
    slice_out_[static_cast<std::size_t>(s)] =
        m.forward(part, slice_ws(s), Context::train(slice_rng_[static_cast<std::size_t>(s)]));
  });

  // The loss over the whole batch: normalisers (rows, masked labels) and UWL see every row.
  const Index K = slice_out_[0].cols;
  Mat y = ensure(out_, B, K);
  for (int s = 0; s < slices; ++s) {
    const ConstMat& part = slice_out_[static_cast<std::size_t>(s)];
    const Index r0 = models::slice_begin(B, slices, s), rows = models::slice_begin(B, slices, s + 1) - r0;
    require(part.rows == rows && part.cols == K, "trainer: slice ", s, " returned [", part.rows, ", ", part.cols,
            "], expected [", rows, ", ", K, "]");
    for (Index r = 0; r < rows; ++r) std::copy(part.row(r), part.row(r) + K, y.row(r0 + r));
  }
  const double total = loss_and_output_gradient(y, batch);
  const ConstMat gc = grad_.matrix();
  models::for_each_row_slice(B, slices, [&](int s, Index begin, Index end) {
    slice_model(s).backward(gc.row_block(begin, end - begin), slice_ws(s));
  });
  reduce_replica_gradients(slices);
  return total;
}

void Trainer::plan_reduction(int slices) {
  auto& params = model_.arena().parameters();
  if (reduction_.slices == slices && reduction_.params == params.size()) return;
  reduction_ = {};
  reduction_.slices = slices;
  reduction_.params = params.size();
  reduction_.sources.resize(params.size());
  constexpr Index kChunk = 16384;
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (!p.trainable) continue;
    // Parameters added to the model after it was built (a trainer's "uwl.*") have no replica.
    for (int s = 1; s < slices; ++s)
      if (const Parameter<float>* q = replicas_[static_cast<std::size_t>(s - 1)]->arena().find(p.name))
        reduction_.sources[i].push_back(q);
    if (reduction_.sources[i].empty()) continue;
    if (p.sparse) reduction_.sparse.push_back(i);
    else
      for (Index b = 0; b < p.numel(); b += kChunk) reduction_.dense.push_back({i, b, std::min(p.numel(), b + kChunk)});
  }
}

void Trainer::reduce_replica_gradients(int slices) {
  // Dense gradients: the model's gradient plus each replica's, in slice order, in fixed chunks
  // spread over the threads (the sum per element does not depend on the split).
  plan_reduction(slices);
  auto& params = model_.arena().parameters();
  const auto& plan = reduction_;
  apply_thread_setting();
  const auto n_dense = static_cast<std::ptrdiff_t>(plan.dense.size());
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t c = 0; c < n_dense; ++c) {
    const auto& ch = plan.dense[static_cast<std::size_t>(c)];
    float* dst = params[ch.param].grad;
    for (const Parameter<float>* src : plan.sources[ch.param]) {
      const float* g = src->grad;
      for (Index i = ch.begin; i < ch.end; ++i) dst[i] += g[i];
    }
  }
  // Sparse-row gradients, a table per task: rows merged in slice order, then first-touch order.
  const auto n_sparse = static_cast<std::ptrdiff_t>(plan.sparse.size());
#pragma omp parallel for schedule(dynamic, 1)
  for (std::ptrdiff_t t = 0; t < n_sparse; ++t) {
    const std::size_t i = plan.sparse[static_cast<std::size_t>(t)];
    auto& dst = params[i].sparse_grad;
    const Index w = dst.width();
    for (const Parameter<float>* src : plan.sources[i]) {
      const auto& rows = src->sparse_grad.rows();
      const float* v = src->sparse_grad.values();
      for (std::size_t k = 0; k < rows.size(); ++k) {
        float* d = dst.row(rows[k]);
        for (Index j = 0; j < w; ++j) d[j] += v[static_cast<Index>(k) * w + j];
      }
    }
  }
}

void Trainer::pcgrad_backward(ConstMat g) {
  // The penalty's gradient (already in the arena) belongs to no task: keep it aside.
  const Index K = g.cols;
  Index P = 0;
  for (auto* p : shared_) P += p->numel();
  Mat tg = ensure(pc_grads_, K, P);
  std::vector<float> base(static_cast<std::size_t>(P));
  {
    Index o = 0;
    for (auto* p : shared_) {
      std::copy(p->grad, p->grad + p->numel(), base.begin() + o);
      o += p->numel();
    }
  }
  Mat gk = ensure(task_grad_, g.rows, K);
  for (Index k = 0; k < K; ++k) {
    for (auto* p : shared_) std::fill(p->grad, p->grad + p->numel(), 0.0f);
    for (Index b = 0; b < g.rows; ++b)
      for (Index j = 0; j < K; ++j) gk(b, j) = j == k ? g(b, j) : 0.0f;
    model_.backward(gk, *ws_);  // task-specific and sparse gradients accumulate across tasks
    Index o = 0;
    for (auto* p : shared_) {
      std::copy(p->grad, p->grad + p->numel(), tg.row(k) + o);
      o += p->numel();
    }
  }
  pc_out_.resize(static_cast<std::size_t>(P));
  // Task order drawn per step, so a resumed run replays it exactly.
  Rng order_rng = Rng(opt_.seed ^ 0x9c6a1f3b5d7e2a41ULL).fork(static_cast<std::uint64_t>(global_step_));
  pcgrad<float>(tg, pc_out_, order_rng, pc_ws_);
  Index o = 0;
  for (auto* p : shared_) {
    for (Index i = 0; i < p->numel(); ++i) p->grad[i] = base[o + i] + pc_out_[o + i];
    o += p->numel();
  }
}

std::pair<double, std::vector<TaskMetrics>> Trainer::evaluate(const data::Dataset& data) const {
  Evaluation e = evaluate_detailed(data);
  return {e.loss, std::move(e.tasks)};
}

Evaluation Trainer::evaluate_detailed(const data::Dataset& data) const {
  std::vector<TaskKind> kinds;
  std::vector<std::string> names;
  for (auto& t : opt_.tasks) {
    kinds.push_back(task_kind(t.kind));
    names.push_back(t.name);
  }
  const Index K = static_cast<Index>(kinds.size());
  // Row slices over num_threads() threads (one slice, i.e. Model::forward, at one thread).
  models::ParallelInference scorer(model_);
  data::Batch b;
  Tensor probs(Shape{data.rows, K});
  double loss_sum = 0;
  Index rows = 0;
  for (Index s = 0; s < data.rows; s += opt_.eval_batch_size) {
    const Index e = std::min(data.rows, s + opt_.eval_batch_size);
    data.slice(s, e, b);
    ConstMat out = scorer.forward(b);
    require(out.rows == e - s && out.cols == K, "trainer: the model returned [", out.rows, ", ", out.cols,
            "] for ", e - s, " rows and ", K, " tasks");
    LossResult r = loss_.compute(out, b.labels.matrix(), b.label_mask.matrix(), Mat{});
    loss_sum += r.total * double(e - s);
    rows += e - s;
    for (Index i = 0; i < out.rows; ++i)
      for (Index k = 0; k < K; ++k)
        probs[(s + i) * K + k] =
            kinds[k] == TaskKind::binary ? float(1.0 / (1.0 + std::exp(-double(out(i, k))))) : out(i, k);
  }
  Evaluation ev;
  ev.loss = rows ? loss_sum / double(rows) : 0.0;
  const MatrixView<const float> p(probs.data(), data.rows, K);
  const MatrixView<const float> mask =
      data.label_mask.numel() == data.rows * K && data.rows > 0
          ? MatrixView<const float>(data.label_mask.data(), data.rows, K)
          : MatrixView<const float>();
  const MatrixView<const float> labels(data.labels.data(), data.rows, K);
  ev.tasks = evaluate_tasks(p, labels, mask, data.user, kinds, names);
  const std::int32_t S = static_cast<std::int32_t>(data.schema.num_scenes);
  if (S > 1 && static_cast<Index>(data.scene.size()) == data.rows && data.rows > 0)
    ev.scenes = evaluate_tasks_by_scene(p, labels, mask, data.user, data.scene, S, kinds, names);
  return ev;
}

double Trainer::monitored(const Evaluation& e) const { return opt_.monitor == "auc" ? mean_auc(e.tasks) : e.loss; }

void Trainer::log_progress(Index done, Index total, double loss, double rows_per_s, bool final) {
  if (opt_.progress == 2) return;
  if (bar_) {
    const int width = 30;
    const int filled = total ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\repoch %lld [%.*s%*s] %lld/%lld  loss %.5f  %.0f rows/s%s", (long long)epoch_ + 1, filled,
                 "##############################", width - filled, "", (long long)done, (long long)total, loss,
                 rows_per_s, final ? "\n" : "");
  } else if (final || (opt_.log_every > 0 && done % opt_.log_every == 0)) {
    std::fprintf(stderr, "epoch %lld step %lld/%lld loss %.5f rows/s %.0f\n", (long long)epoch_ + 1, (long long)done,
                 (long long)total, loss, rows_per_s);
  }
  std::fflush(stderr);
}

void Trainer::write_json_line(const nlohmann::ordered_json& record) const {
  if (opt_.on_record) opt_.on_record(record);
  if (opt_.metrics_path.empty()) return;
  std::ofstream f(opt_.metrics_path, std::ios::app);
  if (!f) fail("trainer.metrics_path: cannot open '", opt_.metrics_path, "' for appending");
  f << record.dump() << '\n';
  if (!f.flush()) fail("trainer.metrics_path: write to '", opt_.metrics_path, "' failed");
}

void Trainer::save_position_after_epoch(const std::string& path) {
  // Called at the end of epoch epoch_: the next fit() starts at the next epoch.
  ++epoch_;
  step_in_epoch_ = 0;
  try {
    save_checkpoint(path);
  } catch (...) {
    --epoch_;
    throw;
  }
  --epoch_;
}

void Trainer::keep_best_weights() {
  const auto& params = model_.arena().parameters();
  best_values_.resize(params.size());
  for (std::size_t i = 0; i < params.size(); ++i)
    best_values_[i].assign(params[i].value, params[i].value + params[i].numel());
}

bool Trainer::restore_best_weights() {
  if (!has_best_ || best_epoch_ == 0) return false;
  if (model_step_ == best_global_step_ && model_epoch_ == best_epoch_) return true;  // already there
  auto& params = model_.arena().parameters();
  if (best_values_.size() == params.size()) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      require(static_cast<Index>(best_values_[i].size()) == params[i].numel(), "trainer: parameter '", params[i].name,
              "' changed size during training");
      std::copy(best_values_[i].begin(), best_values_[i].end(), params[i].value);
    }
    model_.arena().mark_weights_changed();  // packed serving copies of the old weights are stale now
  } else if (!opt_.checkpoint_path.empty() && std::filesystem::exists(opt_.checkpoint_path)) {
    // The best epoch is on disk (written when it appeared); check that the file is that epoch.
    const io::CheckpointData meta = io::read_checkpoint_metadata(opt_.checkpoint_path);
    const auto step = meta.train_state.value("global_step", std::int64_t{-1});
    if (step != best_global_step_) {
      if (opt_.progress != 2)
        std::fprintf(stderr,
                     "trainer: warning: '%s' holds step %lld, not the best epoch %lld (step %lld); the model keeps the "
                     "last epoch's weights\n",
                     opt_.checkpoint_path.c_str(), (long long)step, (long long)best_epoch_, (long long)best_global_step_);
      return false;
    }
    io::LoadOptions lo;
    lo.ignore_prefixes = {io::kOptimPrefix};
    io::load_arena(model_.arena(), io::SafetensorsFile::load(opt_.checkpoint_path), lo);
  } else {
    if (opt_.progress != 2)
      std::fprintf(stderr,
                   "trainer: warning: the best epoch %lld's weights are not available (resumed without "
                   "checkpoint_path); the model keeps the last epoch's weights\n",
                   (long long)best_epoch_);
    return false;
  }
  model_epoch_ = best_epoch_;
  model_step_ = best_global_step_;
  return true;
}

std::vector<EpochRecord> Trainer::fit(const data::Dataset& train, const data::Dataset* valid) {
  require(train.rows > 0, "trainer: the training set is empty");
  const bool validate = valid && valid->rows > 0;
  if (!validate && opt_.patience > 0 && epoch_ < opt_.epochs && opt_.progress != 2)
    std::fprintf(stderr, "trainer: warning: patience %lld ignored: early stopping needs a validation set\n",
                 (long long)opt_.patience);
  std::vector<EpochRecord> history;
  const Index steps_full = train.rows / opt_.batch_size + (train.rows % opt_.batch_size != 0);  // no overflow
  const Index steps = opt_.max_steps_per_epoch > 0 ? std::min(steps_full, opt_.max_steps_per_epoch) : steps_full;
  std::vector<Index> idx;
  bool stopped = false;
  for (; epoch_ < opt_.epochs && !stopped; ++epoch_, step_in_epoch_ = 0) {
    const auto perm = epoch_permutation(train.rows, opt_.seed, epoch_);
    const auto t0 = std::chrono::steady_clock::now();
    double loss_sum = 0;
    Index rows_done = 0, steps_done = 0;
    for (; step_in_epoch_ < steps; ++step_in_epoch_) {
      const Index s = step_in_epoch_ * opt_.batch_size, e = std::min(train.rows, s + opt_.batch_size);
      idx.assign(perm.begin() + s, perm.begin() + e);
      train.gather(idx, batch_);
      const double l = train_step(batch_);
      if (!std::isfinite(l)) fail("trainer: loss became ", l, " at epoch ", epoch_ + 1, " step ", step_in_epoch_ + 1);
      loss_sum += l;
      rows_done += e - s;
      ++steps_done;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (bar_ || opt_.log_every > 0) log_progress(step_in_epoch_ + 1, steps, loss_sum / steps_done, rows_done / std::max(secs, 1e-9), false);
    }
    model_epoch_ = epoch_ + 1;
    model_step_ = global_step_;
    model_selected_ = false;
    EpochRecord rec;
    rec.epoch = epoch_ + 1;
    rec.steps = steps_done;
    rec.global_step = global_step_;
    rec.train_loss = steps_done ? loss_sum / steps_done : 0.0;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rec.rows_per_second = rows_done / std::max(secs, 1e-9);
    log_progress(steps, steps, rec.train_loss, rec.rows_per_second, true);
    if (validate) {
      Evaluation ev = evaluate_detailed(*valid);
      rec.valid_loss = ev.loss;
      rec.valid = std::move(ev.tasks);
      rec.valid_scenes = std::move(ev.scenes);
      rec.score = opt_.monitor == "auc" ? mean_auc(rec.valid) : rec.valid_loss;
      const double score = opt_.monitor == "auc" ? rec.score : -rec.score;
      if (std::isfinite(score) && (!has_best_ || score > best_)) {
        best_ = score;
        has_best_ = true;
        best_epoch_ = rec.epoch;
        best_global_step_ = global_step_;
        bad_epochs_ = 0;
        rec.improved = true;
      } else {
        ++bad_epochs_;
      }
    }
    rec.best_epoch = best_epoch_;
    if (opt_.progress != 2) {
      const std::string summary = metrics_summary(rec.valid);
      if (!summary.empty())
        std::fprintf(stderr, "epoch %lld valid:%s%s\n", (long long)rec.epoch, summary.c_str(),
                     rec.improved ? "  (best)" : "");
    }
    // The selected model: the best epoch so far with a validation set, else every (the last) epoch.
    if (rec.improved || !validate) {
      if (!opt_.checkpoint_path.empty()) save_position_after_epoch(opt_.checkpoint_path);
      else if (validate) keep_best_weights();
    }
    if (!opt_.last_checkpoint_path.empty()) save_position_after_epoch(opt_.last_checkpoint_path);
    write_json_line(record_json(rec, opt_.monitor));
    history.push_back(std::move(rec));
    if (validate && opt_.patience > 0 && bad_epochs_ >= opt_.patience) {
      if (opt_.progress != 2)
        std::fprintf(stderr, "early stopping after epoch %lld (best epoch %lld)\n", (long long)epoch_ + 1,
                     (long long)best_epoch_);
      stopped = true;
    }
  }
  if (validate) {
    if (has_best_) {
      model_selected_ = restore_best_weights();
      if (model_selected_ && opt_.progress != 2 && !history.empty())
        std::fprintf(stderr, "trainer: the model holds the best epoch %lld (%s %.6g)\n", (long long)best_epoch_,
                     opt_.monitor.c_str(), opt_.monitor == "auc" ? best_ : -best_);
    } else if (!history.empty()) {
      // No finite monitored value in any epoch (e.g. a one-class validation set with "auc").
      if (opt_.progress != 2)
        std::fprintf(stderr, "trainer: warning: %s was never finite on the validation set; keeping the last epoch\n",
                     opt_.monitor.c_str());
      if (!opt_.checkpoint_path.empty()) save_checkpoint(opt_.checkpoint_path);
    }
  }
  return history;
}

TestRecord Trainer::test(const data::Dataset& test) {
  TestRecord r;
  r.epoch = model_epoch_;
  r.global_step = model_step_;
  r.selected = model_selected_;
  r.test = evaluate_detailed(test);
  r.score = monitored(r.test);
  if (opt_.progress != 2) {
    const std::string summary = metrics_summary(r.test.tasks);
    std::fprintf(stderr, "test (epoch %lld%s):%s\n", (long long)r.epoch, r.selected ? ", best on valid" : "",
                 summary.c_str());
  }
  write_json_line(record_json(r, opt_.monitor));
  return r;
}

void Trainer::save_checkpoint(const std::filesystem::path& path) const {
  io::CheckpointData d;
  d.config = model_.config();
  d.train_state = {{"epoch", epoch_},
                   {"step_in_epoch", step_in_epoch_},
                   {"global_step", global_step_},
                   {"seed", opt_.seed},
                   {"best", best_},
                   {"has_best", has_best_},
                   {"best_epoch", best_epoch_},
                   {"best_global_step", best_global_step_},
                   {"monitor", opt_.monitor},
                   {"bad_epochs", bad_epochs_},
                   {"optimizer", optimizer_.name()}};
  d.optimizer_state = optimizer_.state();
  io::save_checkpoint(path, model_.arena(), d);
}

void Trainer::resume(const std::filesystem::path& path) {
  const io::CheckpointData meta = io::read_checkpoint_metadata(path);
  if (meta.kind == io::kServingKind)
    fail("checkpoint '", path.string(), "' is a weights-only serving file (mtrank export): it has no optimiser state ",
         "or position to resume from; resume from a training checkpoint");
  // The train state is untrusted JSON: read and check it before anything is loaded, so a
  // malformed one is an Error naming the file and leaves the model and optimiser untouched.
  const auto& s = meta.train_state;
  std::string opt_name, monitor;
  Index epoch = 0, step_in_epoch = 0, best_epoch = 0, bad_epochs = 0;
  std::int64_t global_step = 0, best_global_step = 0;
  double best = 0.0;
  bool has_best = false;
  try {
    if (!s.is_object()) fail("expected an object");
    auto count = [&](const char* key, bool required) -> std::int64_t {  // a non-negative integer
      auto it = s.find(key);
      if (it == s.end() && !required) return 0;
      if (it == s.end()) fail("\"", key, "\": missing");
      if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<std::int64_t>() < 0) ||
          (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)))
        fail("\"", key, "\": expected a non-negative integer, got ", it->dump().substr(0, 64));
      return it->get<std::int64_t>();
    };
    opt_name = s.value("optimizer", std::string());
    epoch = count("epoch", true);
    step_in_epoch = count("step_in_epoch", true);
    global_step = count("global_step", true);
    best = s.value("best", 0.0);
    has_best = s.value("has_best", false);
    best_epoch = count("best_epoch", false);
    best_global_step = count("best_global_step", false);
    bad_epochs = count("bad_epochs", false);
    monitor = s.value("monitor", opt_.monitor);
  } catch (const nlohmann::json::exception& e) {
    fail("checkpoint '", path.string(), "': metadata \"mtrank.train_state\": ", e.what());
  } catch (const Error& e) {
    fail("checkpoint '", path.string(), "': metadata \"mtrank.train_state\": ", e.what());
  }
  require(opt_name == optimizer_.name(), "checkpoint '", path.string(), "': optimizer state is for '", opt_name,
          "', this trainer uses '", optimizer_.name(), "'");
  io::CheckpointData d = io::load_checkpoint(path, model_.arena());
  optimizer_.load_state(d.optimizer_state, model_.arena());
  epoch_ = epoch;
  step_in_epoch_ = step_in_epoch;
  global_step_ = global_step;
  best_ = best;
  has_best_ = has_best;
  best_epoch_ = best_epoch;
  best_global_step_ = best_global_step;
  bad_epochs_ = bad_epochs;
  if (monitor != opt_.monitor) {  // the best so far was judged by another metric
    has_best_ = false;
    best_epoch_ = 0;
    bad_epochs_ = 0;
  }
  best_values_.clear();
  model_epoch_ = epoch_;
  model_step_ = global_step_;
  model_selected_ = false;
}

}  // namespace mtrank::train
