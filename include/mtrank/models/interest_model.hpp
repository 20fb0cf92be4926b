// Interest / sequence models: DIN and multi-DIN rankers, DMT (and its simplified and GRU
// variants) and the SIM ranker, as one composition (docs/sequence-models.md):
//
//   x   = FeatureEmbedder(batch)          sparse embeddings, pooled non-interest sequences, dense
//   q_u = [emb(query fields of unit u)]   the candidate, read from x's columns   [B, d_u]
//   K_u = [emb(f_1); emb(f_2); ...]       behaviours of unit u's aligned sequence fields, padded
//                                         [B*L, d_u], the most recent max_len items kept
//   p_u = unit_u(q_u, K_u)                din:         DinAttention(q, K)
//                                         transformer: TargetAttention(q, TransformerEncoder(K))  (DMT)
//                                         gru:         TargetAttention(q, Gru(K) states)          (DMT-GRU)
//                                         sim:         ESU(q, GSU(K))  (hard or soft search, then
//                                                      multi-head target attention with time-gap embeddings)
//   h   = [x without the bias-only columns; p_1; ...; p_U]
//   y   = Net(h)                          any multi-task net: SharedBottom / MMoE / PLE / SNR + towers
//   out = y + bias(z)                     optional bias network (DMT) on position-like fields z;
//                                         forward() adds it (training and evaluation), serve() drops it.
//
// Gaps for time embeddings: gap = round(times * time_scale) from the first field's
// SequenceColumn::times (days in the simulator and MovieLens; time_scale 24 = hours); without
// times the gap is the recency rank (0 = most recent behaviour).
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/blocks/din.hpp"
#include "mtrank/blocks/sim.hpp"
#include "mtrank/models/embedded_model.hpp"
#include "mtrank/models/feature_embedder.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/nn/attention.hpp"
#include "mtrank/nn/gru.hpp"
#include "mtrank/nn/mlp.hpp"
#include "mtrank/nn/transformer.hpp"

namespace mtrank::models {

enum class InterestKind { din, transformer, gru, sim };
enum class SearchKind { hard, soft };

const char* interest_kind_name(InterestKind k);

struct InterestUnitOptions {
  std::string name;                 // parameters live under "interest.<name>."
  InterestKind kind = InterestKind::din;
  std::vector<std::string> fields;  // aligned sequence fields; a behaviour = concat of their embeddings
  std::vector<std::string> query;   // candidate sparse fields; their widths sum to the behaviour width
  Index max_len = 0;                // keep the most recent max_len items (0: the first field's schema max_len)
  double time_scale = 24.0;         // gap = round(times * time_scale)
  blocks::DinAttentionOptions din;  // kind din (dim and max_len are set by the unit)
  nn::TransformerEncoderOptions transformer;  // kind transformer (d_model and max_len set by the unit)
  Index heads = 1;                  // target attention heads (transformer, gru)
  // kind sim
  SearchKind search = SearchKind::hard;
  Index top_k = 50;
  std::string category_field;   // hard search: sequence field with each behaviour's category
  std::string candidate_field;  // hard search: sparse field with the candidate's category
  blocks::ExactSearchUnitOptions esu;  // embed_dim is set by the unit
};

struct BiasNetOptions {
  std::vector<std::string> fields;  // sparse and/or dense field names; empty = no bias network
  std::vector<Index> hidden = {16};
  nn::ActivationKind activation = nn::ActivationKind::relu;
  bool per_task = false;   // one bias logit per task instead of one shared by every task
  bool exclusive = true;   // the bias fields are not fed to the main network
  bool enabled() const { return !fields.empty(); }
};

struct InterestModelOptions {
  std::vector<InterestUnitOptions> units;
  BiasNetOptions bias;
};

/// One interest unit: the candidate's embeddings against one (group of aligned) behaviour
/// sequence(s). Reads the embedder's tables; writes their sparse row gradients.
class InterestUnit {
 public:
  struct Workspace {
    Index batch = 0, padded = 0;
    std::vector<std::int64_t> lengths;  // after truncation
    std::vector<Index> start;           // first kept id per sample (index into the column's ids)
    std::vector<std::vector<Index>> rows;  // per field: table row of every padded position (-1 = padding)
    std::vector<std::int64_t> gaps, categories, cand_category, sel_gaps;
    Tensor query, keys, sel_keys, dquery;
    blocks::Selection sel;
    typename blocks::DinAttention<float>::Workspace din;
    typename nn::TransformerEncoder<float>::Workspace enc;
    typename nn::Gru<float>::Workspace gru;
    typename nn::TargetAttention<float>::Workspace target;
    typename blocks::ExactSearchUnit<float>::Workspace esu;
  };

  InterestUnit(ParameterArena& arena, const FeatureEmbedder<float>& embedder, InterestUnitOptions opt);

  /// x: the embedder's output (query columns are read from it) -> [B, out_features()].
  ConstMat forward(const data::Batch& batch, ConstMat x, Workspace& ws, const Context& ctx) const;
  /// dy [B, out_features()]: accumulates block and table gradients, adds the query gradient into dx.
  void backward(ConstMat dy, Workspace& ws, Mat dx) const;

  Index out_features() const { return out_; }
  Index width() const { return d_; }
  const InterestUnitOptions& options() const { return opt_; }
  const blocks::DinAttention<float>& din() const { return din_; }

 private:
  void fill_keys(const Workspace& ws, const std::vector<std::int64_t>* selected, Index rows_out, Mat keys) const;
  void scatter_keys(ConstMat dkeys, const Workspace& ws, const blocks::Selection* sel) const;

  InterestUnitOptions opt_;
  const FeatureEmbedder<float>* emb_ = nullptr;
  std::vector<std::size_t> seq_;           // schema sequence index per field
  std::vector<Index> field_off_, field_dim_;  // column offset / width of each field in a behaviour
  std::vector<std::pair<Index, Index>> query_cols_;  // (offset in x, width)
  int category_seq_ = -1, candidate_sparse_ = -1;
  Index d_ = 0, out_ = 0, max_len_ = 0;
  blocks::DinAttention<float> din_;
  nn::TransformerEncoder<float> enc_;
  nn::Gru<float> gru_;
  nn::TargetAttention<float> target_;
  std::unique_ptr<blocks::GeneralSearchUnit> gsu_;
  blocks::ExactSearchUnit<float> esu_;
};

/// The front end shared by every interest model: units + bias network around an embedder.
class InterestFrontEnd {
 public:
  struct Workspace {
    typename FeatureEmbedder<float>::Workspace emb;
    std::vector<InterestUnit::Workspace> units;
    typename nn::Mlp<float>::Workspace bias;
    Tensor h, dx, bias_in, dbias, dbias_in;
  };
  InterestFrontEnd(ParameterArena& arena, const data::FeatureSchema& schema, FeatureEmbedderOptions emb,
                   const InterestModelOptions& opt);

  /// h [B, main_width()] = [x's main columns; unit outputs].
  ConstMat forward(const data::Batch& batch, Workspace& ws, const Context& ctx) const;
  /// Bias logits [B, 1 or K] from the last forward's embedder output (call after forward()).
  ConstMat bias_forward(Workspace& ws, const Context& ctx) const;
  /// dh [B, main_width()], dbias [B, 1 or K] (empty view when no bias ran) -> every gradient.
  void backward(ConstMat dh, ConstMat dbias, Workspace& ws) const;

  Index main_width() const { return width_; }
  bool has_bias() const { return bias_.has_value(); }
  bool bias_per_task() const { return opt_.bias.per_task; }
  const FeatureEmbedder<float>& embedder() const { return embedder_; }
  const std::vector<InterestUnit>& units() const { return units_; }

 private:
  InterestModelOptions opt_;
  FeatureEmbedder<float> embedder_;
  std::vector<InterestUnit> units_;
  std::vector<std::pair<Index, Index>> main_cols_, bias_cols_;  // (offset in x, width)
  std::vector<Index> unit_off_;
  Index width_ = 0, bias_width_ = 0;
  std::optional<nn::Mlp<float>> bias_;
};

template <class Net>
class InterestModel final : public Model {
 public:
  struct Work final : Model::Workspace {
    InterestFrontEnd::Workspace front;
    typename Net::Workspace net;
    Tensor out;
    bool biased = false;
  };

  InterestModel(nlohmann::json config, data::FeatureSchema schema, std::uint64_t seed, FeatureEmbedderOptions emb,
                const InterestModelOptions& opt, const std::function<Net(ParameterArena&, Index)>& make_net)
      : Model(std::move(config), std::move(schema), seed),
        front_(arena_, schema_, std::move(emb), opt),
        net_(make_net(arena_, front_.main_width())) {
    require(net_.num_tasks() == schema_.num_tasks(), "model: the network has ", net_.num_tasks(),
            " task outputs but the schema lists ", schema_.num_tasks(), " tasks");
  }

  std::unique_ptr<Model::Workspace> make_workspace() const override { return std::make_unique<Work>(); }

  /// Main logits plus the bias logit (when configured), in training and in evaluation.
  ConstMat forward(const data::Batch& batch, Model::Workspace& base, const Context& ctx) const override {
    return run(batch, static_cast<Work&>(base), ctx, true);
  }
  /// Serving: the bias network is dropped (its inputs, e.g. the display position, are unknown).
  ConstMat serve(const data::Batch& batch, Model::Workspace& base) const override {
    return run(batch, static_cast<Work&>(base), serving_context(), false);
  }
  /// Gradients of the last forward() (not of serve()).
  void backward(ConstMat d_out, Model::Workspace& base) const override {
    auto& ws = static_cast<Work&>(base);
    ConstMat dh = net_.backward(d_out, ws.net, true);
    ConstMat dbias;
    if (ws.biased) {
      const Index B = d_out.rows, K = d_out.cols;
      Mat db = ensure(ws.front.dbias, B, front_.bias_per_task() ? K : 1);
      for (Index b = 0; b < B; ++b) {
        if (front_.bias_per_task()) {
          for (Index k = 0; k < K; ++k) db(b, k) = d_out(b, k);
        } else {
          float s = 0;
          for (Index k = 0; k < K; ++k) s += d_out(b, k);
          db(b, 0) = s;
        }
      }
      dbias = db;
    }
    front_.backward(dh, dbias, ws.front);
  }
  double penalty(double weight) const override { return net_.penalty(weight); }

  const Net& net() const { return net_; }
  const InterestFrontEnd& front() const { return front_; }

 private:
  ConstMat run(const data::Batch& batch, Work& ws, const Context& ctx, bool with_bias) const {
    ConstMat h = front_.forward(batch, ws.front, ctx);
    ConstMat y = net_.forward(h, ws.net, ctx);
    ws.biased = with_bias && front_.has_bias();
    if (!ws.biased) return y;
    ConstMat bo = front_.bias_forward(ws.front, ctx);
    Mat out = ensure(ws.out, y.rows, y.cols);
    for (Index b = 0; b < y.rows; ++b)
      for (Index k = 0; k < y.cols; ++k) out(b, k) = y(b, k) + bo(b, bo.cols == 1 ? 0 : k);
    return out;
  }

  InterestFrontEnd front_;
  Net net_;
};

/// Model types built by parse_interest_model: "din", "dmt", "sim".
bool is_interest_type(const std::string& type);
/// The backbone a type uses when "backbone" is absent: din/sim -> shared_bottom, dmt -> mmoe.
std::string default_interest_backbone(const std::string& type);
/// Reads the keys "query", "sequences" and "bias_net" of config.model (path p) for `type`;
/// errors name the JSON path. The schema must be validated.
InterestModelOptions parse_interest_model(const nlohmann::json& m, const std::string& p, const std::string& type,
                                          const data::FeatureSchema& schema);

}  // namespace mtrank::models
