// Serving: an immutable, validated model shared by many threads, each scoring with its own
// Session (the per-thread workspace), plus hot swapping of model versions.
//
//   auto p = serve::Predictor::from_checkpoint("model.safetensors");   // validates everything
//   serve::Predictor::Session s;                                          // one per thread
//   serve::Scores r = p->score(request, s);   // r.probs [N, K], r.fused [N]
//
// Request scoring (one user, N candidates). The schema's sparse and dense fields are split into
// user-side fields (given once per request: sides "user" and "context") and candidate fields
// (given per candidate: side "item") by the schema's field sides, or by the "serving" section's
// candidate_fields, which must agree with every declared side (parse_serving below):
//   {"fusion": {...}, "max_candidates": 1000, "weights": "int8"}
// Sequence fields are always user-side; the request's scene and behaviour times reach the model. For a model with a feature embedder (every model
// build_model makes), the user-side embedding lookups, sequence pooling and dense values are
// computed ONCE per request into one row and broadcast to the N candidate rows; only the
// candidate fields are looked up per candidate, then the dense network runs on the N rows. The
// result is bit-identical to score(batch) on the expanded batch (same network input, same GEMM
// shapes). The first Linear layer is not split into W_u x_u + W_c x_c: that would need a hook in
// every backbone (docs/serving.md).
//
// Fusion: the fused score per candidate is Σ_k w_k p_k ("weighted_sum") or Π_k (α_k + p_k)^β_k
// ("product"), with per-task constants given by task name.
//
// Steady state: once a Session has seen the largest batch/request size, score() performs no
// heap allocation (tests/serve checks this with a counting operator new). Outputs are
// deterministic for a fixed intra-op thread count (mtrank::set_num_threads, default 1).
//
// With num_threads() > 1, score(batch) on a batch of at least 128 rows is batch-parallel
// (models::ParallelInference: row slices on their own threads, created in the Session on first
// use). Request scoring is not split (it runs serve_embedded on one pre-embedded matrix).
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/data/batch.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/models/parallel_inference.hpp"

namespace mtrank::serve {

struct FusionOptions {
  enum class Kind { weighted_sum, product };
  Kind kind = Kind::weighted_sum;
  std::vector<double> weights;      // [K] weighted_sum
  std::vector<double> alpha, beta;  // [K] product

  /// Σ w_k p_k or Π (α_k + p_k)^β_k for one candidate's K predictions.
  double fuse(const float* p) const;
};

/// {"type": "weighted_sum", "weights": {"<task>": w, ...}} (absent tasks: 0; no "weights": all 1)
/// or {"type": "product", "alpha": {"<task>": a}, "beta": {"<task>": b}} (absent: α 0, β 0 = factor 1).
/// Errors name the JSON path ("fusion.weights.clik: unknown task (expected one of: click, ...)").
FusionOptions parse_fusion(const nlohmann::json& j, const data::FeatureSchema& schema,
                           const std::string& path = "serving.fusion");

/// How a request's fields map onto the schema: user- and context-side fields once per request,
/// item fields once per candidate, sequences (with their behaviour times) once per request.
struct RequestLayout {
  std::vector<Index> user_sparse, cand_sparse;  // schema sparse field indices
  std::vector<Index> user_dense, cand_dense;    // schema dense field indices
  models::FieldSelection user_fields, cand_fields;

  /// Candidate fields by name (sparse or dense); every other sparse/dense field is user-side.
  static RequestLayout make(const data::FeatureSchema& schema, const std::vector<std::string>& candidate_fields,
                            const std::string& path = "serving.candidate_fields");
  /// From the schema's sides (item = candidate field); requires schema.sides_declared().
  static RequestLayout from_sides(const data::FeatureSchema& schema);
};

/// One user with N candidates, values in RequestLayout order. Reuse one Request per thread:
/// clear() keeps the capacity. Build one by field name with RequestBuilder (request_builder.hpp).
struct Request {
  std::vector<std::int64_t> user_sparse;             // [layout.user_sparse.size()] raw ids
  std::vector<float> user_dense;                     // [layout.user_dense.size()]
  std::vector<std::vector<std::int64_t>> sequences;  // [schema sequences] raw ids, oldest first
  /// [schema sequences] (or empty: no times at all): per sequence, empty (no times; models that
  /// embed time gaps then use the recency rank, as in training without times) or one gap per id:
  /// the time from the behaviour to the request, finite and >= 0, in the unit of the training data.
  std::vector<std::vector<float>> sequence_times;
  std::int32_t scene = 0;                            // the request's scene, in [0, schema.num_scenes)
  Index num_candidates = 0;
  std::vector<std::int64_t> cand_sparse;  // [N, layout.cand_sparse.size()] row-major
  std::vector<float> cand_dense;          // [N, layout.cand_dense.size()]
  /// [N] per-candidate scenes (a model scoring candidates for several scenes), or empty: `scene`.
  std::vector<std::int32_t> cand_scene;
  void clear();
};

/// The serving section: layout, fusion, limits, weight format.
struct ServingConfig {
  RequestLayout layout;
  /// Empty when request scoring is possible; otherwise why the request layout cannot be derived
  /// (naming the fields). Batch scoring works either way; request scoring and the ranking server
  /// refuse such a model.
  std::string layout_error;
  std::vector<std::string> candidate_fields;
  FusionOptions fusion;
  Index max_candidates = 10000;
  Index max_sequence_length = 10000;  // ids per sequence field in a request (longer: rejected)
  // |dense value| in a request (larger: rejected). Finite values like 3e38 otherwise saturate the
  // network into confident 0/1 scores; features are normalised far below this in practice.
  double max_abs_dense = 1e9;
  ServingWeights weights = ServingWeights::f32;  // "weights": the packed-weight format of this model
};

/// Parses {"candidate_fields": [...], "fusion": {...}, "max_candidates": N, "max_sequence_length": N,
/// "max_abs_dense": X, "weights": "f32" | "bf16" | "int8"}. The request layout comes from the schema's field sides;
/// candidate_fields, when given, must agree with every declared side (fields without a side are
/// user-side unless listed). With neither, layout_error says which fields lack a side.
ServingConfig parse_serving(const nlohmann::json& j, const data::FeatureSchema& schema, const std::string& path = "serving");

struct PredictorOptions {
  /// Overrides the model config's "serving" section when not null.
  nlohmann::json serving = nullptr;
  /// Reject models with NaN/Inf parameters (a scan of every tensor at load).
  bool check_finite = true;
  /// Overrides the serving section's "weights" when set (e.g. a command-line --weight-format).
  std::optional<ServingWeights> weights;
};

/// Views into the caller's Session, valid until its next use.
struct Scores {
  ConstMat probs;               // [B, K] probabilities (binary tasks) or values (regression)
  std::span<const float> fused; // [B]
};

class Predictor {
 public:
  /// Per-thread scoring state. Binds itself to the predictor that uses it (re-binds, with
  /// allocation, when handed to a different predictor, e.g. after a hot swap).
  class Session {
   public:
    Session() = default;
    Session(Session&&) noexcept = default;
    Session& operator=(Session&&) noexcept = default;

   private:
    friend class Predictor;
    std::uint64_t owner_ = 0;
    std::unique_ptr<models::Model::Workspace> ws_;
    std::unique_ptr<models::ParallelInference> parallel_;  // score(batch) with num_threads() > 1
    models::FeatureEmbedder<float>::Workspace emb_;
    data::Batch user_, cand_, expanded_;
    Tensor xu_, x_, probs_, chunked_probs_;
    std::vector<float> fused_, chunked_fused_;
  };

  /// Takes a built model (weights loaded) and validates it: serving section, finite parameters,
  /// and one warm-up forward pass on a synthetic row.
  Predictor(std::unique_ptr<models::Model> model, PredictorOptions options = {});
  Predictor(const Predictor&) = delete;
  Predictor& operator=(const Predictor&) = delete;

  /// io::read_checkpoint_metadata -> models::build_model -> parameter tensors (optimiser state
  /// and trainer-only tensors such as "uwl.*" are not read).
  static std::shared_ptr<const Predictor> from_checkpoint(const std::filesystem::path& path, PredictorOptions options = {});
  /// A JSON config file + a safetensors weights file (strict: every parameter, nothing else
  /// except "__optim__."/"uwl." tensors).
  static std::shared_ptr<const Predictor> from_files(const std::filesystem::path& config_json,
                                                     const std::filesystem::path& weights, PredictorOptions options = {});

  /// Per-task predictions for a batch (labels ignored).
  Scores score(const data::Batch& batch, Session& session) const;
  /// Per-task predictions for one user's candidates; user-side work is done once (see top).
  Scores score(const Request& request, Session& session) const;
  /// Same with a thread-local Session.
  Scores score(const data::Batch& batch) const;
  Scores score(const Request& request) const;

  /// The batch a request stands for (user fields repeated per candidate): the reference for score(request).
  void expand(const Request& request, data::Batch& out) const;
  /// A model without a feature embedder scores a request on expanded rows, each with its own copy
  /// of the user's sequences; it does so in chunks of at most this many bytes of copies.
  static constexpr std::size_t kExpandBudgetBytes = std::size_t(16) << 20;
  /// Candidates per chunk for `request` (>= 1; all of them when the copies fit the budget).
  static Index expand_chunk_rows(const Request& request);
  /// Throws mtrank::Error naming the offending part when the request does not fit the layout
  /// (counts, scenes, sequence lengths, times) or the model has no request layout.
  void check(const Request& request) const;
  /// A JSON description for clients and operators: model type, tasks, scenes, user-side and
  /// candidate-side fields with their kinds, sequences (and whether times are read), fusion,
  /// weight format, limits (the ranking server's GET /metadata).
  nlohmann::json metadata() const;

  const models::Model& model() const { return *model_; }
  const data::FeatureSchema& schema() const { return model_->schema(); }
  const ServingConfig& serving() const { return serving_; }
  Index num_tasks() const { return model_->num_tasks(); }
  /// Unique per Predictor object in this process (Sessions bind to it).
  std::uint64_t id() const { return id_; }

 private:
  void bind(Session& s) const;
  void expand_rows(const Request& r, Index begin, Index end, data::Batch& out) const;
  Scores finish(ConstMat y, Session& s) const;

  std::unique_ptr<models::Model> model_;
  ServingConfig serving_;
  std::uint64_t id_;
};

/// The currently served model version, swappable while other threads score with it. A reader
/// takes a shared_ptr (load) and scores with that version to the end of its request, so every
/// result comes from exactly one version; the old version is freed when its last reader is done.
///
/// Implemented with the std::atomic_load/atomic_store free functions for shared_ptr (a lock
/// from libstdc++'s mutex pool) rather than std::atomic<std::shared_ptr>: libstdc++ 12's
/// atomic<shared_ptr>::load releases its internal lock bit with memory_order_relaxed, so a
/// concurrent store is formally a data race and ThreadSanitizer reports it (seen in
/// tests/serve/test_hot_swap.cpp under MTRANK_TSAN). The cost is one uncontended lock per load.
class ModelHandle {
 public:
  ModelHandle() = default;
  explicit ModelHandle(std::shared_ptr<const Predictor> p) : p_(std::move(p)) {}
  ModelHandle(const ModelHandle&) = delete;
  ModelHandle& operator=(const ModelHandle&) = delete;

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"  // deprecated in C++20 in favour of atomic<shared_ptr>
  std::shared_ptr<const Predictor> load() const { return std::atomic_load_explicit(&p_, std::memory_order_acquire); }
  void store(std::shared_ptr<const Predictor> p) { std::atomic_store_explicit(&p_, std::move(p), std::memory_order_release); }
  /// Installs p and returns the previous version.
  std::shared_ptr<const Predictor> exchange(std::shared_ptr<const Predictor> p) {
    return std::atomic_exchange_explicit(&p_, std::move(p), std::memory_order_acq_rel);
  }
#pragma GCC diagnostic pop

 private:
  std::shared_ptr<const Predictor> p_;
};

}  // namespace mtrank::serve
