// build_model(): JSON config -> a typed model behind the Model interface. Every field is read
// with errors that name its JSON path; unknown fields are rejected.
#include <algorithm>
#include <map>

#include "mtrank/blocks/mmoe.hpp"
#include "mtrank/blocks/ple.hpp"
#include "mtrank/blocks/snr.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/kernels/bf16.hpp"
#include "mtrank/models/embedded_model.hpp"
#include "mtrank/models/interest_model.hpp"
#include "mtrank/models/mm_fusion.hpp"
#include "mtrank/models/multi_domain.hpp"
#include "mtrank/models/multitask_net.hpp"
#include "mtrank/models/shared_bottom.hpp"

namespace mtrank::models {

using io::get_optional;
using io::get_required;
using io::json;

void Model::predict(const data::Batch& batch, Workspace& ws, Mat out) const { to_predictions(serve(batch, ws), out); }

void Model::set_serving_weights(ServingWeights w) {
  if (w == ServingWeights::bf16)
    require(kernels::bf16_available(), "serving weights \"bf16\": this CPU lacks AVX512_BF16 (or MTRANK_ISA caps below avx512)");
  serving_weights_ = w;
}

void Model::to_predictions(ConstMat y, Mat out) const {
  require_shape(out, y.rows, y.cols, "Model::predict output");
  for (Index b = 0; b < y.rows; ++b)
    for (Index k = 0; k < y.cols; ++k) {
      const double v = y(b, k);
      out(b, k) = schema_.tasks[k].kind == data::TaskKind::binary ? float(1.0 / (1.0 + std::exp(-v))) : float(v);
    }
}

namespace {

const json& child(const json& j, const char* key, const std::string& path) {
  static const json empty = json::object();
  auto it = j.find(key);
  if (it == j.end()) return empty;
  if (!it->is_object()) fail(path, ".", key, ": expected an object");
  return *it;
}

std::vector<Index> index_list(const json& j, const char* key, const std::string& path, std::vector<Index> fallback) {
  return io::get_positive_list(j, key, path, std::move(fallback));
}

nn::MlpOptions parse_mlp(const json& j, const std::string& path, std::vector<Index> default_layers) {
  io::reject_unknown_keys(j, {"layers", "activation", "dropout", "batch_norm", "activate_last"}, path);
  nn::MlpOptions o;
  o.layers = index_list(j, "layers", path, std::move(default_layers));
  o.activation = nn::parse_activation(get_optional<std::string>(j, "activation", path, "an activation name", "relu"));
  o.dropout = get_optional<double>(j, "dropout", path, "a number in [0, 1)", 0.0);
  if (!(o.dropout >= 0.0 && o.dropout < 1.0)) fail(path, ".dropout: expected a number in [0, 1), got ", o.dropout);
  o.batch_norm = get_optional<bool>(j, "batch_norm", path, "a boolean", false);
  o.activate_last = get_optional<bool>(j, "activate_last", path, "a boolean", true);
  return o;
}

TowerOptions parse_tower(const json& j, const std::string& path) {
  io::reject_unknown_keys(j, {"hidden", "activation", "dropout", "batch_norm"}, path);
  TowerOptions t;
  t.hidden = index_list(j, "hidden", path, {64});
  t.activation = nn::parse_activation(get_optional<std::string>(j, "activation", path, "an activation name", "relu"));
  t.dropout = get_optional<double>(j, "dropout", path, "a number in [0, 1)", 0.0);
  t.batch_norm = get_optional<bool>(j, "batch_norm", path, "a boolean", false);
  return t;
}

blocks::SoftmaxGateOptions parse_gate(const json& j, const std::string& path) {
  io::reject_unknown_keys(j, {"bias", "temperature", "top_k"}, path);
  blocks::SoftmaxGateOptions g;
  g.bias = get_optional<bool>(j, "bias", path, "a boolean", true);
  g.temperature = get_optional<double>(j, "temperature", path, "a positive number", 1.0);
  if (!(g.temperature > 0)) fail(path, ".temperature: expected a positive number, got ", g.temperature);
  g.top_k = get_optional<Index>(j, "top_k", path, "a non-negative integer", 0);
  if (g.top_k < 0) fail(path, ".top_k: expected a non-negative integer, got ", g.top_k);
  return g;
}

struct Common {
  data::FeatureSchema schema;
  std::uint64_t seed = 42;
  FeatureEmbedderOptions emb;
  OutputTransform transform = OutputTransform::none;
  TowerOptions tower;
  Index num_tasks = 0;
  std::shared_ptr<const InterestModelOptions> interest;  // types din / dmt / sim
};

template <class Backbone>
std::unique_ptr<Model> make(const json& config, const Common& c, std::function<Backbone(ParameterArena&, Index)> backbone) {
  using Net = MultiTaskNet<float, Backbone>;
  const TowerOptions tower = c.tower;
  if (c.interest)
    return std::make_unique<InterestModel<Net>>(config, c.schema, c.seed, c.emb, *c.interest, [&](ParameterArena& arena, Index in) {
      return Net(arena, "", backbone(arena, in), tower);
    });
  return std::make_unique<EmbeddedModel<Net>>(
      config, c.schema, c.seed, c.emb,
      [&](ParameterArena& arena, Index in) { return Net(arena, "", backbone(arena, in), tower); }, c.transform);
}

std::unique_ptr<Model> build_shared_bottom(const json& config, const json& m, const Common& c, const std::string& p) {
  const nn::MlpOptions bottom = parse_mlp(child(m, "bottom", p), p + ".bottom", {256, 128});
  return make<SharedBottom<float>>(config, c, [&](ParameterArena& a, Index in) {
    return SharedBottom<float>(a, "", {.in = in, .num_tasks = c.num_tasks, .bottom = bottom});
  });
}

std::unique_ptr<Model> build_mmoe(const json& config, const json& m, const Common& c, const std::string& p) {
  blocks::MmoeOptions<nn::MlpOptions> o;
  o.num_experts = get_optional<Index>(m, "num_experts", p, "a positive integer", 4);
  if (o.num_experts <= 0) fail(p, ".num_experts: expected a positive integer (a gate over zero experts is undefined), got ", o.num_experts);
  o.num_tasks = c.num_tasks;
  o.expert = parse_mlp(child(m, "expert", p), p + ".expert", {256, 128});
  o.gate = parse_gate(child(m, "gate", p), p + ".gate");
  if (o.gate.top_k > o.num_experts) fail(p, ".gate.top_k: ", o.gate.top_k, " > num_experts ", o.num_experts);
  using B = blocks::MmoeBackbone<nn::Mlp<float>>;
  return make<B>(config, c, [o](ParameterArena& a, Index in) mutable {
    o.in = in;
    return B(a, "", o);
  });
}

std::unique_ptr<Model> build_ple(const json& config, const json& m, const Common& c, const std::string& p) {
  blocks::PleOptions<nn::MlpOptions> o;
  o.num_tasks = c.num_tasks;
  o.gate = parse_gate(child(m, "gate", p), p + ".gate");
  auto it = m.find("levels");
  if (it == m.end() || !it->is_array() || it->empty()) fail(p, ".levels: expected a non-empty array of levels");
  for (std::size_t i = 0; i < it->size(); ++i) {
    const std::string lp = p + ".levels[" + std::to_string(i) + "]";
    const json& l = (*it)[i];
    io::reject_unknown_keys(l, {"num_task_experts", "num_shared_experts", "expert", "task_expert", "shared_expert"}, lp);
    blocks::PleLevelSpec<nn::MlpOptions> s;
    s.num_task_experts = get_optional<Index>(l, "num_task_experts", lp, "a positive integer", 1);
    s.num_shared_experts = get_optional<Index>(l, "num_shared_experts", lp, "a non-negative integer", 1);
    if (s.num_task_experts <= 0) fail(lp, ".num_task_experts: expected a positive integer, got ", s.num_task_experts);
    if (s.num_shared_experts < 0) fail(lp, ".num_shared_experts: expected a non-negative integer, got ", s.num_shared_experts);
    const nn::MlpOptions e = parse_mlp(child(l, "expert", lp), lp + ".expert", {128, 64});
    s.task_expert = l.contains("task_expert") ? parse_mlp(child(l, "task_expert", lp), lp + ".task_expert", e.layers) : e;
    s.shared_expert = l.contains("shared_expert") ? parse_mlp(child(l, "shared_expert", lp), lp + ".shared_expert", e.layers) : e;
    o.levels.push_back(s);
  }
  using B = blocks::PleBackbone<nn::Mlp<float>>;
  return make<B>(config, c, [o](ParameterArena& a, Index in) mutable {
    o.in = in;
    return B(a, "", o);
  });
}

template <blocks::SnrKind Kind>
std::unique_ptr<Model> build_snr(const json& config, const json& m, const Common& c, const std::string& p) {
  blocks::SnrOptions<nn::MlpOptions> o;
  o.num_tasks = c.num_tasks;
  auto it = m.find("stages");
  if (it == m.end() || !it->is_array() || it->size() < 2) fail(p, ".stages: expected an array of at least 2 stages");
  for (std::size_t i = 0; i < it->size(); ++i) {
    const std::string sp = p + ".stages[" + std::to_string(i) + "]";
    const json& s = (*it)[i];
    io::reject_unknown_keys(s, {"num_subnets", "subnet", "in"}, sp);
    blocks::SnrStage<nn::MlpOptions> st;
    st.num_subnets = get_required<Index>(s, "num_subnets", sp, "a positive integer");
    if (st.num_subnets <= 0) fail(sp, ".num_subnets: expected a positive integer, got ", st.num_subnets);
    st.subnet = parse_mlp(child(s, "subnet", sp), sp + ".subnet", {64});
    st.in = get_optional<Index>(s, "in", sp, "a non-negative integer", 0);
    o.stages.push_back(st);
  }
  if (auto ts = m.find("task_subnet"); ts != m.end()) {
    if (!ts->is_array()) fail(p, ".task_subnet: expected an array of sub-network indices");
    for (auto& v : *ts) {
      if (!v.is_number_integer() || v.get<Index>() < 0)
        fail(p, ".task_subnet: expected non-negative integers, got ", ts->dump());
      o.task_subnet.push_back(v.get<Index>());
    }
  }
  const json& code = child(m, "code", p);
  io::reject_unknown_keys(code, {"beta", "gamma", "zeta", "log_alpha_mean", "log_alpha_std"}, p + ".code");
  o.code.beta = get_optional<double>(code, "beta", p + ".code", "a number", o.code.beta);
  o.code.gamma = get_optional<double>(code, "gamma", p + ".code", "a number", o.code.gamma);
  o.code.zeta = get_optional<double>(code, "zeta", p + ".code", "a number", o.code.zeta);
  o.code.log_alpha_mean = get_optional<double>(code, "log_alpha_mean", p + ".code", "a number", o.code.log_alpha_mean);
  o.code.log_alpha_std = get_optional<double>(code, "log_alpha_std", p + ".code", "a number", o.code.log_alpha_std);
  using B = blocks::SnrBackbone<nn::Mlp<float>, Kind>;
  return make<B>(config, c, [o](ParameterArena& a, Index in) mutable {
    o.in = in;
    return B(a, "", o);
  });
}

std::unique_ptr<Model> build_multi_domain(const json& config, const json& m, const Common& c, const std::string& p) {
  if (c.transform != OutputTransform::none) fail(p, ".output: multi_domain supports only \"none\"");
  return std::make_unique<MultiDomainModel>(config, c.schema, c.seed, c.emb, parse_multi_domain(m, p, c.schema, c.tower));
}

std::unique_ptr<Model> build_mm(const json& config, const json& m, const Common& c, const std::string& p) {
  if (c.transform != OutputTransform::none) fail(p, ".output: mm supports only \"none\"");
  std::string user_field;
  MmOptions o = parse_mm(m, p, c.schema, c.tower, user_field);
  return std::make_unique<EmbeddedModel<MmNet<float>>>(
      config, c.schema, c.seed, c.emb,
      [o](ParameterArena& a, Index in) mutable {
        o.in = in;
        return MmNet<float>(a, o);
      },
      OutputTransform::none);
}

using Builder = std::unique_ptr<Model> (*)(const json&, const json&, const Common&, const std::string&);
std::unique_ptr<Model> build_interest(const json& config, const json& m, const Common& c, const std::string& p);

const std::map<std::string, Builder>& builders() {
  static const std::map<std::string, Builder> table = {
      {"dnn", build_shared_bottom},           {"shared_bottom", build_shared_bottom},
      {"esmm", build_shared_bottom},          {"mmoe", build_mmoe},
      {"ple", build_ple},                     {"cgc", build_ple},
      {"snr_trans", build_snr<blocks::SnrKind::trans>}, {"snr_aver", build_snr<blocks::SnrKind::aver>},
      {"din", build_interest},                {"dmt", build_interest},
      {"sim", build_interest},
      {"multi_domain", build_multi_domain},   {"mm", build_mm},
  };
  return table;
}

// Interest models (interest_model.hpp): a sequence front end in front of the backbone named by
// "backbone" (default: din/sim shared_bottom, dmt mmoe), which reads its usual keys.
std::unique_ptr<Model> build_interest(const json& config, const json& m, const Common& c, const std::string& p) {
  const std::string type = m.at("type").get<std::string>();
  if (c.transform != OutputTransform::none) fail(p, ".output: ", type, " supports only \"none\"");
  const std::string backbone = get_optional<std::string>(m, "backbone", p, "a backbone type", default_interest_backbone(type));
  static const char* const ok[] = {"shared_bottom", "mmoe", "ple", "cgc", "snr_trans", "snr_aver"};
  if (std::find(std::begin(ok), std::end(ok), backbone) == std::end(ok))
    fail(p, ".backbone: expected one of shared_bottom, mmoe, ple, cgc, snr_trans, snr_aver, got \"", backbone, "\"");
  Common ci = c;
  ci.interest = std::make_shared<const InterestModelOptions>(parse_interest_model(m, p, type, c.schema));
  return builders().at(backbone)(config, m, ci, p);
}

}  // namespace

std::vector<std::string> model_types() {
  std::vector<std::string> v;
  for (auto& [k, _] : builders()) v.push_back(k);
  return v;
}

std::unique_ptr<Model> build_model(const json& config) {
  io::reject_unknown_keys(config, {"name", "schema", "model", "seed", "trainer", "optimizer", "data", "serving"}, "config");
  if (!config.contains("schema")) fail("config.schema: missing (expected the feature schema object)");
  Common c;
  c.schema = config["schema"].get<data::FeatureSchema>();
  c.num_tasks = c.schema.num_tasks();
  c.seed = get_optional<std::uint64_t>(config, "seed", "config", "a non-negative integer", 42);
  const json& m = child(config, "model", "config");
  const std::string p = "config.model";
  const std::string type = get_required<std::string>(m, "type", p, "a model type");
  auto it = builders().find(type);
  if (it == builders().end()) {
    std::string list;
    for (auto& t : model_types()) list += (list.empty() ? "" : ", ") + t;
    fail(p, ".type: unknown model type \"", type, "\" (expected one of: ", list, ")");
  }
  io::reject_unknown_keys(m, {"type", "sequence_pooling", "embedding_init_std", "dot_interactions", "output", "tower", "bottom", "num_experts",
                              "expert", "gate", "levels", "stages", "task_subnet", "code", "scene_dim", "embedding_transform",
                              "slot_gate", "wiring", "expert_gate", "ppnet", "snr_kind", "co_action", "fusion",
                              "backbone", "query", "sequences", "bias_net"},
                          p);
  if (type != "multi_domain")
    for (const char* k : {"scene_dim", "embedding_transform", "slot_gate", "wiring", "expert_gate", "ppnet", "snr_kind"})
      if (m.contains(k)) fail(p, ".", k, ": only used by type \"multi_domain\"");
  if (type != "mm" && m.contains("fusion")) fail(p, ".fusion: only used by type \"mm\"");
  if (!is_interest_type(type))
    for (const char* k : {"backbone", "query", "sequences", "bias_net"})
      if (m.contains(k)) fail(p, ".", k, ": only used by types \"din\", \"dmt\" and \"sim\"");
  const std::string pooling = get_optional<std::string>(m, "sequence_pooling", p, "\"mean\" or \"sum\"", "mean");
  if (pooling == "mean") c.emb.sequence_pooling = SequencePooling::mean;
  else if (pooling == "sum") c.emb.sequence_pooling = SequencePooling::sum;
  else fail(p, ".sequence_pooling: expected \"mean\" or \"sum\", got \"", pooling, "\"");
  const double init_std = get_optional<double>(m, "embedding_init_std", p, "a positive number", 1e-4);
  if (!(init_std > 0)) fail(p, ".embedding_init_std: expected a positive number, got ", init_std);
  c.emb.embedding_init = Init::normal(0.0, init_std);
  c.emb.dot_interactions = get_optional<bool>(m, "dot_interactions", p, "a boolean", false);
  if (auto ca = m.find("co_action"); ca != m.end()) c.emb.co_action = parse_co_action(*ca, p + ".co_action", c.schema);
  const std::string output = get_optional<std::string>(m, "output", p, "\"none\" or \"esmm\"", type == "esmm" ? "esmm" : "none");
  if (output == "none") c.transform = OutputTransform::none;
  else if (output == "esmm") c.transform = OutputTransform::esmm;
  else fail(p, ".output: expected \"none\" or \"esmm\", got \"", output, "\"");
  if (type == "dnn" && c.num_tasks != 1) fail(p, ".type: \"dnn\" is single-task but the schema has ", c.num_tasks, " tasks");
  c.tower = parse_tower(child(m, "tower", p), p + ".tower");
  if (type == "esmm" && !m.contains("bottom")) {
    // ESMM shares the embeddings only; CTR and CVR each have a full tower.
    json mm = m;
    mm["bottom"] = json{{"layers", json::array()}};
    if (!m.contains("tower")) c.tower.hidden = {200, 80};
    return it->second(config, mm, c, p);
  }
  return it->second(config, m, c, p);
}

std::unique_ptr<Model> make_gradient_replica(const Model& model) {
  struct SourceScope {
    explicit SourceScope(const ParameterArena* s) : saved(detail::replica_value_source()) {
      detail::replica_value_source() = s;
    }
    ~SourceScope() { detail::replica_value_source() = saved; }
    const ParameterArena* saved;
  };
  std::unique_ptr<Model> replica;
  try {
    SourceScope scope(&model.arena());
    replica = build_model(model.config());
  } catch (const std::exception& e) {
    fail("make_gradient_replica: cannot rebuild the model from its config: ", e.what());
  }
  // Every trainable parameter the model's forward/backward can touch must be shared; parameters
  // added to the model's arena after it was built (a trainer's "uwl.*") need no replica.
  const ParameterArena& a = replica->arena();
  for (const auto& p : a.parameters())
    if (p.trainable && p.value != model.arena().at(p.name).value)
      fail("make_gradient_replica: parameter '", p.name, "' is not shared with the model");
  return replica;
}

}  // namespace mtrank::models
