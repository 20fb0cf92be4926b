#include "mtrank/models/multi_domain.hpp"

#include <cstring>

#include "mtrank/io/json_util.hpp"

namespace mtrank::models {

// ---------------------------------------------------------------------------------------------
// GatedExpert

template <class T>
GatedExpert<T>::GatedExpert(ParameterArenaT<T>& arena, std::string_view prefix, Options opt) : opt_(std::move(opt)) {
  require(opt_.gate_in >= 0 && opt_.gate_in < opt_.in, "gated expert '", prefix, "': gate_in ", opt_.gate_in,
          " must be in [0, in = ", opt_.in, ")");
  nn::MlpOptions m = opt_.mlp;
  m.in = opt_.in - opt_.gate_in;
  mlp_ = nn::Mlp<T>(arena, prefix, m);
  if (opt_.gate_in > 0)
    gate_ = blocks::GateNU<T>(arena, join_name(prefix, "gate"),
                              {.in = opt_.gate_in, .hidden = opt_.gate_hidden, .out = mlp_.out_features(), .gamma = opt_.gamma});
}

template <class T>
MatrixView<const T> GatedExpert<T>::forward(MatrixView<const T> x, Workspace& ws, const Context& ctx) const {
  require(x.cols == opt_.in, "gated expert: input has ", x.cols, " columns, expected ", opt_.in);
  const Index main = opt_.in - opt_.gate_in;
  ws.h = mlp_.forward(x.col_block(0, main), ws.mlp, ctx);
  if (opt_.gate_in == 0) return ws.h;
  ws.delta = gate_.forward(x.col_block(main, opt_.gate_in), ws.gate, ctx);
  MatrixView<T> y = ensure(ws.y, x.rows, ws.h.cols);
  blocks::gate_scale_forward<T>(ws.h, ws.delta, y);
  return y;
}

template <class T>
MatrixView<const T> GatedExpert<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  if (opt_.gate_in == 0) return mlp_.backward(dy, ws.mlp, need_dx);
  const Index B = dy.rows, main = opt_.in - opt_.gate_in;
  MatrixView<T> dh = ensure(ws.dh, B, dy.cols), dd = ensure(ws.ddelta, B, dy.cols);
  blocks::gate_scale_backward<T>(dy, ws.h, ws.delta, dh, dd);
  MatrixView<const T> dmain = mlp_.backward(dh, ws.mlp, need_dx);
  MatrixView<const T> dctx = gate_.backward(dd, ws.gate, need_dx);
  if (!need_dx) return {};
  MatrixView<T> dx = ensure(ws.dx, B, opt_.in);
  copy(dmain, dx.col_block(0, main));
  copy(dctx, dx.col_block(main, opt_.gate_in));
  return dx;
}

// ---------------------------------------------------------------------------------------------
// MultiDomainNet

template <class T>
MultiDomainNet<T>::MultiDomainNet(ParameterArenaT<T>& arena, const data::FeatureSchema& schema,
                                  FeatureEmbedderOptions emb, MultiDomainOptions opt)
    : opt_(std::move(opt)), embedder_(arena, "", schema, emb) {
  const auto& sc = embedder_.schema();
  K_ = sc.num_tasks();
  S_ = sc.num_scenes;
  require(K_ > 0, "multi_domain: the schema has no tasks");
  require(S_ >= 1, "multi_domain: schema.num_scenes must be >= 1, got ", S_);
  require(opt_.scene_dim > 0, "multi_domain.scene_dim: expected a positive integer, got ", opt_.scene_dim);
  require(!sc.sparse.empty() || !sc.sequences.empty(),
          "multi_domain: the schema needs at least one sparse or sequence field (the slot-gate's slots)");
  scene_table_ = &arena.add("scene_embedding.weight", Shape{S_, opt_.scene_dim}, {.init = emb.embedding_init, .sparse = true});

  // Slots: one per sparse field, then one per sequence field; they fill x_emb[:, 0 : dense_offset).
  std::vector<std::string> slot_names;
  for (std::size_t i = 0; i < sc.sparse.size(); ++i) {
    slot_off_.push_back(embedder_.sparse_offset(i));
    slot_in_.push_back(sc.sparse[i].dim);
    slot_names.push_back(sc.sparse[i].name);
  }
  for (std::size_t q = 0; q < sc.sequences.size(); ++q) {
    slot_off_.push_back(embedder_.sequence_offset(q));
    const Index next = q + 1 < sc.sequences.size() ? embedder_.sequence_offset(q + 1) : embedder_.dense_offset();
    slot_in_.push_back(next - embedder_.sequence_offset(q));
    slot_names.push_back(sc.sequences[q].name);
  }
  require(opt_.transform_out >= 0, "multi_domain.embedding_transform.out_dim: expected >= 0, got ", opt_.transform_out);
  for (std::size_t f = 0; f < slot_in_.size(); ++f) {
    const Index out = opt_.transform && opt_.transform_out > 0 ? opt_.transform_out : slot_in_[f];
    slot_out_.push_back(out);
    slot_width_ += out;
    if (opt_.transform)
      transforms_.emplace_back(arena, "transform." + slot_names[f],
                               blocks::EmbeddingTransformOptions{.num_domains = S_, .in = slot_in_[f], .out = out,
                                                                 .bias = opt_.transform_bias, .domain_field = "scene"});
  }
  emb_width_ = embedder_.out_features();
  rest_width_ = emb_width_ - embedder_.dense_offset();
  z_width_ = slot_width_ + rest_width_;

  const auto& w = opt_.wiring;
  has_epnet_ = w.features || w.experts || w.towers;
  for (const auto& name : opt_.domain_fields) {
    const int i = sc.sparse_index(name);
    if (i < 0) fail("multi_domain.slot_gate.domain_fields: \"", name, "\" is not a sparse field of the schema");
    domain_off_.push_back(embedder_.sparse_offset(static_cast<std::size_t>(i)));
    domain_dim_.push_back(sc.sparse[static_cast<std::size_t>(i)].dim);
    domain_extra_ += domain_dim_.back();
  }
  if (has_epnet_)
    epnet_ = blocks::EpNet<T>(arena, "epnet",
                              {.domain_in = opt_.scene_dim + domain_extra_, .slot_widths = slot_out_,
                               .hidden = opt_.epnet_hidden, .gamma = opt_.epnet_gamma, .unit_wise = opt_.epnet_unit_wise});

  gate_ctx_ = w.experts ? opt_.scene_dim + slot_width_ : 0;
  auto snr = opt_.snr;
  require(snr.stages.size() >= 2, "multi_domain.stages: expected at least 2 stages, got ", snr.stages.size());
  snr.in = z_width_ + gate_ctx_;
  snr.num_tasks = K_;
  for (std::size_t s = 0; s < snr.stages.size(); ++s) {
    snr.stages[s].subnet.gate_in = s == 0 ? gate_ctx_ : 0;
    snr.stages[s].subnet.gate_hidden = opt_.expert_gate_hidden;
    snr.stages[s].subnet.gamma = opt_.expert_gate_gamma;
  }
  if (opt_.snr_kind == blocks::SnrKind::trans) trans_ = std::make_unique<TransBackbone>(arena, "", snr);
  else aver_ = std::make_unique<AverBackbone>(arena, "", snr);

  const auto& tw = opt_.tower;
  require(tw.dropout == 0.0 && !tw.batch_norm, "multi_domain.tower: dropout and batch_norm are not supported");
  if (w.towers) {
    require(!tw.hidden.empty(), "multi_domain.tower.hidden: PPNet (wiring.towers) gates the tower hidden layers, "
                                "so the towers need at least one hidden layer");
    std::vector<std::string> priors = opt_.prior_fields;
    if (priors.empty())
      for (const char* n : {"user_id", "item_id", "author"})
        if (sc.sparse_index(n) >= 0) priors.push_back(n);
    require(!priors.empty(), "multi_domain.ppnet.prior_fields: none given and the schema has none of user_id, "
                             "item_id, author");
    for (const auto& name : priors) {
      const int i = sc.sparse_index(name);
      if (i < 0) fail("multi_domain.ppnet.prior_fields: \"", name, "\" is not a sparse field of the schema");
      prior_off_.push_back(embedder_.sparse_offset(static_cast<std::size_t>(i)));
      prior_dim_.push_back(sc.sparse[static_cast<std::size_t>(i)].dim);
      prior_width_ += prior_dim_.back();
    }
    ppnet_ = blocks::PpNet<T>(arena, "ppnet",
                              {.prior_in = prior_width_, .context_in = slot_width_, .num_tasks = K_,
                               .layer_widths = tw.hidden, .hidden = opt_.ppnet_hidden, .gamma = opt_.ppnet_gamma});
  }
  for (Index s = 0; s < S_; ++s)
    for (Index k = 0; k < K_; ++k) {
      Tower t;
      const std::string p = "towers." + std::to_string(s) + "." + std::to_string(k);
      Index in = trans_ ? trans_->out_features(k) : aver_->out_features(k);
      for (std::size_t l = 0; l < tw.hidden.size(); ++l) {
        t.lin.emplace_back(arena, p + ".layers." + std::to_string(l), nn::LinearOptions{.in = in, .out = tw.hidden[l]});
        t.act.emplace_back(arena, p + ".acts." + std::to_string(l),
                           nn::ActivationOptions{.kind = tw.activation, .width = tw.hidden[l]});
        in = tw.hidden[l];
      }
      t.lin.emplace_back(arena, p + ".layers." + std::to_string(tw.hidden.size()), nn::LinearOptions{.in = in, .out = 1});
      towers_.push_back(std::move(t));
    }
}

template <class T>
const std::vector<MatrixView<const T>>& MultiDomainNet<T>::backbone_forward(MatrixView<const T> x, Workspace& ws,
                                                                           const Context& ctx) const {
  return trans_ ? trans_->forward(x, ws.trans, ctx) : aver_->forward(x, ws.aver, ctx);
}

template <class T>
MatrixView<const T> MultiDomainNet<T>::backbone_backward(const std::vector<MatrixView<const T>>& d, Workspace& ws) const {
  return trans_ ? trans_->backward(d, ws.trans, true) : aver_->backward(d, ws.aver, true);
}

template <class T>
MatrixView<const T> MultiDomainNet<T>::forward(const data::Batch& batch, Workspace& ws, const Context& ctx) const {
  const Index B = batch.size;
  require(static_cast<Index>(batch.scene.size()) == B, "multi_domain: batch.scene has ", batch.scene.size(),
          " entries, expected one scene id per row (", B, ")");
  ws.scene.resize(static_cast<std::size_t>(B));
  ws.scene_rows.assign(static_cast<std::size_t>(S_), {});
  for (Index b = 0; b < B; ++b) {
    const Index s = batch.scene[static_cast<std::size_t>(b)];
    if (s < 0 || s >= S_) fail("multi_domain: scene[", b, "] = ", s, " out of range [0, ", S_, ") (schema.num_scenes)");
    ws.scene[static_cast<std::size_t>(b)] = s;
    ws.scene_rows[static_cast<std::size_t>(s)].push_back(b);
  }
  MatrixView<const T> x = embedder_.forward(batch, ws.emb, ctx);
  const Index sd = opt_.scene_dim;
  MatrixView<T> se = ensure(ws.s_emb, B, sd);
  for (Index b = 0; b < B; ++b) std::memcpy(se.row(b), scene_table_->value + ws.scene[b] * sd, sizeof(T) * sd);

  // E': the embedding transform layer per slot, or the slot block itself.
  MatrixView<const T> Ep;
  if (opt_.transform) {
    MatrixView<T> et = ensure(ws.emb_t, B, slot_width_);
    ws.transforms.resize(transforms_.size());
    Index col = 0;
    for (std::size_t f = 0; f < transforms_.size(); ++f) {
      auto y = transforms_[f].forward(x.col_block(slot_off_[f], slot_in_[f]), ws.scene, ws.transforms[f], ctx);
      copy(y, et.col_block(col, slot_out_[f]));
      col += slot_out_[f];
    }
    Ep = et;
  } else {
    Ep = x.col_block(0, slot_width_);
  }
  // EPNet on [scene; domain fields; sg(E')].
  if (has_epnet_) {
    MatrixView<T> dom = ensure(ws.domain, B, sd + domain_extra_);
    copy(MatrixView<const T>(se), dom.col_block(0, sd));
    Index c = sd;
    for (std::size_t i = 0; i < domain_off_.size(); ++i) {
      copy(x.col_block(domain_off_[i], domain_dim_[i]), dom.col_block(c, domain_dim_[i]));
      c += domain_dim_[i];
    }
    using SG = typename Workspace::StopGradient;
    if (ws.stop_gradient == SG::record) copy(Ep, ensure(ws.sg_E, B, slot_width_));
    if (ws.stop_gradient != SG::replay) {
      ws.O = epnet_.forward(dom, Ep, ws.epnet, ctx);
    } else {
      // The gate sees the recorded E'; O = delta (.) E' uses the live E'.
      epnet_.forward(dom, ws.sg_E.matrix(), ws.epnet, ctx);
      MatrixView<T> o = ensure(ws.O_live, B, slot_width_);
      for (Index b = 0; b < B; ++b) {
        Index c = 0;
        for (std::size_t f = 0; f < slot_out_.size(); ++f)
          for (Index u = 0; u < slot_out_[f]; ++u, ++c)
            o(b, c) = ws.epnet.delta(b, opt_.epnet_unit_wise ? c : static_cast<Index>(f)) * Ep(b, c);
      }
      ws.O = o;
    }
    if (ws.stop_gradient == SG::record) copy(ws.O, ensure(ws.sg_O, B, slot_width_));
  }
  // What the expert and PPNet gates read: sg(O).
  const MatrixView<const T> O_sg =
      ws.stop_gradient == Workspace::StopGradient::replay ? MatrixView<const T>(ws.sg_O.matrix()) : ws.O;
  // Backbone input [features ? O : E'; rest; (experts) scene; sg(O)].
  MatrixView<T> z = ensure(ws.z, B, z_width_ + gate_ctx_);
  copy(opt_.wiring.features ? ws.O : Ep, z.col_block(0, slot_width_));
  if (rest_width_ > 0) copy(x.col_block(embedder_.dense_offset(), rest_width_), z.col_block(slot_width_, rest_width_));
  if (gate_ctx_ > 0) {
    copy(MatrixView<const T>(se), z.col_block(z_width_, sd));
    copy(O_sg, z.col_block(z_width_ + sd, slot_width_));
  }
  const auto& reps = backbone_forward(z, ws, ctx);

  const std::vector<std::vector<MatrixView<const T>>>* deltas = nullptr;
  if (opt_.wiring.towers) {
    MatrixView<T> pr = ensure(ws.prior, B, prior_width_);
    Index c = 0;
    for (std::size_t i = 0; i < prior_off_.size(); ++i) {
      copy(x.col_block(prior_off_[i], prior_dim_[i]), pr.col_block(c, prior_dim_[i]));
      c += prior_dim_[i];
    }
    deltas = &ppnet_.forward(pr, O_sg, ws.ppnet, ctx);
  }

  MatrixView<T> out = ensure(ws.out, B, K_);
  const std::size_t L = opt_.tower.hidden.size();
  ws.towers.resize(towers_.size());
  for (Index s = 0; s < S_; ++s) {
    const auto& rows = ws.scene_rows[static_cast<std::size_t>(s)];
    const Index n = static_cast<Index>(rows.size());
    if (n == 0) continue;
    for (Index k = 0; k < K_; ++k) {
      const Tower& t = towers_[static_cast<std::size_t>(s * K_ + k)];
      TowerWork& w = ws.towers[static_cast<std::size_t>(s * K_ + k)];
      w.lin.resize(L + 1);
      w.act.resize(L);
      w.delta.resize(L);
      w.gated.resize(L);
      MatrixView<T> in = ensure(w.in, n, reps[k].cols);
      for (Index i = 0; i < n; ++i) std::memcpy(in.row(i), reps[k].row(rows[i]), sizeof(T) * in.cols);
      MatrixView<const T> h = in;
      for (std::size_t l = 0; l < L; ++l) {
        h = t.lin[l].forward(h, w.lin[l], ctx);
        h = t.act[l].forward(h, w.act[l], ctx);
        if (deltas) {
          const MatrixView<const T> dk = (*deltas)[static_cast<std::size_t>(k)][l];
          MatrixView<T> d = ensure(w.delta[l], n, h.cols);
          for (Index i = 0; i < n; ++i) std::memcpy(d.row(i), dk.row(rows[i]), sizeof(T) * h.cols);
          MatrixView<T> g = ensure(w.gated[l], n, h.cols);
          blocks::gate_scale_forward<T>(h, d, g);
          h = g;
        }
      }
      MatrixView<const T> y = t.lin[L].forward(h, w.lin[L], ctx);
      for (Index i = 0; i < n; ++i) out(rows[i], k) = y(i, 0);
    }
  }
  return out;
}

template <class T>
void MultiDomainNet<T>::backward(MatrixView<const T> d_out, Workspace& ws) const {
  const Index B = ws.out.dim(0);
  require_shape(d_out, B, K_, "multi_domain backward d_out");
  const std::size_t L = opt_.tower.hidden.size();
  const bool gated_towers = opt_.wiring.towers;
  const auto& reps_w = trans_ ? ws.trans.outs : ws.aver.outs;
  ws.d_reps.resize(static_cast<std::size_t>(K_));
  ws.d_reps_views.resize(static_cast<std::size_t>(K_));
  for (Index k = 0; k < K_; ++k) {
    ensure(ws.d_reps[k], B, reps_w[k].cols);
    ws.d_reps[k].zero();
    ws.d_reps_views[k] = ws.d_reps[k].matrix();
  }
  if (gated_towers) {
    ws.d_delta.resize(static_cast<std::size_t>(K_));
    ws.d_delta_views.assign(static_cast<std::size_t>(K_), std::vector<MatrixView<const T>>(L));
    for (Index k = 0; k < K_; ++k) {
      ws.d_delta[k].resize(L);
      for (std::size_t l = 0; l < L; ++l) {
        ensure(ws.d_delta[k][l], B, opt_.tower.hidden[l]);
        ws.d_delta[k][l].zero();
        ws.d_delta_views[k][l] = ws.d_delta[k][l].matrix();
      }
    }
  }
  // Towers: each scene's rows through that scene's towers only.
  for (Index s = 0; s < S_; ++s) {
    const auto& rows = ws.scene_rows[static_cast<std::size_t>(s)];
    const Index n = static_cast<Index>(rows.size());
    if (n == 0) continue;
    for (Index k = 0; k < K_; ++k) {
      const Tower& t = towers_[static_cast<std::size_t>(s * K_ + k)];
      TowerWork& w = ws.towers[static_cast<std::size_t>(s * K_ + k)];
      MatrixView<T> dy = ensure(w.dy, n, 1);
      for (Index i = 0; i < n; ++i) dy(i, 0) = d_out(rows[i], k);
      MatrixView<const T> g = t.lin[L].backward(dy, w.lin[L], true);
      for (std::size_t l = L; l-- > 0;) {
        if (gated_towers) {
          const MatrixView<const T> a = w.act[l].y.matrix();
          MatrixView<T> dd = ensure(w.dd, n, a.cols);
          MatrixView<T> dh = ensure(w.dy, n, a.cols);
          blocks::gate_scale_backward<T>(g, a, w.delta[l].matrix(), dh, dd);
          MatrixView<T> full = ws.d_delta[k][l].matrix();
          for (Index i = 0; i < n; ++i) std::memcpy(full.row(rows[i]), dd.row(i), sizeof(T) * a.cols);
          g = dh;
        }
        g = t.act[l].backward(g, w.act[l], true);
        g = t.lin[l].backward(g, w.lin[l], true);
      }
      MatrixView<T> dr = ws.d_reps[k].matrix();
      for (Index i = 0; i < n; ++i) std::memcpy(dr.row(rows[i]), g.row(i), sizeof(T) * g.cols);
    }
  }
  MatrixView<T> dx = ensure(ws.d_emb_x, B, emb_width_);
  ws.d_emb_x.zero();
  MatrixView<T> ds = ensure(ws.d_s, B, opt_.scene_dim);
  ws.d_s.zero();
  if (gated_towers) {
    MatrixView<const T> dp = ppnet_.backward(ws.d_delta_views, ws.ppnet, true);
    Index c = 0;
    for (std::size_t i = 0; i < prior_off_.size(); ++i) {
      blocks::add_into(dp.col_block(c, prior_dim_[i]), dx.col_block(prior_off_[i], prior_dim_[i]));
      c += prior_dim_[i];
    }
  }
  MatrixView<const T> dz = backbone_backward(ws.d_reps_views, ws);
  if (rest_width_ > 0)
    blocks::add_into(dz.col_block(slot_width_, rest_width_), dx.col_block(embedder_.dense_offset(), rest_width_));
  if (gate_ctx_ > 0) blocks::add_into(dz.col_block(z_width_, opt_.scene_dim), ds);  // sg(O) part dropped
  MatrixView<const T> dEp = dz.col_block(0, slot_width_);
  if (opt_.wiring.features) {
    auto g = epnet_.backward(dEp, ws.epnet, true);
    dEp = g.d_emb;
    blocks::add_into(g.d_domain.col_block(0, opt_.scene_dim), ds);
    Index c = opt_.scene_dim;
    for (std::size_t i = 0; i < domain_off_.size(); ++i) {
      blocks::add_into(g.d_domain.col_block(c, domain_dim_[i]), dx.col_block(domain_off_[i], domain_dim_[i]));
      c += domain_dim_[i];
    }
  }
  if (opt_.transform) {
    Index col = 0;
    for (std::size_t f = 0; f < transforms_.size(); ++f) {
      auto d = transforms_[f].backward(dEp.col_block(col, slot_out_[f]), ws.transforms[f], true);
      blocks::add_into(d, dx.col_block(slot_off_[f], slot_in_[f]));
      col += slot_out_[f];
    }
  } else {
    blocks::add_into(dEp, dx.col_block(0, slot_width_));
  }
  embedder_.backward(dx, ws.emb);
  for (Index b = 0; b < B; ++b) {
    T* g = scene_table_->sparse_grad.row(ws.scene[b]);
    for (Index c = 0; c < opt_.scene_dim; ++c) g[c] += ds(b, c);
  }
}

template <class T>
double MultiDomainNet<T>::penalty(double weight) const {
  return trans_ ? trans_->penalty(weight) : aver_->penalty(weight);
}

template class GatedExpert<float>;
template class GatedExpert<double>;
template class MultiDomainNet<float>;
template class MultiDomainNet<double>;

// ---------------------------------------------------------------------------------------------
// Config

namespace {

using io::get_optional;
using io::json;

const json& child(const json& j, const char* key, const std::string& path) {
  static const json empty = json::object();
  auto it = j.find(key);
  if (it == j.end()) return empty;
  if (!it->is_object()) fail(path, ".", key, ": expected an object");
  return *it;
}

std::vector<std::string> string_list(const json& j, const char* key, const std::string& path) {
  std::vector<std::string> v;
  auto it = j.find(key);
  if (it == j.end()) return v;
  if (!it->is_array()) fail(path, ".", key, ": expected an array of field names");
  for (auto& e : *it) {
    if (!e.is_string()) fail(path, ".", key, ": expected an array of field names, got ", it->dump());
    v.push_back(e.get<std::string>());
  }
  return v;
}

nn::MlpOptions parse_subnet(const json& j, const std::string& path) {
  io::reject_unknown_keys(j, {"layers", "activation"}, path);
  nn::MlpOptions o;
  o.layers = {64};
  if (auto it = j.find("layers"); it != j.end()) {
    if (!it->is_array()) fail(path, ".layers: expected an array of positive integers");
    o.layers.clear();
    for (auto& e : *it) {
      if (!e.is_number_integer() || e.get<Index>() <= 0)
        fail(path, ".layers: expected an array of positive integers, got ", it->dump());
      o.layers.push_back(e.get<Index>());
    }
  }
  o.activation = nn::parse_activation(get_optional<std::string>(j, "activation", path, "an activation name", "relu"));
  return o;
}

double positive(const json& j, const char* key, const std::string& path, double fallback) {
  const double v = get_optional<double>(j, key, path, "a positive number", fallback);
  if (!(v > 0)) fail(path, ".", key, ": expected a positive number, got ", v);
  return v;
}

Index non_negative(const json& j, const char* key, const std::string& path, Index fallback) {
  const Index v = get_optional<Index>(j, key, path, "a non-negative integer", fallback);
  if (v < 0) fail(path, ".", key, ": expected a non-negative integer, got ", v);
  return v;
}

}  // namespace

void parse_snr_options(const json& m, const std::string& p, Index K, blocks::SnrOptions<GatedExpertOptions>& snr) {
  auto it = m.find("stages");
  if (it == m.end()) {
    // Default: 3 stage-0 sub-networks [64], K upper sub-networks [32].
    snr.stages.push_back({.num_subnets = 3, .subnet = {.mlp = {.layers = {64}}}});
    snr.stages.push_back({.num_subnets = K, .subnet = {.mlp = {.layers = {32}}}});
  } else {
    if (!it->is_array() || it->size() < 2) fail(p, ".stages: expected an array of at least 2 stages");
    for (std::size_t i = 0; i < it->size(); ++i) {
      const std::string sp = p + ".stages[" + std::to_string(i) + "]";
      const json& s = (*it)[i];
      io::reject_unknown_keys(s, {"num_subnets", "subnet", "in"}, sp);
      blocks::SnrStage<GatedExpertOptions> st;
      st.num_subnets = io::get_required<Index>(s, "num_subnets", sp, "a positive integer");
      if (st.num_subnets <= 0) fail(sp, ".num_subnets: expected a positive integer, got ", st.num_subnets);
      st.subnet.mlp = parse_subnet(child(s, "subnet", sp), sp + ".subnet");
      st.in = non_negative(s, "in", sp, 0);
      snr.stages.push_back(st);
    }
  }
  if (auto ts = m.find("task_subnet"); ts != m.end()) {
    if (!ts->is_array()) fail(p, ".task_subnet: expected an array of sub-network indices");
    for (auto& v : *ts) {
      if (!v.is_number_integer() || v.get<Index>() < 0 || v.get<Index>() >= snr.stages.back().num_subnets)
        fail(p, ".task_subnet: expected indices in [0, ", snr.stages.back().num_subnets, "), got ", ts->dump());
      snr.task_subnet.push_back(v.get<Index>());
    }
    if (static_cast<Index>(snr.task_subnet.size()) != K)
      fail(p, ".task_subnet: ", snr.task_subnet.size(), " entries, expected one per task (", K, ")");
  } else if (snr.stages.back().num_subnets != K) {
    fail(p, ".stages: the last stage has ", snr.stages.back().num_subnets, " sub-networks but there are ", K,
         " tasks (set task_subnet)");
  }
  const std::string cp = p + ".code";
  const json& code = child(m, "code", p);
  io::reject_unknown_keys(code, {"beta", "gamma", "zeta", "log_alpha_mean", "log_alpha_std"}, cp);
  snr.code.beta = positive(code, "beta", cp, snr.code.beta);
  snr.code.gamma = get_optional<double>(code, "gamma", cp, "a negative number", snr.code.gamma);
  if (!(snr.code.gamma < 0)) fail(cp, ".gamma: expected a negative number, got ", snr.code.gamma);
  snr.code.zeta = get_optional<double>(code, "zeta", cp, "a number > 1", snr.code.zeta);
  if (!(snr.code.zeta > 1)) fail(cp, ".zeta: expected a number > 1, got ", snr.code.zeta);
  snr.code.log_alpha_mean = get_optional<double>(code, "log_alpha_mean", cp, "a number", 2.0);
  snr.code.log_alpha_std = get_optional<double>(code, "log_alpha_std", cp, "a non-negative number", snr.code.log_alpha_std);
  if (!(snr.code.log_alpha_std >= 0)) fail(cp, ".log_alpha_std: expected a non-negative number");
}

const std::vector<const char*>& multi_domain_keys() {
  static const std::vector<const char*> keys = {"scene_dim", "embedding_transform", "slot_gate", "wiring", "expert_gate",
                                                "ppnet", "snr_kind", "stages", "task_subnet", "code", "tower"};
  return keys;
}

MultiDomainOptions parse_multi_domain(const json& m, const std::string& p, const data::FeatureSchema& schema,
                                      const TowerOptions& tower) {
  MultiDomainOptions o;
  o.tower = tower;
  if (tower.dropout != 0.0) fail(p, ".tower.dropout: not supported by multi_domain (expected 0)");
  if (tower.batch_norm) fail(p, ".tower.batch_norm: not supported by multi_domain (expected false)");
  const Index sd = get_optional<Index>(m, "scene_dim", p, "a positive integer", 8);
  if (sd <= 0) fail(p, ".scene_dim: expected a positive integer, got ", sd);
  o.scene_dim = sd;
  if (schema.num_scenes < 1) fail("config.schema.num_scenes: expected >= 1 for multi_domain");

  const std::string tp = p + ".embedding_transform";
  const json& t = child(m, "embedding_transform", p);
  io::reject_unknown_keys(t, {"enabled", "out_dim", "bias"}, tp);
  o.transform = get_optional<bool>(t, "enabled", tp, "a boolean", true);
  o.transform_out = non_negative(t, "out_dim", tp, 0);
  o.transform_bias = get_optional<bool>(t, "bias", tp, "a boolean", true);

  const std::string gp = p + ".slot_gate";
  const json& g = child(m, "slot_gate", p);
  io::reject_unknown_keys(g, {"hidden", "gamma", "unit_wise", "domain_fields"}, gp);
  o.epnet_hidden = non_negative(g, "hidden", gp, 0);
  o.epnet_gamma = positive(g, "gamma", gp, 2.0);
  o.epnet_unit_wise = get_optional<bool>(g, "unit_wise", gp, "a boolean", false);
  o.domain_fields = string_list(g, "domain_fields", gp);
  for (auto& f : o.domain_fields)
    if (schema.sparse_index(f) < 0) fail(gp, ".domain_fields: \"", f, "\" is not a sparse field of the schema");

  const std::string wp = p + ".wiring";
  const json& w = child(m, "wiring", p);
  io::reject_unknown_keys(w, {"features", "experts", "towers"}, wp);
  o.wiring.features = get_optional<bool>(w, "features", wp, "a boolean", true);
  o.wiring.experts = get_optional<bool>(w, "experts", wp, "a boolean", true);
  o.wiring.towers = get_optional<bool>(w, "towers", wp, "a boolean", true);

  const std::string ep = p + ".expert_gate";
  const json& e = child(m, "expert_gate", p);
  io::reject_unknown_keys(e, {"hidden", "gamma"}, ep);
  o.expert_gate_hidden = non_negative(e, "hidden", ep, 0);
  o.expert_gate_gamma = positive(e, "gamma", ep, 2.0);

  const std::string pp = p + ".ppnet";
  const json& pn = child(m, "ppnet", p);
  io::reject_unknown_keys(pn, {"prior_fields", "hidden", "gamma"}, pp);
  o.prior_fields = string_list(pn, "prior_fields", pp);
  for (auto& f : o.prior_fields)
    if (schema.sparse_index(f) < 0) fail(pp, ".prior_fields: \"", f, "\" is not a sparse field of the schema");
  o.ppnet_hidden = non_negative(pn, "hidden", pp, 0);
  o.ppnet_gamma = positive(pn, "gamma", pp, 2.0);
  if (o.wiring.towers && tower.hidden.empty())
    fail(p, ".tower.hidden: wiring.towers (PPNet) needs at least one tower hidden layer");

  const std::string kind = get_optional<std::string>(m, "snr_kind", p, "\"trans\" or \"aver\"", "trans");
  if (kind == "trans") o.snr_kind = blocks::SnrKind::trans;
  else if (kind == "aver") o.snr_kind = blocks::SnrKind::aver;
  else fail(p, ".snr_kind: expected \"trans\" or \"aver\", got \"", kind, "\"");

  parse_snr_options(m, p, schema.num_tasks(), o.snr);
  return o;
}

}  // namespace mtrank::models
