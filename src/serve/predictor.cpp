#include "mtrank/serve/predictor.hpp"

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "mtrank/core/threading.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/serve/request.hpp"

namespace mtrank::serve {

using nlohmann::json;

namespace {

std::atomic<std::uint64_t> next_predictor_id{1};

std::string config_model_type(const json& cfg) {
  if (cfg.is_object() && cfg.contains("model") && cfg["model"].is_object() && cfg["model"].contains("type") &&
      cfg["model"]["type"].is_string())
    return cfg["model"]["type"].get<std::string>();
  return "custom";
}

std::string task_list(const data::FeatureSchema& s) {
  std::string l;
  for (auto& t : s.tasks) l += (l.empty() ? "" : ", ") + t.name;
  return l;
}

Index task_index(const data::FeatureSchema& s, const std::string& name, const std::string& path) {
  for (std::size_t k = 0; k < s.tasks.size(); ++k)
    if (s.tasks[k].name == name) return static_cast<Index>(k);
  fail(path, ": unknown task (expected one of: ", task_list(s), ")");
}

std::vector<double> per_task(const json& j, const char* key, const data::FeatureSchema& s, const std::string& path,
                             double fallback, bool finite_only) {
  std::vector<double> v(s.tasks.size(), fallback);
  auto it = j.find(key);
  if (it == j.end()) return v;
  const std::string p = path + "." + key;
  if (!it->is_object()) fail(p, ": expected an object {\"<task name>\": number, ...}");
  for (auto e = it->begin(); e != it->end(); ++e) {
    const std::string ep = p + "." + e.key();
    const Index k = task_index(s, e.key(), ep);
    if (!e->is_number()) fail(ep, ": expected a number, got ", e->dump());
    const double x = e->get<double>();
    if (finite_only && !std::isfinite(x)) fail(ep, ": expected a finite number, got ", x);
    v[static_cast<std::size_t>(k)] = x;
  }
  return v;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("cannot open '", p.string(), "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The model tensors of a weights file by name (optimiser state and trainer-only tensors left out).
std::unordered_map<std::string, Shape> file_shapes(const io::SafetensorsFile& f) {
  std::unordered_map<std::string, Shape> m;
  for (const auto& e : f.entries())
    if (e.name.rfind(io::kOptimPrefix, 0) != 0 && e.name.rfind("uwl.", 0) != 0) m.emplace(e.name, e.shape);
  return m;
}

io::LoadOptions serving_load_options() {
  io::LoadOptions o;
  o.ignore_prefixes = {io::kOptimPrefix, "uwl."};
  return o;
}

}  // namespace

// ---- fusion ----

double FusionOptions::fuse(const float* p) const {
  if (kind == Kind::weighted_sum) {
    double s = 0;
    for (std::size_t k = 0; k < weights.size(); ++k) s += weights[k] * p[k];
    return s;
  }
  double s = 1;
  for (std::size_t k = 0; k < alpha.size(); ++k)
    if (beta[k] != 0.0) s *= std::pow(alpha[k] + p[k], beta[k]);
  return s;
}

FusionOptions parse_fusion(const json& j, const data::FeatureSchema& schema, const std::string& path) {
  FusionOptions f;
  if (j.is_null()) {
    f.weights.assign(schema.tasks.size(), 1.0);
    return f;
  }
  if (!j.is_object()) fail(path, ": expected an object {\"type\": \"weighted_sum\" | \"product\", ...}");
  const std::string type = io::get_optional<std::string>(j, "type", path, "\"weighted_sum\" or \"product\"", "weighted_sum");
  if (type == "weighted_sum") {
    io::reject_unknown_keys(j, {"type", "weights"}, path);
    f.kind = FusionOptions::Kind::weighted_sum;
    f.weights = per_task(j, "weights", schema, path, j.contains("weights") ? 0.0 : 1.0, true);
  } else if (type == "product") {
    io::reject_unknown_keys(j, {"type", "alpha", "beta"}, path);
    f.kind = FusionOptions::Kind::product;
    f.alpha = per_task(j, "alpha", schema, path, 0.0, true);
    f.beta = per_task(j, "beta", schema, path, 0.0, true);
    for (std::size_t k = 0; k < f.alpha.size(); ++k)
      if (f.beta[k] != 0.0 && f.alpha[k] < 0.0)
        fail(path, ".alpha.", schema.tasks[k].name, ": expected >= 0 (alpha + p must be non-negative), got ", f.alpha[k]);
  } else {
    fail(path, ".type: expected \"weighted_sum\" or \"product\", got \"", type, "\"");
  }
  return f;
}

// ---- layout, request, serving section ----

RequestLayout RequestLayout::make(const data::FeatureSchema& schema, const std::vector<std::string>& candidate_fields,
                                  const std::string& path) {
  RequestLayout l;
  std::vector<bool> cs(schema.sparse.size(), false), cd(schema.dense.size(), false);
  // Field names -> indices once: linear in fields + candidate fields (a search of the schema per
  // candidate field was quadratic: 20 000 of each took seconds).
  std::unordered_map<std::string_view, std::size_t> sparse_at, dense_at;
  for (std::size_t f = 0; f < schema.sparse.size(); ++f) sparse_at.emplace(schema.sparse[f].name, f);
  for (std::size_t f = 0; f < schema.dense.size(); ++f) dense_at.emplace(schema.dense[f].name, f);
  for (std::size_t i = 0; i < candidate_fields.size(); ++i) {
    const std::string& n = candidate_fields[i];
    if (auto it = sparse_at.find(n); it != sparse_at.end()) {
      if (cs[it->second]) fail(path, "[", i, "]: field '", n, "' listed twice");
      cs[it->second] = true;
    } else if (auto jt = dense_at.find(n); jt != dense_at.end()) {
      if (cd[jt->second]) fail(path, "[", i, "]: field '", n, "' listed twice");
      cd[jt->second] = true;
    } else {
      for (auto& s : schema.sequences)
        if (s.name == n) fail(path, "[", i, "]: '", n, "' is a sequence field; sequences are user-side");
      fail(path, "[", i, "]: unknown field '", n, "' (expected a sparse or dense field of the schema)");
    }
  }
  for (std::size_t f = 0; f < cs.size(); ++f) (cs[f] ? l.cand_sparse : l.user_sparse).push_back(static_cast<Index>(f));
  for (std::size_t f = 0; f < cd.size(); ++f) (cd[f] ? l.cand_dense : l.user_dense).push_back(static_cast<Index>(f));
  l.cand_fields.sparse = cs;
  l.cand_fields.dense = cd;
  l.cand_fields.sequences.assign(schema.sequences.size(), false);
  for (std::size_t f = 0; f < cs.size(); ++f) l.user_fields.sparse.push_back(!cs[f]);
  for (std::size_t f = 0; f < cd.size(); ++f) l.user_fields.dense.push_back(!cd[f]);
  l.user_fields.sequences.assign(schema.sequences.size(), true);
  return l;
}

RequestLayout RequestLayout::from_sides(const data::FeatureSchema& schema) {
  require(schema.sides_declared(), "request layout: not every field of the schema declares a side");
  std::vector<std::string> items;
  for (const auto& f : schema.sparse)
    if (f.side == data::FieldSide::item) items.push_back(f.name);
  for (const auto& f : schema.dense)
    if (f.side == data::FieldSide::item) items.push_back(f.name);
  return make(schema, items, "schema");
}

void Request::clear() {
  user_sparse.clear();
  user_dense.clear();
  for (auto& s : sequences) s.clear();
  for (auto& t : sequence_times) t.clear();
  scene = 0;
  num_candidates = 0;
  cand_sparse.clear();
  cand_dense.clear();
  cand_scene.clear();
}

ServingConfig parse_serving(const json& j, const data::FeatureSchema& schema, const std::string& path) {
  ServingConfig c;
  if (!j.is_null()) {
    if (!j.is_object()) fail(path, ": expected an object");
    io::reject_unknown_keys(j, {"candidate_fields", "fusion", "max_abs_dense", "max_candidates", "max_sequence_length", "weights"}, path);
    if (auto it = j.find("weights"); it != j.end()) {
      if (!it->is_string()) fail(path, ".weights: expected \"f32\", \"bf16\" or \"int8\", got ", it->dump());
      try {
        c.weights = parse_serving_weights(it->get<std::string>());
      } catch (const Error& e) {
        fail(path, ".weights: ", e.what());
      }
    }
    if (auto it = j.find("candidate_fields"); it != j.end()) {
      if (!it->is_array()) fail(path, ".candidate_fields: expected an array of field names");
      for (auto& e : *it) {
        if (!e.is_string()) fail(path, ".candidate_fields: expected an array of field names, got ", it->dump());
        c.candidate_fields.push_back(e.get<std::string>());
      }
    }
    c.max_candidates = io::get_optional<Index>(j, "max_candidates", path, "a positive integer", c.max_candidates);
    if (c.max_candidates <= 0) fail(path, ".max_candidates: expected a positive integer, got ", c.max_candidates);
    c.max_sequence_length =
        io::get_optional<Index>(j, "max_sequence_length", path, "a positive integer", c.max_sequence_length);
    if (c.max_sequence_length <= 0)
      fail(path, ".max_sequence_length: expected a positive integer, got ", c.max_sequence_length);
    c.max_abs_dense = io::get_optional<double>(j, "max_abs_dense", path, "a positive number", c.max_abs_dense);
    if (!(c.max_abs_dense > 0) || !std::isfinite(c.max_abs_dense))
      fail(path, ".max_abs_dense: expected a positive finite number, got ", c.max_abs_dense);
  }
  for (const char* key : kReservedRequestKeys) {
    bool clash = false;
    for (const auto& f : schema.sparse) clash = clash || f.name == key;
    for (const auto& f : schema.dense) clash = clash || f.name == key;
    for (const auto& f : schema.sequences) clash = clash || f.name == key;
    if (clash)
      c.layout_error = std::string("schema field '") + key + "' has the name of a reserved request key (rename the field)";
  }
  // The layout: from candidate_fields when given (checked against every declared side), else
  // from the schema's sides; with neither, request scoring is refused with the reason.
  const bool listed = j.is_object() && j.contains("candidate_fields");
  std::vector<std::string> undeclared;
  for (const auto& f : schema.sparse)
    if (f.side == data::FieldSide::unspecified) undeclared.push_back(f.name);
  for (const auto& f : schema.dense)
    if (f.side == data::FieldSide::unspecified) undeclared.push_back(f.name);
  if (listed) {
    c.layout = RequestLayout::make(schema, c.candidate_fields, path + ".candidate_fields");
    auto check_side = [&](const std::string& name, data::FieldSide side, bool candidate) {
      if (side == data::FieldSide::unspecified) return;
      if (candidate && side != data::FieldSide::item)
        fail(path, ".candidate_fields: '", name, "' is declared side \"", data::field_side_name(side),
             "\" in the schema, but candidate fields are item-side");
      if (!candidate && side == data::FieldSide::item)
        fail(path, ".candidate_fields: '", name, "' is declared side \"item\" in the schema but is not listed");
    };
    for (std::size_t f = 0; f < schema.sparse.size(); ++f)
      check_side(schema.sparse[f].name, schema.sparse[f].side, c.layout.cand_fields.sparse[f]);
    for (std::size_t f = 0; f < schema.dense.size(); ++f)
      check_side(schema.dense[f].name, schema.dense[f].side, c.layout.cand_fields.dense[f]);
  } else if (undeclared.empty()) {
    c.layout = RequestLayout::from_sides(schema);
    for (Index f : c.layout.cand_sparse) c.candidate_fields.push_back(schema.sparse[f].name);
    for (Index f : c.layout.cand_dense) c.candidate_fields.push_back(schema.dense[f].name);
  } else {
    c.layout = RequestLayout::make(schema, {}, path + ".candidate_fields");
    std::string names;
    for (std::size_t i = 0; i < undeclared.size() && i < 20; ++i) names += (i ? ", " : "") + undeclared[i];
    if (undeclared.size() > 20) names += ", ... (" + std::to_string(undeclared.size()) + " in all)";
    if (c.layout_error.empty()) c.layout_error = "request layout cannot be derived: fields " + names +
                     " declare no side (set \"side\": \"user\" | \"item\" | \"context\" on each schema field, or list "
                     "the item fields in " + path + ".candidate_fields)";
  }
  c.fusion = parse_fusion(j.is_object() && j.contains("fusion") ? j["fusion"] : json(nullptr), schema, path + ".fusion");
  return c;
}

// ---- predictor ----

Predictor::Predictor(std::unique_ptr<models::Model> model, PredictorOptions options)
    : model_(std::move(model)), id_(next_predictor_id.fetch_add(1)) {
  require(model_ != nullptr, "Predictor: null model");
  const data::FeatureSchema& schema = model_->schema();
  schema.validate();
  const json& cfg = model_->config();
  json serving = options.serving;
  if (serving.is_null() && cfg.is_object() && cfg.contains("serving")) serving = cfg["serving"];
  serving_ = parse_serving(serving, schema, options.serving.is_null() ? "config.serving" : "serving");
  if (options.weights) serving_.weights = *options.weights;
  model_->set_serving_weights(serving_.weights);  // the serving plan, applied once before warm-up
  if (options.check_finite)
    for (const auto& p : model_->arena().parameters())
      for (Index i = 0; i < p.numel(); ++i)
        if (!std::isfinite(p.value[i])) fail("model parameter '", p.name, "': element ", i, " is ", p.value[i], " (not finite)");
  // Warm-up on one synthetic row (id 0 everywhere, dense 0, empty sequences): the whole forward
  // path runs once before the first request.
  data::Batch b;
  b.size = 1;
  b.sparse.assign(schema.sparse.size(), 0);
  b.dense.resize(Shape{1, static_cast<Index>(schema.dense.size())});
  b.dense.zero();
  b.sequences.resize(schema.sequences.size());
  for (auto& s : b.sequences) s.offsets = {0, 0};
  b.user.assign(1, 0);
  b.scene.assign(1, 0);
  Session s;
  Scores r = score(b, s);
  for (Index k = 0; k < r.probs.cols; ++k)
    if (!std::isfinite(r.probs(0, k))) fail("model: warm-up output for task '", schema.tasks[k].name, "' is not finite");
}

std::shared_ptr<const Predictor> Predictor::from_checkpoint(const std::filesystem::path& path, PredictorOptions options) {
  // One open file for the config and the tensors: a checkpoint replaced between two opens
  // cannot pair one version's config with another's weights.
  io::SafetensorsFile file = io::SafetensorsFile::load(path);
  io::CheckpointData meta = io::read_checkpoint_metadata(file);
  std::unique_ptr<models::Model> model;
  {
    std::string source(1, '\'');  // += : a GCC 12 -Wrestrict false positive on "'" + ...
    source += path.string();
    source += '\'';
    models::ExpectedShapes expect(file_shapes(file), source);  // before any allocation
    model = models::build_model(meta.config);
  }
  io::load_arena(model->arena(), file, serving_load_options());
  return std::make_shared<const Predictor>(std::move(model), std::move(options));
}

std::shared_ptr<const Predictor> Predictor::from_files(const std::filesystem::path& config_json,
                                                       const std::filesystem::path& weights, PredictorOptions options) {
  const json config = io::parse_json(read_file(config_json), config_json.string());
  io::SafetensorsFile file = io::SafetensorsFile::load(weights);
  std::unique_ptr<models::Model> model;
  {
    std::string source(1, '\'');
    source += weights.string();
    source += '\'';
    models::ExpectedShapes expect(file_shapes(file), source);  // before any allocation
    model = models::build_model(config);
  }
  io::load_arena(model->arena(), file, serving_load_options());
  return std::make_shared<const Predictor>(std::move(model), std::move(options));
}

void Predictor::bind(Session& s) const {
  if (s.owner_ == id_) return;
  s = Session();
  s.ws_ = model_->make_workspace();
  s.owner_ = id_;
}

Scores Predictor::finish(ConstMat y, Session& s) const {
  // A finite input far outside the training range (a dense value of 3e38) can drive a logit to
  // +-inf or NaN, which would come out as a confident 0 or 1 (or null): refuse it, naming where.
  for (Index b = 0; b < y.rows; ++b)
    for (Index k = 0; k < y.cols; ++k)
      if (!std::isfinite(y(b, k)))
        throw RequestError("request: the model's output for candidate (row) " + std::to_string(b) + ", task '" +
                           model_->schema().tasks[static_cast<std::size_t>(k)].name + "' is " + std::to_string(y(b, k)) +
                           " (not finite): an input value is far outside the range the model was trained on");
  Mat probs = ensure(s.probs_, y.rows, y.cols);
  model_->to_predictions(y, probs);
  s.fused_.resize(static_cast<std::size_t>(y.rows));
  for (Index b = 0; b < y.rows; ++b) s.fused_[static_cast<std::size_t>(b)] = float(serving_.fusion.fuse(probs.row(b)));
  return {probs, std::span<const float>(s.fused_.data(), s.fused_.size())};
}

Scores Predictor::score(const data::Batch& batch, Session& s) const {
  bind(s);
  const models::ParallelInferenceOptions parallel;
  if (num_threads() > 1 && models::row_slice_count(batch.size, num_threads(), parallel.min_rows_per_slice) > 1) {
    if (!s.parallel_) s.parallel_ = std::make_unique<models::ParallelInference>(*model_, parallel);
    return finish(s.parallel_->serve(batch), s);
  }
  return finish(model_->serve(batch, *s.ws_), s);
}

void Predictor::check(const Request& r) const {
  if (!serving_.layout_error.empty()) fail("model '", config_model_type(model_->config()), "': ", serving_.layout_error);
  const RequestLayout& l = serving_.layout;
  const data::FeatureSchema& schema = model_->schema();
  const std::size_t N = static_cast<std::size_t>(r.num_candidates);
  require(r.num_candidates >= 0 && r.num_candidates <= serving_.max_candidates, "request: ", r.num_candidates,
          " candidates, expected 0..", serving_.max_candidates);
  require(r.user_sparse.size() == l.user_sparse.size(), "request: ", r.user_sparse.size(), " user sparse values, expected ",
          l.user_sparse.size());
  require(r.user_dense.size() == l.user_dense.size(), "request: ", r.user_dense.size(), " user dense values, expected ",
          l.user_dense.size());
  require(r.sequences.size() == schema.sequences.size(), "request: ", r.sequences.size(), " sequences, expected ",
          schema.sequences.size());
  require(r.sequence_times.empty() || r.sequence_times.size() == schema.sequences.size(), "request: ",
          r.sequence_times.size(), " sequence time lists, expected 0 or ", schema.sequences.size());
  for (std::size_t q = 0; q < r.sequences.size(); ++q) {
    require(static_cast<Index>(r.sequences[q].size()) <= serving_.max_sequence_length, "request: sequence '",
            schema.sequences[q].name, "' has ", r.sequences[q].size(), " ids, limit ", serving_.max_sequence_length);
    if (r.sequence_times.empty() || r.sequence_times[q].empty()) continue;
    const auto& t = r.sequence_times[q];
    require(t.size() == r.sequences[q].size(), "request: sequence '", schema.sequences[q].name, "' has ",
            r.sequences[q].size(), " ids but ", t.size(), " times");
    for (std::size_t i = 0; i < t.size(); ++i)
      require(std::isfinite(t[i]) && t[i] >= 0.0f, "request: sequence '", schema.sequences[q].name, "' times[", i,
              "] = ", t[i], " (expected a finite gap >= 0 to the request; negative is in the future)");
  }
  require(r.scene >= 0 && r.scene < schema.num_scenes, "request: scene ", r.scene, " not in [0, ", schema.num_scenes, ")");
  require(r.cand_scene.empty() || r.cand_scene.size() == N, "request: ", r.cand_scene.size(),
          " candidate scenes, expected 0 or ", N);
  for (std::size_t i = 0; i < r.cand_scene.size(); ++i)
    require(r.cand_scene[i] >= 0 && r.cand_scene[i] < schema.num_scenes, "request: candidate ", i, " scene ",
            r.cand_scene[i], " not in [0, ", schema.num_scenes, ")");
  require(r.cand_sparse.size() == N * l.cand_sparse.size(), "request: ", r.cand_sparse.size(),
          " candidate sparse values, expected ", N, " x ", l.cand_sparse.size());
  require(r.cand_dense.size() == N * l.cand_dense.size(), "request: ", r.cand_dense.size(),
          " candidate dense values, expected ", N, " x ", l.cand_dense.size());
  const double lim = serving_.max_abs_dense;
  auto dense_ok = [lim](float v) { return std::isfinite(v) && std::fabs(v) <= lim; };
  auto dense_problem = [lim](float v) {
    return std::isfinite(v) ? " is beyond +-" + std::to_string(lim) + " (serving.max_abs_dense)" : std::string(" is not finite");
  };
  // (if + fail, not require: its message arguments would be built, allocating, for every value)
  for (std::size_t i = 0; i < r.user_dense.size(); ++i)
    if (!dense_ok(r.user_dense[i]))
      fail("request: dense field '", schema.dense[static_cast<std::size_t>(l.user_dense[i])].name, "' = ", r.user_dense[i],
           dense_problem(r.user_dense[i]));
  for (std::size_t i = 0; i < r.cand_dense.size(); ++i)
    if (!dense_ok(r.cand_dense[i]))
      fail("request: candidate ", i / l.cand_dense.size(), " dense field '",
           schema.dense[static_cast<std::size_t>(l.cand_dense[i % l.cand_dense.size()])].name, "' = ", r.cand_dense[i],
           dense_problem(r.cand_dense[i]));
}

void Predictor::expand(const Request& r, data::Batch& b) const {
  check(r);
  expand_rows(r, 0, r.num_candidates, b);
}

void Predictor::expand_rows(const Request& r, Index begin, Index end, data::Batch& b) const {
  const RequestLayout& l = serving_.layout;
  const data::FeatureSchema& schema = model_->schema();
  const Index N = end - begin, ns = static_cast<Index>(schema.sparse.size()), nd = static_cast<Index>(schema.dense.size());
  const Index ncs = static_cast<Index>(l.cand_sparse.size()), ncd = static_cast<Index>(l.cand_dense.size());
  b.size = N;
  b.sparse.resize(static_cast<std::size_t>(N * ns));
  b.dense.resize(Shape{N, nd});
  for (Index i = 0; i < N; ++i) {
    const Index ci = begin + i;  // the candidate
    for (std::size_t u = 0; u < l.user_sparse.size(); ++u) b.sparse[i * ns + l.user_sparse[u]] = r.user_sparse[u];
    for (Index c = 0; c < ncs; ++c) b.sparse[i * ns + l.cand_sparse[c]] = r.cand_sparse[ci * ncs + c];
    for (std::size_t u = 0; u < l.user_dense.size(); ++u) b.dense[i * nd + l.user_dense[u]] = r.user_dense[u];
    for (Index c = 0; c < ncd; ++c) b.dense[i * nd + l.cand_dense[c]] = r.cand_dense[ci * ncd + c];
  }
  b.sequences.resize(schema.sequences.size());
  for (std::size_t q = 0; q < schema.sequences.size(); ++q) {
    auto& col = b.sequences[q];
    const auto& ids = r.sequences[q];
    const bool timed = !r.sequence_times.empty() && !r.sequence_times[q].empty();
    col.ids.clear();
    col.times.clear();
    col.ids.reserve(static_cast<std::size_t>(N) * ids.size());  // exact: no geometric overshoot of a large copy
    if (timed) col.times.reserve(static_cast<std::size_t>(N) * ids.size());
    col.offsets.resize(static_cast<std::size_t>(N + 1));
    col.offsets[0] = 0;
    for (Index i = 0; i < N; ++i) {
      col.ids.insert(col.ids.end(), ids.begin(), ids.end());
      if (timed)
        col.times.insert(col.times.end(), r.sequence_times[q].begin(), r.sequence_times[q].end());
      col.offsets[static_cast<std::size_t>(i + 1)] = static_cast<std::int64_t>(col.ids.size());
    }
  }
  b.user.assign(static_cast<std::size_t>(N), 0);
  if (r.cand_scene.empty()) b.scene.assign(static_cast<std::size_t>(N), r.scene);
  else b.scene.assign(r.cand_scene.begin() + begin, r.cand_scene.begin() + end);
}

Index Predictor::expand_chunk_rows(const Request& r) {
  // Bytes one expanded row takes for its copy of the user's sequences (ids, and times if given).
  std::size_t row_bytes = 0;
  for (std::size_t q = 0; q < r.sequences.size(); ++q) {
    row_bytes += r.sequences[q].size() * sizeof(std::int64_t);
    if (q < r.sequence_times.size()) row_bytes += r.sequence_times[q].size() * sizeof(float);
  }
  const Index rows = row_bytes == 0 ? r.num_candidates : static_cast<Index>(kExpandBudgetBytes / row_bytes);
  return std::max<Index>(1, std::min(rows, r.num_candidates));
}

Scores Predictor::score(const Request& r, Session& s) const {
  bind(s);
  const models::FeatureEmbedder<float>* emb = model_->feature_embedder();
  if (!emb) {  // no embedder to split: score the expanded batch
    check(r);
    // Every expanded row holds a copy of the user's sequences: candidates x sequence length can
    // reach GBs (10,000 x 10,000 ids = 800 MB), so rows are expanded and scored in chunks whose
    // copies fit kExpandBudgetBytes. Rows are independent at serving, so the scores are the same.
    const Index N = r.num_candidates, chunk = expand_chunk_rows(r);
    if (chunk >= N) {
      expand_rows(r, 0, N, s.expanded_);
      return score(s.expanded_, s);
    }
    const Index K = model_->num_tasks();
    Mat all = ensure(s.chunked_probs_, N, K);
    s.chunked_fused_.resize(static_cast<std::size_t>(N));
    for (Index begin = 0; begin < N; begin += chunk) {
      const Index end = std::min(N, begin + chunk);
      expand_rows(r, begin, end, s.expanded_);
      const Scores part = score(s.expanded_, s);
      for (Index i = 0; i < end - begin; ++i) {
        std::memcpy(all.row(begin + i), part.probs.row(i), sizeof(float) * static_cast<std::size_t>(K));
        s.chunked_fused_[static_cast<std::size_t>(begin + i)] = part.fused[static_cast<std::size_t>(i)];
      }
    }
    return {all, std::span<const float>(s.chunked_fused_.data(), s.chunked_fused_.size())};
  }
  check(r);
  const RequestLayout& l = serving_.layout;
  const data::FeatureSchema& schema = model_->schema();
  const Index N = r.num_candidates, ns = static_cast<Index>(schema.sparse.size()),
              nd = static_cast<Index>(schema.dense.size()), W = emb->out_features();
  const Index ncs = static_cast<Index>(l.cand_sparse.size()), ncd = static_cast<Index>(l.cand_dense.size());

  // The user row: user-side lookups, sequence pooling and dense values, once.
  data::Batch& u = s.user_;
  u.size = 1;
  u.sparse.assign(static_cast<std::size_t>(ns), 0);
  u.dense.resize(Shape{1, nd});
  for (std::size_t i = 0; i < l.user_sparse.size(); ++i) u.sparse[l.user_sparse[i]] = r.user_sparse[i];
  for (std::size_t i = 0; i < l.user_dense.size(); ++i) u.dense[l.user_dense[i]] = r.user_dense[i];
  u.sequences.resize(schema.sequences.size());
  for (std::size_t q = 0; q < schema.sequences.size(); ++q) {
    auto& col = u.sequences[q];
    col.ids.assign(r.sequences[q].begin(), r.sequences[q].end());
    if (!r.sequence_times.empty()) col.times.assign(r.sequence_times[q].begin(), r.sequence_times[q].end());
    else col.times.clear();
    col.offsets.resize(2);
    col.offsets[0] = 0;
    col.offsets[1] = static_cast<std::int64_t>(col.ids.size());
  }
  u.user.assign(1, 0);
  u.scene.assign(1, r.scene);
  Mat xu = ensure(s.xu_, 1, W);
  emb->forward_fields(u, l.user_fields, xu, s.emb_);

  // The candidate rows: the user row broadcast, then the candidate fields looked up per candidate.
  data::Batch& c = s.cand_;
  c.size = N;
  c.sparse.resize(static_cast<std::size_t>(N * ns));
  c.dense.resize(Shape{N, nd});
  for (Index i = 0; i < N; ++i) {
    for (Index k = 0; k < ncs; ++k) c.sparse[i * ns + l.cand_sparse[k]] = r.cand_sparse[i * ncs + k];
    for (Index k = 0; k < ncd; ++k) c.dense[i * nd + l.cand_dense[k]] = r.cand_dense[i * ncd + k];
  }
  c.sequences.resize(schema.sequences.size());  // not read (sequences are user-side)
  Mat x = ensure(s.x_, N, W);
  for (Index i = 0; i < N; ++i) std::memcpy(x.row(i), xu.row(0), sizeof(float) * static_cast<std::size_t>(W));
  emb->forward_fields(c, l.cand_fields, x, s.emb_);
  emb->fill_interactions(x);
  return finish(model_->serve_embedded(x, *s.ws_), s);
}

json Predictor::metadata() const {
  const data::FeatureSchema& schema = model_->schema();
  const RequestLayout& l = serving_.layout;
  const json& cfg = model_->config();
  json m = json::object();
  m["model"] = config_model_type(cfg);
  if (cfg.is_object() && cfg.contains("name") && cfg["name"].is_string()) m["name"] = cfg["name"];
  json tasks = json::array();
  for (const auto& t : schema.tasks) tasks.push_back({{"name", t.name}, {"kind", data::task_kind_name(t.kind)}});
  m["tasks"] = std::move(tasks);
  m["num_scenes"] = schema.num_scenes;
  auto sparse = [&](Index f) {
    const auto& x = schema.sparse[static_cast<std::size_t>(f)];
    json e = {{"name", x.name}, {"kind", "sparse"}, {"side", data::field_side_name(x.side)}, {"vocab", x.vocab},
              {"hash", x.hash}};
    if (x.oov_row >= 0) e["oov_row"] = x.oov_row;
    return e;
  };
  auto dense = [&](Index f) {
    const auto& x = schema.dense[static_cast<std::size_t>(f)];
    return json{{"name", x.name}, {"kind", "dense"}, {"side", data::field_side_name(x.side)}};
  };
  json user = json::array(), cand = json::array(), seqs = json::array();
  for (Index f : l.user_sparse) user.push_back(sparse(f));
  for (Index f : l.user_dense) user.push_back(dense(f));
  for (Index f : l.cand_sparse) cand.push_back(sparse(f));
  for (Index f : l.cand_dense) cand.push_back(dense(f));
  for (std::size_t q = 0; q < schema.sequences.size(); ++q) {
    const auto& x = schema.sequences[q];
    const auto t = schema.sequence_table(q);
    seqs.push_back({{"name", x.name}, {"max_len", x.max_len}, {"table", x.table.empty() ? x.name : x.table},
                    {"vocab", t.vocab}, {"hash", t.hash}, {"times", "optional: one gap >= 0 per id"}});
  }
  m["user_fields"] = std::move(user);
  m["candidate_fields"] = std::move(cand);
  m["sequences"] = std::move(seqs);
  if (!serving_.layout_error.empty()) m["layout_error"] = serving_.layout_error;
  json fusion = json::object();
  if (serving_.fusion.kind == FusionOptions::Kind::weighted_sum) {
    fusion["type"] = "weighted_sum";
    for (std::size_t k = 0; k < schema.tasks.size(); ++k) fusion["weights"][schema.tasks[k].name] = serving_.fusion.weights[k];
  } else {
    fusion["type"] = "product";
    for (std::size_t k = 0; k < schema.tasks.size(); ++k) {
      fusion["alpha"][schema.tasks[k].name] = serving_.fusion.alpha[k];
      fusion["beta"][schema.tasks[k].name] = serving_.fusion.beta[k];
    }
  }
  m["fusion"] = std::move(fusion);
  m["weights"] = serving_weights_name(serving_.weights);
  m["max_candidates"] = serving_.max_candidates;
  m["max_sequence_length"] = serving_.max_sequence_length;
  m["max_abs_dense"] = serving_.max_abs_dense;
  m["parameters"] = [&] {
    std::int64_t n = 0;
    for (const auto& p : model_->arena().parameters()) n += p.numel();
    return n;
  }();
  return m;
}

Scores Predictor::score(const data::Batch& batch) const {
  thread_local Session s;
  return score(batch, s);
}

Scores Predictor::score(const Request& request) const {
  thread_local Session s;
  return score(request, s);
}

}  // namespace mtrank::serve
