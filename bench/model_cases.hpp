// End-to-end model benchmark cases shared by bench_models (Google Benchmark and CLI modes).
//
// Configurations (PyTorch conventions, weights [out, in]); bench/compare_torch.py builds the
// same models in PyTorch:
//   mmoe       512 dense inputs; 8 experts 512->256->128 ReLU; 2 gates softmax(Linear(512, 8, no bias));
//              2 towers 128->64->1 (ReLU).
//   ple        512 dense inputs; 2 tasks, 2 CGC levels of 2 task-specific + 2 shared experts each;
//              level-1 experts 512->256->128, level-2 experts 128->256->128 (ReLU); task gates over
//              [own; shared] (4 columns), a shared gate over all 6 experts on level 1 only; gates
//              without bias; towers 128->64->1.
//   mmoe_full  26 sparse fields (one id each, 100k rows x 16) + 96 dense = 512 -> mmoe.
//   din_L50 / din_L200
//              user 100k x 32, item 1M x 32, category 10k x 32; item representation [item; category]
//              (64); DIN attention MLP on [q, k, q-k, q*k] (256) -> 80 -> 40 -> 1 with PReLU, no
//              softmax, masked sum over valid behaviours; top MLP [user 32; pooled 64; candidate 64]
//              = 160 -> 200 -> 80 -> 1 with PReLU. Sequence length L = 50 or 200, lengths uniform
//              in [1, L] (id 0 is padding; real ids are drawn uniformly from [1, vocab)).
// mmoe, ple and mmoe_full are built by models::build_model from JSON; DIN is composed here from
// nn::Embedding tables (sparse rows), blocks::DinAttention and nn::Mlp (build_model has no DIN
// model type yet).
//
// Inference with num_threads() > 1 is batch-parallel: the batch is cut into row slices (at least
// 64 rows each) scored on their own threads with their own workspaces (built cases through
// models::ParallelInference, DIN through models::for_each_row_slice). With one thread, or a
// batch too small to split, inference is the plain single-workspace forward.
//
// Model FLOPs (what GFLOP/s is computed from): 2 x multiply-adds of every Linear layer and of the
// gate mixtures / attention pooling; activations, softmax, biases and embedding lookups are not
// counted. Per sample:
//   mmoe / mmoe_full: 2 * [8 (512*256 + 256*128) + 2 (512*8) + 2 (8*128) + 2 (128*64 + 64)] = 2 674 944
//   ple:              2 * [6 (512*256 + 256*128) + 2 (512*4) + 512*6 + 2 (4*128) + 6*128
//                          + 6 (128*256 + 256*128) + 2 (128*4) + 2 (4*128) + 2 (128*64 + 64)] = 2 807 552
//   din:              2 * [n_valid * (256*80 + 80*40 + 40 + 64) + 160*200 + 200*80 + 80]
//                     where n_valid is the sample's number of valid behaviours (mean (L+1)/2):
//                     the literal 256-wide first layer, over valid positions only. mtrank runs a
//                     decomposed first layer (about a quarter of those FLOPs, see blocks/din.hpp)
//                     and PyTorch eager scores padding too; both are credited the same count.
// A training step is credited 3x the forward FLOPs (forward + two GEMMs per layer backward).
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/blocks/din.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/data/batch.hpp"
#include "mtrank/kernels/bf16.hpp"
#include "mtrank/kernels/embedding_bag.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/models/parallel_inference.hpp"
#include "mtrank/nn/mlp.hpp"
#include "mtrank/train/loss.hpp"
#include "mtrank/train/optimizer.hpp"
#include "mtrank/train/trainer.hpp"

namespace mtrank::bench {

inline const std::vector<std::string>& model_configs() {
  static const std::vector<std::string> v = {"mmoe", "ple", "mmoe_full", "din_L50", "din_L200"};
  return v;
}

/// One benchmarkable model: a few pre-generated batches of a fixed size, cycled through.
class ModelCase {
 public:
  virtual ~ModelCase() = default;
  /// Forward pass in inference mode on the next batch (the serving path, in the case's serving weights).
  virtual void infer() = 0;
  /// The serving plan's weight format of infer() (default f32); throws for bf16 without AVX512_BF16.
  virtual void set_serving_weights(ServingWeights w) = 0;
  /// One optimisation step (forward, BCE-with-logits loss, backward, Adam / sparse-row Adam).
  virtual void train_step() = 0;
  /// Model FLOPs of one forward pass over a whole batch (averaged over the cycled batches).
  virtual double forward_flops_per_batch() const = 0;
  virtual Index batch_size() const = 0;
  /// A value read from the last output (keeps the compiler honest, sanity check for NaN).
  virtual double checksum() const = 0;
  /// The outputs of the last forward pass [B, K] (read it right after infer()), e.g. to compare the
  /// batch-parallel path with the one-thread forward.
  virtual ConstMat last_output() const = 0;
};

std::unique_ptr<ModelCase> make_case(const std::string& config, Index batch, std::uint64_t seed = 1);

// ---------------------------------------------------------------------------------------------
namespace detail {

constexpr int kNumBatches = 4;  // distinct batches cycled through (ids and lengths differ)

inline nlohmann::json two_tasks() {
  return nlohmann::json::array({{{"name", "ctr"}, {"kind", "binary"}}, {{"name", "cvr"}, {"kind", "binary"}}});
}

inline nlohmann::json dense_fields(int n) {
  auto a = nlohmann::json::array();
  for (int i = 0; i < n; ++i) a.push_back({{"name", "d" + std::to_string(i)}});
  return a;
}

/// The JSON config of mmoe / ple / mmoe_full for models::build_model.
inline nlohmann::json model_json(const std::string& config) {
  using nlohmann::json;
  json schema = {{"tasks", two_tasks()}};
  if (config == "mmoe_full") {
    json sparse = json::array();
    for (int i = 0; i < 26; ++i) sparse.push_back({{"name", "c" + std::to_string(i)}, {"vocab", 100000}, {"dim", 16}});
    schema["sparse"] = sparse;
    schema["dense"] = dense_fields(96);
  } else {
    schema["sparse"] = json::array();
    schema["dense"] = dense_fields(512);
  }
  json model;
  const json gate = {{"bias", false}};
  const json tower = {{"hidden", {64}}, {"activation", "relu"}};
  if (config == "mmoe" || config == "mmoe_full") {
    model = {{"type", "mmoe"},
             {"num_experts", 8},
             {"expert", {{"layers", {256, 128}}, {"activation", "relu"}}},
             {"gate", gate},
             {"tower", tower}};
  } else if (config == "ple") {
    json level = {{"num_task_experts", 2}, {"num_shared_experts", 2}};
    json l1 = level, l2 = level;
    l1["expert"] = {{"layers", {256, 128}}, {"activation", "relu"}};
    l2["expert"] = {{"layers", {256, 128}}, {"activation", "relu"}};
    model = {{"type", "ple"}, {"levels", {l1, l2}}, {"gate", gate}, {"tower", tower}};
  } else {
    fail("bench_models: no JSON model for config '", config, "'");
  }
  return {{"schema", schema}, {"model", model}, {"seed", 7}};
}

inline double mmoe_flops() {
  const double experts = 8.0 * (512 * 256 + 256 * 128), gates = 2.0 * 512 * 8, mix = 2.0 * 8 * 128,
               towers = 2.0 * (128 * 64 + 64);
  return 2.0 * (experts + gates + mix + towers);
}

inline double ple_flops() {
  const double l1 = 6.0 * (512 * 256 + 256 * 128) + 2.0 * 512 * 4 + 512.0 * 6 + 2.0 * 4 * 128 + 6.0 * 128;
  const double l2 = 6.0 * (128 * 256 + 256 * 128) + 2.0 * 128 * 4 + 2.0 * 4 * 128;
  const double towers = 2.0 * (128 * 64 + 64);
  return 2.0 * (l1 + l2 + towers);
}

inline double din_flops(double n_valid_behaviours, double batch) {
  const double att = 256.0 * 80 + 80.0 * 40 + 40.0 + 64.0;  // MLP + pooling per valid behaviour
  const double top = 160.0 * 200 + 200.0 * 80 + 80.0;
  return 2.0 * (n_valid_behaviours * att + batch * top);
}

/// mmoe / ple / mmoe_full: a models::Model from build_model, trained through train::Trainer.
class BuiltCase final : public ModelCase {
 public:
  BuiltCase(const std::string& config, Index batch, std::uint64_t seed) : B_(batch) {
    model_ = models::build_model(model_json(config));
    ws_ = model_->make_workspace();
    parallel_ = std::make_unique<models::ParallelInference>(*model_);
    opt_ = std::make_unique<train::Adam>(train::AdamOptions{.lr = 1e-3});
    trainer_ = std::make_unique<train::Trainer>(
        *model_, *opt_, train::TrainerOptions{.batch_size = batch, .seed = seed, .penalty_weight = 0.0, .progress = 2});
    const auto& schema = model_->schema();
    const Index nd = static_cast<Index>(schema.dense.size()), ns = static_cast<Index>(schema.sparse.size());
    Rng rng(seed);
    for (int i = 0; i < kNumBatches; ++i) {
      data::Batch b;
      b.size = batch;
      b.dense = Tensor(Shape{batch, nd});
      for (float& v : b.dense) v = static_cast<float>(rng.normal());
      b.sparse.resize(static_cast<std::size_t>(batch * ns));
      for (Index r = 0; r < batch; ++r)
        for (Index f = 0; f < ns; ++f)
          b.sparse[r * ns + f] = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(schema.sparse[f].vocab)));
      b.labels = Tensor(Shape{batch, 2});
      for (float& v : b.labels) v = rng.uniform() < 0.3 ? 1.0f : 0.0f;
      batches_.push_back(std::move(b));
    }
    flops_ = (config == "ple" ? ple_flops() : mmoe_flops()) * double(batch);
  }
  void infer() override {
    // The serving path (Model::serve: the model's serving_context(), packed weights), as a service runs it.
    if (num_threads() > 1) out_ = parallel_->serve(next());
    else out_ = model_->serve(next(), *ws_);
  }
  void set_serving_weights(ServingWeights w) override { model_->set_serving_weights(w); }
  void train_step() override {
    loss_ = trainer_->train_step(next());
    if (!std::isfinite(loss_)) fail("bench_models: training loss became ", loss_);
  }
  double forward_flops_per_batch() const override { return flops_; }
  Index batch_size() const override { return B_; }
  double checksum() const override { return out_.empty() ? loss_ : double(out_(0, 0)); }
  ConstMat last_output() const override { return out_; }

 private:
  const data::Batch& next() { return batches_[static_cast<std::size_t>(cursor_++ % kNumBatches)]; }
  Index B_;
  std::unique_ptr<models::Model> model_;
  std::unique_ptr<models::Model::Workspace> ws_;
  std::unique_ptr<models::ParallelInference> parallel_;
  std::unique_ptr<train::Optimizer> opt_;
  std::unique_ptr<train::Trainer> trainer_;
  std::vector<data::Batch> batches_;
  std::size_t cursor_ = 0;
  ConstMat out_;
  double loss_ = 0, flops_ = 0;
};

/// DIN composed from blocks. Tables: embeddings.{user,item,category}.weight (sparse rows).
class DinCase final : public ModelCase {
 public:
  static constexpr Index kUsers = 100000, kItems = 1000000, kCats = 10000, kD = 32;

  DinCase(Index L, Index batch, std::uint64_t seed) : L_(L), B_(batch), arena_(7) {
    const Init emb_init = Init::normal(0.0, 1e-2);
    user_ = &arena_.add("embeddings.user.weight", Shape{kUsers, kD}, {.init = emb_init, .sparse = true});
    item_ = &arena_.add("embeddings.item.weight", Shape{kItems, kD}, {.init = emb_init, .sparse = true});
    cat_ = &arena_.add("embeddings.category.weight", Shape{kCats, kD}, {.init = emb_init, .sparse = true});
    att_ = blocks::DinAttention<float>(arena_, "attention",
                                       {.dim = 2 * kD, .hidden = {80, 40}, .activation = nn::ActivationKind::prelu});
    top_ = nn::Mlp<float>(arena_, "mlp",
                          {.in = 5 * kD, .layers = {200, 80, 1}, .activation = nn::ActivationKind::prelu,
                           .activate_last = false});
    opt_ = std::make_unique<train::Adam>(train::AdamOptions{.lr = 1e-3});
    loss_fn_ = train::MultiTaskLoss<float>({{"ctr", train::LossKind::bce_with_logits, 1.0}});
    Rng rng(seed);
    double valid = 0;
    for (int i = 0; i < kNumBatches; ++i) {
      Data d;
      d.user.resize(static_cast<std::size_t>(B_));
      d.cand_item.resize(static_cast<std::size_t>(B_));
      d.cand_cat.resize(static_cast<std::size_t>(B_));
      d.lengths.resize(static_cast<std::size_t>(B_));
      d.offsets.assign(1, 0);
      for (Index b = 0; b < B_; ++b) {
        d.user[b] = 1 + static_cast<Index>(rng.below(kUsers - 1));
        d.cand_item[b] = 1 + static_cast<Index>(rng.below(kItems - 1));
        d.cand_cat[b] = 1 + static_cast<Index>(rng.below(kCats - 1));
        const Index len = 1 + static_cast<Index>(rng.below(static_cast<std::uint64_t>(L_)));
        d.lengths[b] = len;
        valid += double(len);
        // One bag per padded position: a bag of one id at valid positions, an empty bag (zeros) at padding.
        for (Index t = 0; t < L_; ++t) {
          if (t < len) {
            d.seq_item.push_back(1 + static_cast<Index>(rng.below(kItems - 1)));
            d.seq_cat.push_back(1 + static_cast<Index>(rng.below(kCats - 1)));
          }
          d.offsets.push_back(static_cast<Index>(d.seq_item.size()));
        }
      }
      d.labels = Tensor(Shape{B_, 1});
      for (float& v : d.labels) v = rng.uniform() < 0.3 ? 1.0f : 0.0f;
      data_.push_back(std::move(d));
    }
    unit_.resize(static_cast<std::size_t>(B_ + 1));
    for (Index b = 0; b <= B_; ++b) unit_[b] = b;
    flops_ = din_flops(valid / kNumBatches, double(B_));
  }

  void infer() override {
    cur_ = &data_[static_cast<std::size_t>(cursor_++ % kNumBatches)];
    const int slices = num_threads() > 1 ? models::row_slice_count(B_, num_threads(), kMinSliceRows) : 1;
    if (slices == 1) {
      out_ = forward(*cur_, Context::serving(weights_));
      return;
    }
    if (static_cast<int>(slices_.size()) < slices) slices_.resize(static_cast<std::size_t>(slices));
    Mat out = ensure(out_all_, B_, 1);
    models::for_each_row_slice(B_, slices, [&](int s, Index begin, Index end) {
      ConstMat y = forward_rows(*cur_, begin, end, slices_[static_cast<std::size_t>(s)], Context::serving(weights_));
      copy(y, out.row_block(begin, end - begin));
    });
    out_ = out;
  }

  void train_step() override {
    cur_ = &data_[static_cast<std::size_t>(cursor_++ % kNumBatches)];
    arena_.zero_grad();
    out_ = forward(*cur_, Context::train(rng_));
    Mat g = ensure(grad_, B_, 1);
    const auto r = loss_fn_.compute(out_, cur_->labels.matrix(), ConstMat{}, g);
    loss_ = r.total;
    backward(g);
    opt_->step(arena_);
  }
  void set_serving_weights(ServingWeights w) override {
    if (w == ServingWeights::bf16)
      require(kernels::bf16_available(), "bench_models: bf16 serving weights need AVX512_BF16 (or MTRANK_ISA caps below avx512)");
    weights_ = w;
  }

  double forward_flops_per_batch() const override { return flops_; }
  Index batch_size() const override { return B_; }
  double checksum() const override { return out_.empty() ? loss_ : double(out_(0, 0)); }
  ConstMat last_output() const override { return out_; }

 private:
  struct Data {
    std::vector<Index> user, cand_item, cand_cat, seq_item, seq_cat, offsets;
    std::vector<std::int64_t> lengths;
    Tensor labels;
  };

  void lookup(const Parameter<float>& table, Index bags, const Index* ids, const Index* offsets, float* out,
              Index ld) const {
    kernels::embedding_bag_kernels().f32_embedding_bag(bags, kD, table.value, ids, offsets, nullptr,
                                                      kernels::PoolingMode::sum, out, ld);
  }
  void scatter(Parameter<float>& table, Index bags, const float* dout, Index ld, const Index* ids,
               const Index* offsets) {
    kernels::embedding_bag_backward_sparse<float>(bags, kD, dout, ld, ids, offsets, nullptr, kernels::PoolingMode::sum,
                                                  table.sparse_grad, scratch_);
  }

  /// Per-thread state of batch-parallel inference (one per row slice).
  struct SliceState {
    Tensor x, keys;
    blocks::DinAttention<float>::Workspace att_ws;
    nn::Mlp<float>::Workspace top_ws;
  };
  static constexpr Index kMinSliceRows = 64;

  /// forward() on the samples [begin, end) with the slice's own workspaces (inference only).
  ConstMat forward_rows(const Data& d, Index begin, Index end, SliceState& st, const Context& ctx) const {
    const Index n = end - begin;
    Mat x = ensure(st.x, n, 5 * kD);
    Mat q = x.col_block(3 * kD, 2 * kD);
    Mat keys = ensure(st.keys, n * L_, 2 * kD);
    lookup(*user_, n, d.user.data() + begin, unit_.data(), x.data, x.stride);
    lookup(*item_, n, d.cand_item.data() + begin, unit_.data(), q.data, q.stride);
    lookup(*cat_, n, d.cand_cat.data() + begin, unit_.data(), q.data + kD, q.stride);
    // Offsets index the whole batch's ids (absolute positions), so the slice passes its part of them.
    lookup(*item_, n * L_, d.seq_item.data(), d.offsets.data() + begin * L_, keys.data, keys.stride);
    lookup(*cat_, n * L_, d.seq_cat.data(), d.offsets.data() + begin * L_, keys.data + kD, keys.stride);
    const nn::Lengths lengths = nn::Lengths(d.lengths).subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(n));
    ConstMat pooled = att_.forward(ConstMat(q), ConstMat(keys), lengths, st.att_ws, ctx);
    copy(pooled, x.col_block(kD, 2 * kD));
    return top_.forward(ConstMat(x), st.top_ws, ctx);
  }

  ConstMat forward(const Data& d, const Context& ctx) {
    Mat x = ensure(x_, B_, 5 * kD);     // [user | pooled | candidate]
    Mat q = x.col_block(3 * kD, 2 * kD);  // the candidate block is the attention query
    Mat keys = ensure(keys_, B_ * L_, 2 * kD);
    lookup(*user_, B_, d.user.data(), unit_.data(), x.data, x.stride);
    lookup(*item_, B_, d.cand_item.data(), unit_.data(), q.data, q.stride);
    lookup(*cat_, B_, d.cand_cat.data(), unit_.data(), q.data + kD, q.stride);
    lookup(*item_, B_ * L_, d.seq_item.data(), d.offsets.data(), keys.data, keys.stride);
    lookup(*cat_, B_ * L_, d.seq_cat.data(), d.offsets.data(), keys.data + kD, keys.stride);
    ConstMat pooled = att_.forward(ConstMat(q), ConstMat(keys), d.lengths, att_ws_, ctx);
    copy(pooled, x.col_block(kD, 2 * kD));
    return top_.forward(ConstMat(x), top_ws_, ctx);
  }

  void backward(ConstMat dy) {
    const Data& d = *cur_;
    ConstMat dx = top_.backward(dy, top_ws_, true);
    auto g = att_.backward(dx.col_block(kD, 2 * kD), att_ws_, true);
    Mat dq = ensure(dq_, B_, 2 * kD);
    copy(g.query, dq);
    add_into(dx.col_block(3 * kD, 2 * kD), dq);
    scatter(*user_, B_, dx.data, dx.stride, d.user.data(), unit_.data());
    scatter(*item_, B_, dq.data, dq.stride, d.cand_item.data(), unit_.data());
    scatter(*cat_, B_, dq.data + kD, dq.stride, d.cand_cat.data(), unit_.data());
    scatter(*item_, B_ * L_, g.keys.data, g.keys.stride, d.seq_item.data(), d.offsets.data());
    scatter(*cat_, B_ * L_, g.keys.data + kD, g.keys.stride, d.seq_cat.data(), d.offsets.data());
  }

  static void add_into(ConstMat src, Mat dst) {
    for (Index r = 0; r < src.rows; ++r) {
      const float* s = src.row(r);
      float* o = dst.row(r);
      for (Index c = 0; c < src.cols; ++c) o[c] += s[c];
    }
  }

  Index L_, B_;
  ParameterArena arena_;
  Parameter<float>*user_ = nullptr, *item_ = nullptr, *cat_ = nullptr;
  blocks::DinAttention<float> att_;
  nn::Mlp<float> top_;
  std::unique_ptr<train::Optimizer> opt_;
  train::MultiTaskLoss<float> loss_fn_;
  std::vector<Data> data_;
  std::vector<Index> unit_;
  std::size_t cursor_ = 0;
  const Data* cur_ = nullptr;
  blocks::DinAttention<float>::Workspace att_ws_;
  nn::Mlp<float>::Workspace top_ws_;
  Tensor x_, keys_, grad_, dq_, out_all_;
  std::vector<SliceState> slices_;
  std::vector<float*> scratch_;
  Rng rng_{3};
  ServingWeights weights_ = ServingWeights::f32;  // the serving plan of infer()
  ConstMat out_;
  double loss_ = 0, flops_ = 0;
};

}  // namespace detail

inline std::unique_ptr<ModelCase> make_case(const std::string& config, Index batch, std::uint64_t seed) {
  require(batch > 0, "bench_models: batch must be > 0, got ", batch);
  if (config == "mmoe" || config == "ple" || config == "mmoe_full")
    return std::make_unique<detail::BuiltCase>(config, batch, seed);
  if (config == "din_L50") return std::make_unique<detail::DinCase>(50, batch, seed);
  if (config == "din_L200") return std::make_unique<detail::DinCase>(200, batch, seed);
  std::string list;
  for (auto& c : model_configs()) list += (list.empty() ? "" : ", ") + c;
  fail("bench_models: unknown configuration '", config, "' (expected one of: ", list, ")");
}

}  // namespace mtrank::bench
