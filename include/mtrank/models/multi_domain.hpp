// The seed's multi-domain model: an SNR backbone with the slot-gate (EPNet / PPNet) and the
// embedding transform layer, K targets in S scenes = K*S towers. See docs/models.md.
//
//   x_emb = FeatureEmbedder(batch)            = [E (one slot per sparse / sequence field); rest]
//   s     = scene_embedding[batch.scene]                                   [B, scene_dim]
//   E'    = transform ? [A_{f,s} e_f + c_{f,s}]_f : E                      (embedding transform)
//   O     = delta (.) E',  delta = GateNU([s; domain fields; sg(E')])       (EPNet, slot-wise)
//   z     = [wiring.features ? O : E'; rest]
//   SNR stage-0 sub-network j: u_j = Mlp_j(z) (.) (wiring.experts ? GateNU_j([s; sg(O)]) : 1)
//   reps_k = SNR(z)_k
//   tower (s, k): h_{l+1} = act(W_l h_l + b_l) (.) (wiring.towers ? delta_kl : 1), logit = w h + b,
//                 delta_kl = GateNU_kl([prior embeddings; sg(O)])          (PPNet)
//   out[b, k] = tower(scene[b], k)(reps_k[b])
// A sample only runs (and only sends gradient into) the towers of its scene.
//
// Parameter names: embeddings.<field>.weight, scene_embedding.weight [S, scene_dim],
// transform.<slot>.weight [S, out, in] / .bias [S, out], epnet.gate.layers.{0,1}.*,
// subnets.{stage}.{j}.layers.* (+ subnets.0.{j}.gate.layers.* with expert gating),
// routes.{r}.log_alpha, routes.{r}.transforms.{j}.{i}.weight (Trans),
// ppnet.gates.{k}.{l}.layers.*, towers.{s}.{k}.layers.{l}.weight/bias (+ acts.{l}.* for
// PReLU/Dice).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "mtrank/blocks/embedding_transform.hpp"
#include "mtrank/blocks/slot_gate.hpp"
#include "mtrank/blocks/snr.hpp"
#include "mtrank/models/feature_embedder.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/models/multitask_net.hpp"
#include "mtrank/nn/activation.hpp"
#include "mtrank/nn/mlp.hpp"

namespace mtrank::models {

/// An Mlp expert whose output is scaled by a Gate NU over extra input columns: the input is
/// [main (in - gate_in columns); gate context (gate_in columns)], the output
/// Mlp(main) (.) GateNU(context). gate_in = 0 makes it a plain Mlp. The gradient into the
/// context columns is returned (the caller drops the stop-gradient part).
struct GatedExpertOptions {
  Index in = 0;  // main + gate_in
  nn::MlpOptions mlp;
  Index gate_in = 0;
  Index gate_hidden = 0;
  double gamma = 2.0;
};

template <class T = float>
class GatedExpert {
 public:
  using Scalar = T;
  using Options = GatedExpertOptions;
  struct Workspace {
    typename nn::Mlp<T>::Workspace mlp;
    typename blocks::GateNU<T>::Workspace gate;
    TensorT<T> y, dh, ddelta, dx;
    MatrixView<const T> h, delta;
  };
  GatedExpert() = default;
  GatedExpert(ParameterArenaT<T>& arena, std::string_view prefix, Options opt);
  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const;
  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const;
  Index in_features() const { return opt_.in; }
  Index out_features() const { return mlp_.out_features(); }

 private:
  Options opt_;
  nn::Mlp<T> mlp_;
  blocks::GateNU<T> gate_;
};

struct SlotGateWiring {
  bool features = true;  // the gated embeddings O feed the backbone (else E')
  bool experts = true;   // stage-0 sub-network outputs scaled by GateNU_j([scene; sg(O)])
  bool towers = true;    // PPNet: tower hidden layers scaled by GateNU_kl([priors; sg(O)])
};

struct MultiDomainOptions {
  Index scene_dim = 8;
  // Embedding transform layer (per slot, per scene).
  bool transform = true;
  Index transform_out = 0;  // 0: same width as the field's embedding
  bool transform_bias = true;
  // Slot-gate (EPNet) and its wiring.
  SlotGateWiring wiring;
  std::vector<std::string> domain_fields;  // extra domain-side sparse fields for EPNet (with scene)
  Index epnet_hidden = 0;
  double epnet_gamma = 2.0;
  bool epnet_unit_wise = false;
  Index expert_gate_hidden = 0;
  double expert_gate_gamma = 2.0;
  // PPNet.
  std::vector<std::string> prior_fields;  // empty: user_id, item_id, author (those present)
  Index ppnet_hidden = 0;
  double ppnet_gamma = 2.0;
  // Backbone and towers.
  blocks::SnrKind snr_kind = blocks::SnrKind::trans;
  blocks::SnrOptions<GatedExpertOptions> snr;  // in, num_tasks and stage-0 gate_in are set by the net
  TowerOptions tower{.hidden = {16}};
};

template <class T = float>
class MultiDomainNet {
 public:
  using Scalar = T;
  using TransBackbone = blocks::SnrBackbone<GatedExpert<T>, blocks::SnrKind::trans>;
  using AverBackbone = blocks::SnrBackbone<GatedExpert<T>, blocks::SnrKind::aver>;
  struct TowerWork {
    TensorT<T> in;  // gathered rows of reps_k
    std::vector<typename nn::Linear<T>::Workspace> lin;
    std::vector<typename nn::Activation<T>::Workspace> act;
    std::vector<TensorT<T>> delta, gated;  // gathered deltas and gated outputs per hidden layer
    TensorT<T> dy, dd;
  };
  struct Workspace {
    typename FeatureEmbedder<T>::Workspace emb;
    std::vector<Index> scene;
    std::vector<std::vector<Index>> scene_rows;  // [s] -> batch rows
    TensorT<T> s_emb, emb_e, emb_t, z, snr_in, domain, prior, d_emb_x, d_s, d_e;
    std::vector<typename blocks::EmbeddingTransform<T>::Workspace> transforms;
    std::vector<TensorT<T>> tr_in, tr_dy;
    typename blocks::EpNet<T>::Workspace epnet;
    MatrixView<const T> O;
    typename TransBackbone::Workspace trans;
    typename AverBackbone::Workspace aver;
    typename blocks::PpNet<T>::Workspace ppnet;
    std::vector<TowerWork> towers;  // [s * K + k]
    std::vector<std::vector<TensorT<T>>> d_delta;                // [k][l] full batch
    std::vector<std::vector<MatrixView<const T>>> d_delta_views;
    std::vector<TensorT<T>> d_reps;
    std::vector<MatrixView<const T>> d_reps_views;
    TensorT<T> out;
    // Gradient checks: finite differences do not know stop_gradient. `record` keeps the values
    // entering every stop_gradient (E' for EPNet's gate, O for the expert / PPNet gates);
    // `replay` reuses them, so the checker differentiates the surrogate in which sg(.) is constant.
    enum class StopGradient { normal, record, replay } stop_gradient = StopGradient::normal;
    TensorT<T> sg_E, sg_O, O_live;
  };

  MultiDomainNet(ParameterArenaT<T>& arena, const data::FeatureSchema& schema, FeatureEmbedderOptions emb,
                 MultiDomainOptions opt);
  MultiDomainNet(MultiDomainNet&&) = default;

  /// Outputs [B, K]: for each row, the K outputs of its scene's towers.
  MatrixView<const T> forward(const data::Batch& batch, Workspace& ws, const Context& ctx = {}) const;
  /// d_out [B, K]; accumulates every parameter gradient.
  void backward(MatrixView<const T> d_out, Workspace& ws) const;
  double penalty(double weight) const;

  Index num_tasks() const { return K_; }
  Index num_scenes() const { return S_; }
  const FeatureEmbedder<T>& embedder() const { return embedder_; }
  const MultiDomainOptions& options() const { return opt_; }
  /// Width of the backbone input z and of the slot block E'.
  Index backbone_in() const { return z_width_; }
  /// Tests: fixed hard-concrete noise for training-mode forward (see SnrBackbone::Workspace).
  static std::vector<TensorT<T>>& fixed_noise(Workspace& ws, const MultiDomainOptions& o) {
    return o.snr_kind == blocks::SnrKind::trans ? ws.trans.fixed_noise : ws.aver.fixed_noise;
  }

 private:
  struct Tower {
    std::vector<nn::Linear<T>> lin;  // hidden layers + the output layer
    std::vector<nn::Activation<T>> act;
  };
  const std::vector<MatrixView<const T>>& backbone_forward(MatrixView<const T> x, Workspace& ws, const Context& ctx) const;
  MatrixView<const T> backbone_backward(const std::vector<MatrixView<const T>>& d, Workspace& ws) const;

  MultiDomainOptions opt_;
  FeatureEmbedder<T> embedder_;
  Index K_ = 0, S_ = 0;
  Parameter<T>* scene_table_ = nullptr;
  std::vector<Index> slot_off_, slot_in_, slot_out_;  // per slot: column in x_emb, width in, width out
  Index emb_width_ = 0, slot_width_ = 0, rest_width_ = 0, z_width_ = 0, gate_ctx_ = 0;
  std::vector<Index> domain_off_, domain_dim_, prior_off_, prior_dim_;
  Index domain_extra_ = 0, prior_width_ = 0;
  std::vector<blocks::EmbeddingTransform<T>> transforms_;
  bool has_epnet_ = false;
  blocks::EpNet<T> epnet_;
  std::unique_ptr<TransBackbone> trans_;
  std::unique_ptr<AverBackbone> aver_;
  blocks::PpNet<T> ppnet_;
  std::vector<Tower> towers_;  // [s * K + k]
};

/// The multi-domain model behind the run-time Model interface (type "multi_domain").
class MultiDomainModel final : public Model {
 public:
  struct Work final : Model::Workspace {
    MultiDomainNet<float>::Workspace net;
  };
  MultiDomainModel(nlohmann::json config, data::FeatureSchema schema, std::uint64_t seed, FeatureEmbedderOptions emb,
                   MultiDomainOptions opt)
      : Model(std::move(config), std::move(schema), seed), net_(arena_, schema_, emb, std::move(opt)) {}
  std::unique_ptr<Model::Workspace> make_workspace() const override { return std::make_unique<Work>(); }
  ConstMat forward(const data::Batch& batch, Model::Workspace& ws, const Context& ctx) const override {
    return net_.forward(batch, static_cast<Work&>(ws).net, ctx);
  }
  void backward(ConstMat d_out, Model::Workspace& ws) const override { net_.backward(d_out, static_cast<Work&>(ws).net); }
  double penalty(double weight) const override { return net_.penalty(weight); }
  const MultiDomainNet<float>& net() const { return net_; }

 private:
  MultiDomainNet<float> net_;
};

/// Parses the multi_domain keys of the model config `m` (path `path`) into options; `tower` is
/// the already-parsed common tower section. Errors name the field.
MultiDomainOptions parse_multi_domain(const nlohmann::json& m, const std::string& path,
                                      const data::FeatureSchema& schema, const TowerOptions& tower);
/// Reads "stages", "task_subnet" and "code" of an SNR section for K tasks (log_alpha_mean
/// defaults to 2: connections start open).
void parse_snr_options(const nlohmann::json& m, const std::string& path, Index K,
                       blocks::SnrOptions<GatedExpertOptions>& snr);
/// The model keys parse_multi_domain reads (for build_model's unknown-key check).
const std::vector<const char*>& multi_domain_keys();

extern template class GatedExpert<float>;
extern template class GatedExpert<double>;
extern template class MultiDomainNet<float>;
extern template class MultiDomainNet<double>;

}  // namespace mtrank::models
