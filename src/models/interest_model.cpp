#include "mtrank/models/interest_model.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "mtrank/io/json_util.hpp"

namespace mtrank::models {

using io::get_optional;
using io::get_required;
using io::json;

const char* interest_kind_name(InterestKind k) {
  switch (k) {
    case InterestKind::din: return "din";
    case InterestKind::transformer: return "transformer";
    case InterestKind::gru: return "gru";
    case InterestKind::sim: return "sim";
  }
  return "?";
}

namespace {

int sequence_index(const data::FeatureSchema& s, const std::string& name) {
  for (std::size_t j = 0; j < s.sequences.size(); ++j)
    if (s.sequences[j].name == name) return static_cast<int>(j);
  return -1;
}
int dense_index(const data::FeatureSchema& s, const std::string& name) {
  for (std::size_t j = 0; j < s.dense.size(); ++j)
    if (s.dense[j].name == name) return static_cast<int>(j);
  return -1;
}
Index sequence_dim(const data::FeatureSchema& s, std::size_t j) {
  const auto& f = s.sequences[j];
  return f.table.empty() ? f.dim : s.sparse[static_cast<std::size_t>(s.sparse_index(f.table))].dim;
}

FeatureEmbedderOptions with_external(FeatureEmbedderOptions emb, const InterestModelOptions& opt) {
  for (const auto& u : opt.units)
    for (const auto& f : u.fields)
      if (std::find(emb.external_sequences.begin(), emb.external_sequences.end(), f) == emb.external_sequences.end())
        emb.external_sequences.push_back(f);
  return emb;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// InterestUnit

InterestUnit::InterestUnit(ParameterArena& arena, const FeatureEmbedder<float>& emb, InterestUnitOptions opt)
    : opt_(std::move(opt)), emb_(&emb) {
  const auto& schema = emb.schema();
  const std::string what = "interest unit '" + opt_.name + "'";
  require(!opt_.fields.empty(), what, ": fields is empty");
  for (const auto& f : opt_.fields) {
    const int j = sequence_index(schema, f);
    require(j >= 0, what, ": '", f, "' is not a sequence field of the schema");
    require(emb.sequence_external(static_cast<std::size_t>(j)), what, ": sequence '", f,
            "' must be an external sequence of the embedder");
    seq_.push_back(static_cast<std::size_t>(j));
    field_off_.push_back(d_);
    field_dim_.push_back(emb.sequence_dim(static_cast<std::size_t>(j)));
    d_ += field_dim_.back();
  }
  Index qd = 0;
  for (const auto& q : opt_.query) {
    const int i = schema.sparse_index(q);
    require(i >= 0, what, ": query field '", q, "' is not a sparse field of the schema");
    const Index w = schema.sparse[static_cast<std::size_t>(i)].dim;
    query_cols_.push_back({emb.sparse_offset(static_cast<std::size_t>(i)), w});
    qd += w;
  }
  require(qd == d_, what, ": query width ", qd, " != behaviour width ", d_, " (sum of the fields' embedding widths)");
  max_len_ = opt_.max_len > 0 ? opt_.max_len : schema.sequences[seq_[0]].max_len;
  require(max_len_ > 0, what, ": max_len must be > 0");
  const std::string prefix = "interest." + opt_.name;
  switch (opt_.kind) {
    case InterestKind::din: {
      blocks::DinAttentionOptions o = opt_.din;
      o.dim = d_;
      o.max_len = 0;  // truncation happens when the padded batch is built
      din_ = blocks::DinAttention<float>(arena, prefix, o);
      out_ = d_;
      break;
    }
    case InterestKind::transformer: {
      nn::TransformerEncoderOptions o = opt_.transformer;
      o.layer.d_model = d_;
      o.max_len = max_len_;
      require(d_ % o.layer.nhead == 0, what, ": behaviour width ", d_, " is not divisible by heads ", o.layer.nhead);
      enc_ = nn::TransformerEncoder<float>(arena, prefix + ".encoder", o);
      target_ = nn::TargetAttention<float>(arena, prefix + ".target", {.embed_dim = d_, .num_heads = opt_.heads});
      out_ = d_;
      break;
    }
    case InterestKind::gru:
      gru_ = nn::Gru<float>(arena, prefix + ".gru", {.input = d_, .hidden = d_});
      target_ = nn::TargetAttention<float>(arena, prefix + ".target", {.embed_dim = d_, .num_heads = opt_.heads});
      out_ = d_;
      break;
    case InterestKind::sim: {
      gsu_ = std::make_unique<blocks::GeneralSearchUnit>(blocks::GeneralSearchUnitOptions{.top_k = opt_.top_k});
      blocks::ExactSearchUnitOptions o = opt_.esu;
      o.embed_dim = d_;
      esu_ = blocks::ExactSearchUnit<float>(arena, prefix + ".esu", o);
      out_ = esu_.out_features();
      if (opt_.search == SearchKind::hard) {
        category_seq_ = sequence_index(schema, opt_.category_field);
        require(category_seq_ >= 0, what, ": category_field '", opt_.category_field, "' is not a sequence field");
        candidate_sparse_ = schema.sparse_index(opt_.candidate_field);
        require(candidate_sparse_ >= 0, what, ": candidate_field '", opt_.candidate_field, "' is not a sparse field");
      }
      break;
    }
  }
}

ConstMat InterestUnit::forward(const data::Batch& batch, ConstMat x, Workspace& ws, const Context& ctx) const {
  const auto& schema = emb_->schema();
  const Index B = batch.size;
  require(batch.sequences.size() == schema.sequences.size(), "batch: ", batch.sequences.size(),
          " sequence fields, expected ", schema.sequences.size());
  auto check = [&](std::size_t j) -> const data::SequenceColumn& {
    const auto& col = batch.sequences[j];
    const std::string& name = schema.sequences[j].name;
    require(static_cast<Index>(col.offsets.size()) == B + 1, "sequence '", name, "': offsets has ", col.offsets.size(),
            " entries, expected batch size + 1 = ", B + 1);
    for (Index b = 0; b < B; ++b) {
      const std::int64_t a = col.offsets[b], e = col.offsets[b + 1];
      if (a < 0 || e < a || e > static_cast<std::int64_t>(col.ids.size()))
        fail("sequence '", name, "': offsets [", a, ", ", e, ") of sample ", b, " invalid for ", col.ids.size(), " ids");
    }
    return col;
  };
  const std::size_t F = seq_.size();
  const data::SequenceColumn& c0 = check(seq_[0]);
  for (std::size_t f = 1; f < F; ++f) check(seq_[f]);
  if (category_seq_ >= 0) check(static_cast<std::size_t>(category_seq_));

  ws.batch = B;
  ws.lengths.assign(static_cast<std::size_t>(B), 0);
  Index L = 1;  // at least one (padding) row per sample, so an all-empty batch has a valid layout
  for (Index b = 0; b < B; ++b) {
    const Index len = c0.length(b);
    auto aligned = [&](std::size_t j) {
      const Index lj = batch.sequences[j].length(b);
      if (lj != len)
        fail("interest unit '", opt_.name, "': sequence '", schema.sequences[j].name, "' has ", lj, " items in sample ",
             b, " but '", opt_.fields[0], "' has ", len, " (the unit's sequences must be aligned)");
    };
    for (std::size_t f = 1; f < F; ++f) aligned(seq_[f]);
    if (category_seq_ >= 0) aligned(static_cast<std::size_t>(category_seq_));
    const Index n = std::min(len, max_len_);  // keep the most recent max_len items
    ws.lengths[b] = n;
    L = std::max(L, n);
  }
  ws.padded = L;
  ws.rows.resize(F);
  for (std::size_t f = 0; f < F; ++f) {
    const auto& col = batch.sequences[seq_[f]];
    auto& rows = ws.rows[f];
    rows.assign(static_cast<std::size_t>(B * L), -1);
    for (Index b = 0; b < B; ++b) {
      const Index n = ws.lengths[b], first = col.offsets[b + 1] - n;
      for (Index t = 0; t < n; ++t) rows[b * L + t] = emb_->sequence_row_of(seq_[f], col.ids[first + t]);
    }
  }
  const bool need_gaps = opt_.kind == InterestKind::sim ||
                         (opt_.kind == InterestKind::transformer && opt_.transformer.position == nn::PositionKind::time_gap);
  if (need_gaps) {
    ws.gaps.assign(static_cast<std::size_t>(B * L), 0);
    const bool timed = !c0.times.empty();
    if (timed)
      require(c0.times.size() == c0.ids.size(), "sequence '", opt_.fields[0], "': times has ", c0.times.size(),
              " entries but ids has ", c0.ids.size());
    for (Index b = 0; b < B; ++b) {
      const Index n = ws.lengths[b], first = c0.offsets[b + 1] - n;
      for (Index t = 0; t < n; ++t) {
        if (!timed) {
          ws.gaps[b * L + t] = n - 1 - t;
          continue;
        }
        const float v = c0.times[static_cast<std::size_t>(first + t)];
        if (!std::isfinite(v) || v < 0)
          fail("sequence '", opt_.fields[0], "': times[", first + t, "] = ", v, " (expected a finite gap >= 0)");
        ws.gaps[b * L + t] = static_cast<std::int64_t>(std::llround(double(v) * opt_.time_scale));
      }
    }
  }
  Mat q = ensure(ws.query, B, d_);
  for (Index b = 0; b < B; ++b) {
    float* qb = q.row(b);
    for (const auto& [off, w] : query_cols_) {
      std::memcpy(qb, x.row(b) + off, sizeof(float) * w);
      qb += w;
    }
  }
  const bool full_keys = opt_.kind != InterestKind::sim || opt_.search == SearchKind::soft;
  if (full_keys) fill_keys(ws, nullptr, B * L, ensure(ws.keys, B * L, d_));
  switch (opt_.kind) {
    case InterestKind::din: return din_.forward(q, ws.keys.matrix(), ws.lengths, ws.din, ctx);
    case InterestKind::transformer: {
      ConstMat enc = enc_.forward(ws.keys.matrix(), ws.lengths, ws.enc, ctx,
                                  opt_.transformer.position == nn::PositionKind::time_gap
                                      ? std::span<const std::int64_t>(ws.gaps)
                                      : std::span<const std::int64_t>{});
      return target_.forward(q, enc, enc_.windows(ws.enc), ws.target, ctx);
    }
    case InterestKind::gru: {
      ConstMat states = gru_.forward(ws.keys.matrix(), ws.lengths, ws.gru, ctx);
      return target_.forward(q, states, ws.lengths, ws.target, ctx);
    }
    case InterestKind::sim: {
      if (opt_.search == SearchKind::hard) {
        const auto& cc = batch.sequences[static_cast<std::size_t>(category_seq_)];
        ws.categories.assign(static_cast<std::size_t>(B * L), -1);
        for (Index b = 0; b < B; ++b) {
          const Index n = ws.lengths[b], first = cc.offsets[b + 1] - n;
          for (Index t = 0; t < n; ++t) ws.categories[b * L + t] = cc.ids[first + t];
        }
        const Index ns = static_cast<Index>(schema.sparse.size());
        ws.cand_category.resize(static_cast<std::size_t>(B));
        for (Index b = 0; b < B; ++b) ws.cand_category[b] = batch.sparse[b * ns + candidate_sparse_];
        gsu_->hard_search(ws.categories, ws.lengths, ws.cand_category, ws.sel);
        fill_keys(ws, &ws.sel.index, B * ws.sel.k, ensure(ws.sel_keys, B * ws.sel.k, d_));
      } else {
        gsu_->soft_search<float>(ws.keys.matrix(), ws.lengths, q, ws.sel);
        blocks::gather_selected<float>(ws.keys.matrix(), L, ws.sel, ws.sel_keys);
      }
      blocks::gather_selected_ids(ws.gaps, L, ws.sel, ws.sel_gaps);
      return esu_.forward(q, ws.sel_keys.matrix(), ws.sel_gaps, ws.sel.count, ws.esu, ctx);
    }
  }
  fail("interest unit: unknown kind");
}

void InterestUnit::fill_keys(const Workspace& ws, const std::vector<std::int64_t>* selected, Index rows_out,
                             Mat keys) const {
  const Index L = ws.padded;
  const Index K = selected ? rows_out / std::max<Index>(ws.batch, 1) : L;
  for (Index r = 0; r < rows_out; ++r) {
    float* dst = keys.row(r);
    Index pos = r;  // padded row b*L + t
    if (selected) {
      const std::int64_t t = (*selected)[static_cast<std::size_t>(r)];
      pos = t < 0 ? -1 : (r / K) * L + t;
    }
    for (std::size_t f = 0; f < seq_.size(); ++f) {
      const Index row = pos < 0 ? -1 : ws.rows[f][static_cast<std::size_t>(pos)];
      float* d = dst + field_off_[f];
      if (row < 0) std::memset(d, 0, sizeof(float) * field_dim_[f]);
      else std::memcpy(d, emb_->sequence_table(seq_[f]).value + row * field_dim_[f], sizeof(float) * field_dim_[f]);
    }
  }
}

void InterestUnit::scatter_keys(ConstMat dkeys, const Workspace& ws, const blocks::Selection* sel) const {
  const Index L = ws.padded;
  for (Index r = 0; r < dkeys.rows; ++r) {
    Index pos = r;
    if (sel) {
      const std::int64_t t = sel->index[static_cast<std::size_t>(r)];
      pos = t < 0 ? -1 : (r / sel->k) * L + t;
    }
    if (pos < 0) continue;
    const float* g = dkeys.row(r);
    for (std::size_t f = 0; f < seq_.size(); ++f) {
      const Index row = ws.rows[f][static_cast<std::size_t>(pos)];
      if (row < 0) continue;
      float* dst = emb_->sequence_table(seq_[f]).sparse_grad.row(row);
      for (Index c = 0; c < field_dim_[f]; ++c) dst[c] += g[field_off_[f] + c];
    }
  }
}

void InterestUnit::backward(ConstMat dy, Workspace& ws, Mat dx) const {
  ConstMat dq, dkeys;
  const blocks::Selection* sel = nullptr;
  switch (opt_.kind) {
    case InterestKind::din: {
      auto g = din_.backward(dy, ws.din, true);
      dq = g.query;
      dkeys = g.keys;
      break;
    }
    case InterestKind::transformer: {
      auto g = target_.backward(dy, ws.target, true);
      dq = g.candidate;
      dkeys = enc_.backward(g.sequence, ws.enc, true);
      break;
    }
    case InterestKind::gru: {
      auto g = target_.backward(dy, ws.target, true);
      dq = g.candidate;
      dkeys = gru_.backward(g.sequence, ConstMat{}, ws.gru, true);
      break;
    }
    case InterestKind::sim: {
      auto g = esu_.backward(dy, ws.esu, true);
      dq = g.candidate;
      dkeys = g.behaviours;
      sel = &ws.sel;
      break;
    }
  }
  scatter_keys(dkeys, ws, sel);
  for (Index b = 0; b < dq.rows; ++b) {
    const float* g = dq.row(b);
    for (const auto& [off, w] : query_cols_) {
      float* d = dx.row(b) + off;
      for (Index c = 0; c < w; ++c) d[c] += g[c];
      g += w;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// InterestFrontEnd

InterestFrontEnd::InterestFrontEnd(ParameterArena& arena, const data::FeatureSchema& schema, FeatureEmbedderOptions emb,
                                   const InterestModelOptions& opt)
    : opt_(opt), embedder_(arena, "", schema, with_external(std::move(emb), opt)) {
  require(!opt_.units.empty(), "interest model: no sequence units configured");
  std::set<std::string> names;
  for (const auto& u : opt_.units) {
    require(names.insert(u.name).second, "interest model: duplicate unit name '", u.name, "'");
    units_.emplace_back(arena, embedder_, u);
  }
  const Index W = embedder_.out_features();
  std::vector<bool> main(static_cast<std::size_t>(W), true);
  for (const auto& f : opt_.bias.fields) {
    std::pair<Index, Index> cols;
    if (const int i = schema.sparse_index(f); i >= 0)
      cols = {embedder_.sparse_offset(static_cast<std::size_t>(i)), schema.sparse[static_cast<std::size_t>(i)].dim};
    else if (const int j = dense_index(schema, f); j >= 0)
      cols = {embedder_.dense_offset() + j, 1};
    else
      fail("interest model: bias field '", f, "' is neither a sparse nor a dense field of the schema");
    bias_cols_.push_back(cols);
    bias_width_ += cols.second;
    if (opt_.bias.exclusive)
      for (Index c = cols.first; c < cols.first + cols.second; ++c) main[static_cast<std::size_t>(c)] = false;
  }
  for (Index c = 0; c < W;) {
    if (!main[static_cast<std::size_t>(c)]) {
      ++c;
      continue;
    }
    Index e = c;
    while (e < W && main[static_cast<std::size_t>(e)]) ++e;
    main_cols_.push_back({c, e - c});
    width_ += e - c;
    c = e;
  }
  for (const auto& u : units_) {
    unit_off_.push_back(width_);
    width_ += u.out_features();
  }
  if (opt_.bias.enabled()) {
    nn::MlpOptions o{.in = bias_width_, .layers = opt_.bias.hidden, .activation = opt_.bias.activation,
                     .activate_last = false};
    o.layers.push_back(opt_.bias.per_task ? schema.num_tasks() : 1);
    bias_.emplace(arena, "bias_net", o);
  }
}

ConstMat InterestFrontEnd::forward(const data::Batch& batch, Workspace& ws, const Context& ctx) const {
  ConstMat x = embedder_.forward(batch, ws.emb, ctx);
  const Index B = x.rows;
  Mat h = ensure(ws.h, B, width_);
  Index col = 0;
  for (const auto& [off, w] : main_cols_) {
    copy(x.col_block(off, w), h.col_block(col, w));
    col += w;
  }
  ws.units.resize(units_.size());
  for (std::size_t u = 0; u < units_.size(); ++u) {
    ConstMat y = units_[u].forward(batch, x, ws.units[u], ctx);
    copy(y, h.col_block(unit_off_[u], units_[u].out_features()));
  }
  return h;
}

ConstMat InterestFrontEnd::bias_forward(Workspace& ws, const Context& ctx) const {
  require(bias_.has_value(), "interest model: no bias network configured");
  const ConstMat x = ws.emb.x.matrix();
  Mat z = ensure(ws.bias_in, x.rows, bias_width_);
  Index col = 0;
  for (const auto& [off, w] : bias_cols_) {
    copy(x.col_block(off, w), z.col_block(col, w));
    col += w;
  }
  return bias_->forward(z, ws.bias, ctx);
}

void InterestFrontEnd::backward(ConstMat dh, ConstMat dbias, Workspace& ws) const {
  const Index B = dh.rows;
  require_shape(dh, ws.h.dim(0), width_, "interest model backward dh");
  Mat dx = ensure(ws.dx, B, embedder_.out_features());
  ws.dx.zero();
  Index col = 0;
  for (const auto& [off, w] : main_cols_) {
    blocks::add_into(dh.col_block(col, w), dx.col_block(off, w));
    col += w;
  }
  for (std::size_t u = 0; u < units_.size(); ++u)
    units_[u].backward(dh.col_block(unit_off_[u], units_[u].out_features()), ws.units[u], dx);
  if (dbias.rows > 0) {
    ConstMat dz = bias_->backward(dbias, ws.bias, true);
    col = 0;
    for (const auto& [off, w] : bias_cols_) {
      blocks::add_into(dz.col_block(col, w), dx.col_block(off, w));
      col += w;
    }
  }
  embedder_.backward(dx, ws.emb);
}

// ---------------------------------------------------------------------------------------------
// JSON

bool is_interest_type(const std::string& type) { return type == "din" || type == "dmt" || type == "sim"; }

std::string default_interest_backbone(const std::string& type) { return type == "dmt" ? "mmoe" : "shared_bottom"; }

namespace {

std::vector<std::string> string_list(const json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  std::vector<std::string> v;
  if (it == j.end()) return v;
  if (it->is_string()) return {it->get<std::string>()};
  if (!it->is_array()) fail(path, ".", key, ": expected a field name or an array of field names");
  for (auto& e : *it) {
    if (!e.is_string()) fail(path, ".", key, ": expected an array of field names, got ", it->dump());
    v.push_back(e.get<std::string>());
  }
  return v;
}

std::vector<Index> positive_list(const json& j, const char* key, const std::string& path, std::vector<Index> fallback) {
  return io::get_positive_list(j, key, path, std::move(fallback));
}

Index positive(const json& j, const char* key, const std::string& path, Index fallback) {
  const Index v = get_optional<Index>(j, key, path, "a positive integer", fallback);
  if (v <= 0) fail(path, ".", key, ": expected a positive integer, got ", v);
  return v;
}

InterestUnitOptions parse_unit(const json& s, const std::string& sp, InterestKind kind,
                               const std::vector<std::string>& model_query, const data::FeatureSchema& schema) {
  InterestUnitOptions u;
  if (!s.is_object()) fail(sp, ": expected an object");
  const std::string k = get_optional<std::string>(s, "kind", sp, "\"din\", \"transformer\", \"gru\" or \"sim\"",
                                                  interest_kind_name(kind));
  if (k == "din") u.kind = InterestKind::din;
  else if (k == "transformer") u.kind = InterestKind::transformer;
  else if (k == "gru") u.kind = InterestKind::gru;
  else if (k == "sim") u.kind = InterestKind::sim;
  else fail(sp, ".kind: expected \"din\", \"transformer\", \"gru\" or \"sim\", got \"", k, "\"");
  switch (u.kind) {
    case InterestKind::din:
      io::reject_unknown_keys(s, {"name", "fields", "query", "kind", "max_len", "time_scale", "hidden", "activation",
                                  "softmax", "normalize_by_length", "fused"},
                              sp);
      break;
    case InterestKind::transformer:
      io::reject_unknown_keys(s, {"name", "fields", "query", "kind", "max_len", "time_scale", "layers", "heads", "ff",
                                  "dropout", "position", "time_buckets", "time_base"},
                              sp);
      break;
    case InterestKind::gru:
      io::reject_unknown_keys(s, {"name", "fields", "query", "kind", "max_len", "time_scale", "heads"}, sp);
      break;
    case InterestKind::sim:
      io::reject_unknown_keys(s, {"name", "fields", "query", "kind", "max_len", "time_scale", "search", "top_k",
                                  "category_field", "candidate_field", "heads", "time_buckets", "time_base",
                                  "time_mode", "time_dim"},
                              sp);
      break;
  }
  u.fields = string_list(s, "fields", sp);
  if (u.fields.empty()) fail(sp, ".fields: missing (expected the names of one or more aligned sequence fields)");
  Index d = 0;
  for (const auto& f : u.fields) {
    const int j = sequence_index(schema, f);
    if (j < 0) fail(sp, ".fields: '", f, "' is not a sequence field of the schema");
    d += sequence_dim(schema, static_cast<std::size_t>(j));
  }
  u.name = get_optional<std::string>(s, "name", sp, "a name", u.fields[0]);
  if (u.name.empty()) fail(sp, ".name: expected a non-empty name");
  u.query = string_list(s, "query", sp);
  if (u.query.empty()) u.query = model_query;
  if (u.query.empty()) {
    // Default: the candidate fields whose tables the sequences share (click_seq -> item_id).
    for (const auto& f : u.fields) {
      const auto& spec = schema.sequences[static_cast<std::size_t>(sequence_index(schema, f))];
      if (spec.table.empty())
        fail(sp, ".query: missing, and sequence '", f, "' has its own table (name the candidate's sparse fields)");
      u.query.push_back(spec.table);
    }
  }
  Index qd = 0;
  for (const auto& q : u.query) {
    const int i = schema.sparse_index(q);
    if (i < 0) fail(sp, ".query: '", q, "' is not a sparse field of the schema");
    qd += schema.sparse[static_cast<std::size_t>(i)].dim;
  }
  if (qd != d)
    fail(sp, ".query: the candidate's width ", qd, " != the behaviour width ", d,
         " (the embedding widths of the query fields must sum to those of the sequence fields)");
  u.max_len = get_optional<Index>(s, "max_len", sp, "a positive integer", 0);
  if (s.contains("max_len") && u.max_len <= 0) fail(sp, ".max_len: expected a positive integer, got ", u.max_len);
  u.time_scale = get_optional<double>(s, "time_scale", sp, "a positive number", 24.0);
  if (!(u.time_scale > 0)) fail(sp, ".time_scale: expected a positive number, got ", u.time_scale);
  u.heads = positive(s, "heads", sp, 1);
  if ((u.kind == InterestKind::transformer || u.kind == InterestKind::gru || u.kind == InterestKind::sim) && d % u.heads)
    fail(sp, ".heads: the behaviour width ", d, " is not divisible by ", u.heads);
  switch (u.kind) {
    case InterestKind::din: {
      u.din.hidden = positive_list(s, "hidden", sp, {80, 40});
      const std::string a = get_optional<std::string>(s, "activation", sp, "\"prelu\" or \"dice\"", "prelu");
      if (a == "prelu") u.din.activation = nn::ActivationKind::prelu;
      else if (a == "dice") u.din.activation = nn::ActivationKind::dice;
      else fail(sp, ".activation: expected \"prelu\" or \"dice\", got \"", a, "\"");
      u.din.softmax = get_optional<bool>(s, "softmax", sp, "a boolean", false);
      u.din.normalize_by_length = get_optional<bool>(s, "normalize_by_length", sp, "a boolean", false);
      u.din.fused = get_optional<bool>(s, "fused", sp, "a boolean", true);
      break;
    }
    case InterestKind::transformer: {
      auto& t = u.transformer;
      t.num_layers = positive(s, "layers", sp, 1);
      t.layer.nhead = u.heads;
      t.layer.dim_feedforward = positive(s, "ff", sp, 4 * d);
      t.layer.dropout = get_optional<double>(s, "dropout", sp, "a number in [0, 1)", 0.0);
      if (!(t.layer.dropout >= 0 && t.layer.dropout < 1)) fail(sp, ".dropout: expected a number in [0, 1), got ", t.layer.dropout);
      const std::string pos = get_optional<std::string>(s, "position", sp, "\"learned\", \"time_gap\" or \"none\"", "learned");
      if (pos == "learned") t.position = nn::PositionKind::learned;
      else if (pos == "time_gap") t.position = nn::PositionKind::time_gap;
      else if (pos == "none") t.position = nn::PositionKind::none;
      else fail(sp, ".position: expected \"learned\", \"time_gap\" or \"none\", got \"", pos, "\"");
      t.time_buckets = positive(s, "time_buckets", sp, 16);
      t.time_base = get_optional<double>(s, "time_base", sp, "a number > 1", 2.0);
      if (!(t.time_base > 1)) fail(sp, ".time_base: expected a number > 1, got ", t.time_base);
      break;
    }
    case InterestKind::gru: break;
    case InterestKind::sim: {
      const std::string search = get_optional<std::string>(s, "search", sp, "\"hard\" or \"soft\"", "hard");
      if (search == "hard") u.search = SearchKind::hard;
      else if (search == "soft") u.search = SearchKind::soft;
      else fail(sp, ".search: expected \"hard\" or \"soft\", got \"", search, "\"");
      u.top_k = positive(s, "top_k", sp, 50);
      u.esu.num_heads = u.heads;
      u.esu.time_buckets = positive(s, "time_buckets", sp, 16);
      u.esu.time_base = get_optional<double>(s, "time_base", sp, "a number > 1", 2.0);
      if (!(u.esu.time_base > 1)) fail(sp, ".time_base: expected a number > 1, got ", u.esu.time_base);
      const std::string tm = get_optional<std::string>(s, "time_mode", sp, "\"add\" or \"concat\"", "add");
      if (tm == "add") u.esu.time_mode = blocks::TimeMode::add;
      else if (tm == "concat") u.esu.time_mode = blocks::TimeMode::concat;
      else fail(sp, ".time_mode: expected \"add\" or \"concat\", got \"", tm, "\"");
      u.esu.time_dim = get_optional<Index>(s, "time_dim", sp, "a positive integer", tm == "concat" ? 4 : 0);
      if (tm == "concat" && u.esu.time_dim <= 0) fail(sp, ".time_dim: expected a positive integer, got ", u.esu.time_dim);
      if (tm == "concat" && (d + u.esu.time_dim) % u.heads)
        fail(sp, ".heads: the key width ", d + u.esu.time_dim, " (behaviour + time_dim) is not divisible by ", u.heads);
      if (u.search == SearchKind::hard) {
        u.category_field = get_optional<std::string>(s, "category_field", sp, "a sequence field name", "");
        u.candidate_field = get_optional<std::string>(s, "candidate_field", sp, "a sparse field name", "");
        if (u.category_field.empty()) {
          if (u.fields.size() < 2)
            fail(sp, ".category_field: missing (hard search needs the sequence of behaviour categories)");
          u.category_field = u.fields[1];
        }
        const int cj = sequence_index(schema, u.category_field);
        if (cj < 0) fail(sp, ".category_field: '", u.category_field, "' is not a sequence field of the schema");
        if (u.candidate_field.empty()) u.candidate_field = schema.sequences[static_cast<std::size_t>(cj)].table;
        if (u.candidate_field.empty())
          fail(sp, ".candidate_field: missing (the sparse field holding the candidate's category)");
        if (schema.sparse_index(u.candidate_field) < 0)
          fail(sp, ".candidate_field: '", u.candidate_field, "' is not a sparse field of the schema");
      } else if (s.contains("category_field") || s.contains("candidate_field")) {
        fail(sp, ".category_field/candidate_field: only used by search \"hard\"");
      }
      break;
    }
  }
  return u;
}

}  // namespace

InterestModelOptions parse_interest_model(const json& m, const std::string& p, const std::string& type,
                                          const data::FeatureSchema& schema) {
  InterestModelOptions o;
  const InterestKind kind = type == "dmt" ? InterestKind::transformer : type == "sim" ? InterestKind::sim : InterestKind::din;
  const std::vector<std::string> query = string_list(m, "query", p);
  for (const auto& q : query)
    if (schema.sparse_index(q) < 0) fail(p, ".query: '", q, "' is not a sparse field of the schema");
  auto it = m.find("sequences");
  if (it == m.end() || !it->is_array() || it->empty())
    fail(p, ".sequences: expected a non-empty array of sequence units (e.g. [{\"fields\": [\"click_seq\"]}])");
  std::set<std::string> names, used;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const std::string sp = p + ".sequences[" + std::to_string(i) + "]";
    InterestUnitOptions u = parse_unit((*it)[i], sp, kind, query, schema);
    if (!names.insert(u.name).second) fail(sp, ".name: duplicate unit name '", u.name, "'");
    for (const auto& f : u.fields)
      if (!used.insert(f).second) fail(sp, ".fields: sequence '", f, "' is already used by another unit");
    o.units.push_back(std::move(u));
  }
  if (auto b = m.find("bias_net"); b != m.end()) {
    const std::string bp = p + ".bias_net";
    io::reject_unknown_keys(*b, {"fields", "hidden", "activation", "per_task", "exclusive"}, bp);
    o.bias.fields = string_list(*b, "fields", bp);
    if (o.bias.fields.empty()) fail(bp, ".fields: expected one or more sparse or dense field names");
    for (const auto& f : o.bias.fields) {
      if (schema.sparse_index(f) < 0 && dense_index(schema, f) < 0)
        fail(bp, ".fields: '", f, "' is neither a sparse nor a dense field of the schema");
      for (const auto& u : o.units)
        if (std::find(u.query.begin(), u.query.end(), f) != u.query.end() &&
            get_optional<bool>(*b, "exclusive", bp, "a boolean", true))
          fail(bp, ".fields: '", f, "' is a query field of unit '", u.name,
               "'; an exclusive bias field cannot also feed the main network (set exclusive: false)");
    }
    auto h = b->find("hidden");
    if (h != b->end() && h->is_array() && h->empty()) o.bias.hidden = {};
    else o.bias.hidden = positive_list(*b, "hidden", bp, {16});
    o.bias.activation = nn::parse_activation(get_optional<std::string>(*b, "activation", bp, "an activation name", "relu"));
    o.bias.per_task = get_optional<bool>(*b, "per_task", bp, "a boolean", false);
    o.bias.exclusive = get_optional<bool>(*b, "exclusive", bp, "a boolean", true);
  }
  return o;
}

}  // namespace mtrank::models
