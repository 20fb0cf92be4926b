// The run-time model interface used by trainers, the predictor and the CLI. Typed models
// (compile-time composition such as MultiTaskNet<float, Mmoe<...>>) are wrapped behind it
// when a model is built from a JSON config. The arena lives in this base class, so it is
// constructed before and destroyed after every block holding pointers into it.
#pragma once
#include <memory>
#include <string>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/context.hpp"
#include "mtrank/data/batch.hpp"
#include "mtrank/models/feature_embedder.hpp"

namespace mtrank::models {

namespace detail {
/// While set on the calling thread, every Model constructed makes its arena a gradient replica
/// of this arena (ParameterArena::share_values_from). Set only by make_gradient_replica().
inline const ParameterArena*& replica_value_source() {
  thread_local const ParameterArena* source = nullptr;
  return source;
}
/// While set on the calling thread, every Model constructed expects these parameter shapes
/// (ParameterArena::expect_shapes). Set by ExpectedShapes.
struct ExpectedShapeSet {
  std::unordered_map<std::string, Shape> shapes;
  std::string source;
};
inline const ExpectedShapeSet*& expected_parameter_shapes() {
  thread_local const ExpectedShapeSet* set = nullptr;
  return set;
}
}  // namespace detail

/// A scope in which every model built expects its parameters to have the given shapes (a
/// checkpoint's header): build_model then fails at the first parameter missing from them or of
/// another shape, before allocating it, instead of after building the whole model.
class ExpectedShapes {
 public:
  ExpectedShapes(std::unordered_map<std::string, Shape> shapes, std::string source)
      : set_{std::move(shapes), std::move(source)}, previous_(detail::expected_parameter_shapes()) {
    detail::expected_parameter_shapes() = &set_;
  }
  ~ExpectedShapes() { detail::expected_parameter_shapes() = previous_; }
  ExpectedShapes(const ExpectedShapes&) = delete;
  ExpectedShapes& operator=(const ExpectedShapes&) = delete;

 private:
  detail::ExpectedShapeSet set_;
  const detail::ExpectedShapeSet* previous_;
};

class Model {
 public:
  /// Per-thread state for forward/backward; create one per thread with make_workspace().
  struct Workspace {
    virtual ~Workspace() = default;
  };

  explicit Model(nlohmann::json config, data::FeatureSchema schema, std::uint64_t seed)
      : config_(std::move(config)), schema_(std::move(schema)), arena_(seed) {
    if (const ParameterArena* source = detail::replica_value_source()) arena_.share_values_from(*source);
    if (const detail::ExpectedShapeSet* e = detail::expected_parameter_shapes()) arena_.expect_shapes(e->shapes, e->source);
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  virtual ~Model() = default;

  virtual std::unique_ptr<Workspace> make_workspace() const = 0;
  /// Outputs [B, K]: a logit per binary task, the prediction per regression task.
  virtual ConstMat forward(const data::Batch& batch, Workspace& ws, const Context& ctx) const = 0;
  /// d_out [B, K] = dLoss/dOutputs; accumulates every parameter gradient into arena().
  virtual void backward(ConstMat d_out, Workspace& ws) const = 0;
  /// Regularisation added to the loss (e.g. SNR's L0 penalty) times weight; accumulates its gradient.
  virtual double penalty(double weight) const { return 0.0; }
  /// Outputs used at serving: training-only terms (bias networks) are dropped. Default: forward
  /// with serving_context() (weights fixed between calls: packed-weight kernels in the model's
  /// serving weight format).
  virtual ConstMat serve(const data::Batch& batch, Workspace& ws) const { return forward(batch, ws, serving_context()); }

  /// The serving plan's weight format (default f32). Set once before serving starts (the
  /// Predictor applies its ServingConfig::weights at construction); two models in one process
  /// may use different formats. Throws when the CPU cannot run the format (bf16 without AVX512_BF16).
  void set_serving_weights(ServingWeights w);
  ServingWeights serving_weights() const { return serving_weights_; }
  Context serving_context() const { return Context::serving(serving_weights_); }

  /// Probabilities for binary tasks (sigmoid of the logit), raw values for regression, into out [B, K].
  void predict(const data::Batch& batch, Workspace& ws, Mat out) const;
  /// The map predict() applies to serve() outputs: y [B, K] -> out [B, K].
  void to_predictions(ConstMat y, Mat out) const;

  /// Serving hooks (serve/predictor.hpp scores one user's candidates with the user-side features
  /// embedded once). feature_embedder(): the embedder the model starts with, or nullptr when it
  /// has none; serve_embedded(x): serve() on an input already embedded by it, x [B, width].
  virtual const FeatureEmbedder<float>* feature_embedder() const { return nullptr; }
  virtual ConstMat serve_embedded(ConstMat x, Workspace& ws) const { fail("model: serve_embedded() is not supported"); }

  ParameterArena& arena() { return arena_; }
  const ParameterArena& arena() const { return arena_; }
  const nlohmann::json& config() const { return config_; }
  const data::FeatureSchema& schema() const { return schema_; }
  Index num_tasks() const { return schema_.num_tasks(); }

 protected:
  nlohmann::json config_;
  data::FeatureSchema schema_;
  ParameterArena arena_;
  ServingWeights serving_weights_ = ServingWeights::f32;
};

/// Builds any model the library knows from a JSON config {"schema": ..., "model": {"type": ...}, "seed": N}.
/// Errors name the JSON path and the expectation.
std::unique_ptr<Model> build_model(const nlohmann::json& config);

/// A gradient replica of `model` for data-parallel training: the same model rebuilt from
/// model.config(), whose trainable parameters share model's values (no copy) while its
/// gradients (dense and sparse rows) and buffers are its own. It must not outlive `model`.
/// Models that build_model() cannot rebuild from their config are rejected with the reason.
std::unique_ptr<Model> make_gradient_replica(const Model& model);

/// Registered model types, for help texts and error messages.
std::vector<std::string> model_types();

}  // namespace mtrank::models
