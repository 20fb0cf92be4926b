#include "mtrank/models/mm_fusion.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "mtrank/io/json_util.hpp"

namespace mtrank::models {

namespace {
template <class T>
blocks::SnrOptions<GatedExpertOptions> snr_for(MmOptions o) {
  o.snr.in = o.in;
  o.snr.num_tasks = o.num_tasks - 1;
  return o.snr;
}
}  // namespace

template <class T>
MmNet<T>::MmNet(ParameterArenaT<T>& arena, MmOptions opt)
    : opt_(std::move(opt)),
      base_((require(opt_.num_tasks >= 2, "mm: needs at least one base task and the fused task, got ", opt_.num_tasks,
                     " tasks"),
             require(opt_.fused_task >= 0 && opt_.fused_task < opt_.num_tasks, "mm: fused_task ", opt_.fused_task,
                     " out of range [0, ", opt_.num_tasks, ")"),
             arena),
            "", Backbone(arena, "", snr_for<T>(opt_)), opt_.tower) {
  for (Index k = 0; k < opt_.num_tasks; ++k)
    if (k != opt_.fused_task) base_cols_.push_back(k);
  require(opt_.binary.empty() || static_cast<Index>(opt_.binary.size()) == opt_.num_tasks, "mm: binary has ",
          opt_.binary.size(), " entries, expected ", opt_.num_tasks);
  const Index Kb = opt_.num_tasks - 1;
  require(opt_.user_width >= 0 && opt_.user_offset >= 0 && opt_.user_offset + opt_.user_width <= opt_.in,
          "mm: user columns [", opt_.user_offset, ", ", opt_.user_offset + opt_.user_width, ") outside x of width ", opt_.in);
  nn::MlpOptions h{.layers = opt_.hidden, .activate_last = false};
  if (opt_.mode == FusionMode::mlp) {
    h.in = Kb + opt_.user_width;
    h.layers.push_back(1);
  } else {
    require(opt_.user_width > 0, "mm.fusion.user_field: mode \"user_weights\" needs a user field");
    h.in = opt_.user_width;
    h.layers.push_back(Kb);
    bias_ = &arena.add("fusion.bias", Shape{1}, {.init = Init::zeros()});
  }
  head_ = nn::Mlp<T>(arena, "fusion", h);
}

template <class T>
MatrixView<const T> MmNet<T>::forward(MatrixView<const T> x, Workspace& ws, const Context& ctx) const {
  const Index B = x.rows, Kb = opt_.num_tasks - 1;
  MatrixView<const T> z = base_.forward(x, ws.base, ctx);
  MatrixView<T> out = ensure(ws.out, B, opt_.num_tasks);
  MatrixView<T> q = ensure(ws.q, B, Kb);
  for (Index b = 0; b < B; ++b)
    for (Index j = 0; j < Kb; ++j) {
      out(b, base_cols_[j]) = z(b, j);
      q(b, j) = binary(j) ? T(1) / (T(1) + std::exp(-z(b, j))) : z(b, j);
    }
  const MatrixView<const T> u = x.col_block(opt_.user_offset, opt_.user_width);
  if (opt_.mode == FusionMode::mlp) {
    MatrixView<T> fin = ensure(ws.fin, B, Kb + opt_.user_width);
    copy(MatrixView<const T>(q), fin.col_block(0, Kb));
    if (opt_.user_width > 0) copy(u, fin.col_block(Kb, opt_.user_width));
    MatrixView<const T> s = head_.forward(fin, ws.head, ctx);
    for (Index b = 0; b < B; ++b) out(b, opt_.fused_task) = s(b, 0);
  } else {
    MatrixView<const T> pre = head_.forward(u, ws.head, ctx);
    MatrixView<T> w = ensure(ws.w, B, Kb);
    for (Index b = 0; b < B; ++b) {
      T s = bias_->value[0];
      for (Index j = 0; j < Kb; ++j) {
        const T a = pre(b, j);
        w(b, j) = a > T(20) ? a : std::log1p(std::exp(a));  // softplus
        s += w(b, j) * q(b, j);
      }
      out(b, opt_.fused_task) = s;
    }
  }
  return out;
}

template <class T>
MatrixView<const T> MmNet<T>::backward(MatrixView<const T> d_out, Workspace& ws, bool need_dx) const {
  const Index B = d_out.rows, Kb = opt_.num_tasks - 1;
  require_shape(d_out, ws.out.dim(0), opt_.num_tasks, "mm backward d_out");
  const MatrixView<const T> q = ws.q.matrix();
  MatrixView<T> db = ensure(ws.d_base, B, Kb);
  for (Index b = 0; b < B; ++b)
    for (Index j = 0; j < Kb; ++j) db(b, j) = d_out(b, base_cols_[j]);
  MatrixView<T> dq = ensure(ws.dq, B, Kb);
  ws.dq.zero();
  MatrixView<T> dh = ensure(ws.d_head, B, opt_.mode == FusionMode::mlp ? 1 : Kb);
  MatrixView<const T> du;  // gradient w.r.t. u
  if (opt_.mode == FusionMode::mlp) {
    for (Index b = 0; b < B; ++b) dh(b, 0) = d_out(b, opt_.fused_task);
    MatrixView<const T> dfin = head_.backward(dh, ws.head, true);
    if (!opt_.detach) blocks::add_into(dfin.col_block(0, Kb), dq);
    if (opt_.user_width > 0) du = dfin.col_block(Kb, opt_.user_width);
  } else {
    const MatrixView<const T> w = ws.w.matrix();
    const MatrixView<const T> pre = ws.head.y;
    for (Index b = 0; b < B; ++b) {
      const T ds = d_out(b, opt_.fused_task);
      bias_->grad[0] += ds;
      for (Index j = 0; j < Kb; ++j) {
        const T a = pre(b, j);
        const T sig = a > T(20) ? T(1) : T(1) / (T(1) + std::exp(-a));
        dh(b, j) = ds * q(b, j) * sig;
        dq(b, j) = ds * w(b, j);
      }
    }
    du = head_.backward(dh, ws.head, true);
  }
  if (!opt_.detach)
    for (Index b = 0; b < B; ++b)
      for (Index j = 0; j < Kb; ++j) db(b, j) += dq(b, j) * (binary(j) ? q(b, j) * (T(1) - q(b, j)) : T(1));
  MatrixView<const T> dxb = base_.backward(db, ws.base, need_dx);
  if (!need_dx) return {};
  MatrixView<T> dx = ensure(ws.dx, B, opt_.in);
  copy(dxb, dx);
  if (opt_.user_width > 0) blocks::add_into(du, dx.col_block(opt_.user_offset, opt_.user_width));
  return dx;
}

template class MmNet<float>;
template class MmNet<double>;

data::Dataset add_fused_task(const data::Dataset& d, const std::string& name,
                             const std::vector<std::pair<std::string, double>>& weights) {
  const Index K = d.schema.num_tasks(), N = d.rows;
  require(!weights.empty(), "add_fused_task: weights must name at least one task");
  for (auto& t : d.schema.tasks) require(t.name != name, "add_fused_task: task \"", name, "\" already exists");
  std::vector<std::pair<Index, double>> w;
  double total = 0;
  for (auto& [task, v] : weights) {
    Index k = -1;
    for (Index i = 0; i < K; ++i)
      if (d.schema.tasks[i].name == task) k = i;
    if (k < 0) fail("add_fused_task: \"", task, "\" is not a task of the schema");
    if (!(v >= 0)) fail("add_fused_task: weight of \"", task, "\" must be >= 0, got ", v);
    w.push_back({k, v});
    total += v;
  }
  require(total > 0, "add_fused_task: the weights sum to 0");
  data::Dataset out = d;
  out.schema.tasks.push_back({name, data::TaskKind::regression});  // a soft label: MSE, no AUC
  auto widen = [&](const Tensor& src, Tensor& dst, bool mask) {
    dst = Tensor(Shape{N, K + 1});
    for (Index r = 0; r < N; ++r) {
      double f = 0;
      bool present = true;
      for (Index k = 0; k < K; ++k) dst[r * (K + 1) + k] = src[r * K + k];
      for (auto& [k, v] : w) {
        f += v * src[r * K + k];
        present = present && src[r * K + k] != 0.0f;
      }
      dst[r * (K + 1) + K] = mask ? (present ? 1.0f : 0.0f) : static_cast<float>(f / total);
    }
  };
  widen(d.labels, out.labels, false);
  for (Index r = 0; r < N; ++r) {
    const float y = out.labels[r * (K + 1) + K];
    if (!(y >= 0.0f && y <= 1.0f)) fail("add_fused_task: row ", r, ": fused label ", y, " outside [0, 1]");
  }
  if (d.label_mask.numel() > 0) widen(d.label_mask, out.label_mask, true);
  if (d.oracle.numel() > 0) widen(d.oracle, out.oracle, false);
  return out;
}

const std::vector<const char*>& mm_keys() {
  static const std::vector<const char*> keys = {"stages", "task_subnet", "code", "tower", "fusion"};
  return keys;
}

MmOptions parse_mm(const nlohmann::json& m, const std::string& p, const data::FeatureSchema& schema,
                   const TowerOptions& tower, std::string& user_field) {
  using io::get_optional;
  MmOptions o;
  o.tower = tower;
  o.num_tasks = schema.num_tasks();
  const std::string fp = p + ".fusion";
  auto it = m.find("fusion");
  if (it == m.end() || !it->is_object()) fail(fp, ": missing (expected an object with at least \"task\")");
  const auto& f = *it;
  io::reject_unknown_keys(f, {"task", "mode", "hidden", "user_field", "detach"}, fp);
  const std::string task = io::get_required<std::string>(f, "task", fp, "the name of the fused task");
  o.fused_task = -1;
  for (Index k = 0; k < o.num_tasks; ++k)
    if (schema.tasks[k].name == task) o.fused_task = k;
  if (o.fused_task < 0) fail(fp, ".task: \"", task, "\" is not a task of the schema");
  if (o.num_tasks < 2) fail(fp, ".task: the schema needs at least one base task besides \"", task, "\"");
  const std::string mode = get_optional<std::string>(f, "mode", fp, "\"mlp\" or \"user_weights\"", "mlp");
  if (mode == "mlp") o.mode = FusionMode::mlp;
  else if (mode == "user_weights") o.mode = FusionMode::user_weights;
  else fail(fp, ".mode: expected \"mlp\" or \"user_weights\", got \"", mode, "\"");
  if (auto h = f.find("hidden"); h != f.end()) {
    if (!h->is_array()) fail(fp, ".hidden: expected an array of positive integers");
    o.hidden.clear();
    for (auto& e : *h) {
      if (!e.is_number_integer() || e.get<Index>() <= 0) fail(fp, ".hidden: expected positive integers, got ", h->dump());
      o.hidden.push_back(e.get<Index>());
    }
  }
  const bool has_user = schema.sparse_index("user_id") >= 0;
  user_field = get_optional<std::string>(f, "user_field", fp, "a sparse field name (\"\" = none)", has_user ? "user_id" : "");
  if (!user_field.empty()) {
    const int i = schema.sparse_index(user_field);
    if (i < 0) fail(fp, ".user_field: \"", user_field, "\" is not a sparse field of the schema");
    for (int j = 0; j < i; ++j) o.user_offset += schema.sparse[static_cast<std::size_t>(j)].dim;  // FeatureEmbedder layout
    o.user_width = schema.sparse[static_cast<std::size_t>(i)].dim;
  }
  if (o.mode == FusionMode::user_weights && o.user_width == 0)
    fail(fp, ".user_field: mode \"user_weights\" needs a user field");
  o.detach = get_optional<bool>(f, "detach", fp, "a boolean", true);
  for (auto& t : schema.tasks) o.binary.push_back(t.kind == data::TaskKind::binary);
  parse_snr_options(m, p, o.num_tasks - 1, o.snr);
  return o;
}

}  // namespace mtrank::models
