#include "mtrank/models/co_action_features.hpp"

#include <cstring>

#include <nlohmann/json.hpp>

#include "mtrank/io/json_util.hpp"
#include "mtrank/nn/embedding.hpp"

namespace mtrank::models {

template <class T>
CoActionFeatures<T>::CoActionFeatures(ParameterArenaT<T>& arena, std::string_view prefix,
                                      const data::FeatureSchema& schema, CoActionFeatureOptions opt)
    : opt_(std::move(opt)) {
  require(opt_.enabled(), "co_action.item_field: missing (expected a sparse field name)");
  require(opt_.dim > 0, "co_action.dim: expected a positive integer, got ", opt_.dim);
  require(!opt_.inputs.empty(), "co_action.inputs: expected at least one sparse or sequence field");
  require(opt_.init_std > 0, "co_action.init_std: expected a positive number, got ", opt_.init_std);
  opt_.unit.in = opt_.dim;
  unit_ = blocks::CoActionUnit<T>(opt_.unit);
  const int item = schema.sparse_index(opt_.item_field);
  if (item < 0) fail("co_action.item_field: \"", opt_.item_field, "\" is not a sparse field of the schema");
  item_field_ = static_cast<std::size_t>(item);
  item_vocab_ = schema.sparse[item_field_].vocab;
  item_hash_ = schema.sparse[item_field_].hash;
  item_oov_ = schema.sparse[item_field_].oov_row;
  num_sparse_ = static_cast<Index>(schema.sparse.size());
  const Init init = Init::normal(0.0, opt_.init_std);
  item_table_ = &arena.add(join_name(prefix, "co_action." + opt_.item_field + ".weight"),
                           Shape{item_vocab_, unit_.param_width()}, {.init = init, .sparse = true});
  for (const auto& name : opt_.inputs) {
    if (name == opt_.item_field) fail("co_action.inputs: \"", name, "\" is the item field itself");
    for (const auto& in : inputs_)
      if (in.name == name) fail("co_action.inputs: \"", name, "\" is listed twice");
    Input in;
    in.name = name;
    if (const int s = schema.sparse_index(name); s >= 0) {
      in.field = static_cast<std::size_t>(s);
      in.vocab = schema.sparse[in.field].vocab;
      in.hash = schema.sparse[in.field].hash;
      in.oov_row = schema.sparse[in.field].oov_row;
    } else {
      bool found = false;
      for (std::size_t q = 0; q < schema.sequences.size(); ++q)
        if (schema.sequences[q].name == name) {
          const auto& sp = schema.sequences[q];
          in.sequence = true;
          in.field = q;
          in.max_len = sp.max_len;
          const auto t = schema.sequence_table(q);  // ids live in the shared sparse field's id space
          in.vocab = t.vocab;
          in.hash = t.hash;
          in.oov_row = t.oov_row;
          found = true;
        }
      if (!found) fail("co_action.inputs: \"", name, "\" is neither a sparse nor a sequence field of the schema");
    }
    in.table = &arena.add(join_name(prefix, "co_action." + name + ".weight"), Shape{in.vocab, opt_.dim},
                          {.init = init, .sparse = true});
    inputs_.push_back(std::move(in));
  }
}

namespace {
Index row_for(std::int64_t id, Index vocab, bool hash, Index oov_row, const std::string& name) {
  return nn::map_embedding_id(id, vocab, hash, name, "co_action input", oov_row);
}
}  // namespace

template <class T>
void CoActionFeatures<T>::forward(const data::Batch& batch, MatrixView<T> out, Workspace& ws) const {
  const Index B = batch.size, pw = unit_.param_width(), d = opt_.dim, w = unit_.out_features();
  require_shape(out, B, out_features(), "co-action features output");
  require(static_cast<Index>(batch.sparse.size()) == B * num_sparse_, "co_action: batch has ", batch.sparse.size(),
          " sparse ids, expected ", B, " x ", num_sparse_);
  ws.item_rows.resize(static_cast<std::size_t>(B));
  MatrixView<T> p = ensure(ws.p, B, pw);
  for (Index b = 0; b < B; ++b) {
    const Index r = row_for(batch.sparse[b * num_sparse_ + item_field_], item_vocab_, item_hash_, item_oov_, opt_.item_field);
    ws.item_rows[b] = r;
    std::memcpy(p.row(b), item_table_->value + r * pw, sizeof(T) * pw);
  }
  const std::size_t n = inputs_.size();
  ws.x.resize(n);
  ws.rows.resize(n);
  ws.lengths.resize(n);
  ws.units.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const Input& in = inputs_[i];
    auto& rows = ws.rows[i];
    auto& lens = ws.lengths[i];
    Index L = 1;
    if (!in.sequence) {
      rows.resize(static_cast<std::size_t>(B));
      lens.clear();
      for (Index b = 0; b < B; ++b)
        rows[b] = row_for(batch.sparse[b * num_sparse_ + in.field], in.vocab, in.hash, in.oov_row, in.name);
    } else {
      require(in.field < batch.sequences.size(), "co_action: batch has ", batch.sequences.size(),
              " sequence fields, '", in.name, "' is field ", in.field);
      const auto& col = batch.sequences[in.field];
      require(static_cast<Index>(col.offsets.size()) == B + 1, "co_action: sequence '", in.name, "': offsets has ",
              col.offsets.size(), " entries, expected ", B + 1);
      lens.resize(static_cast<std::size_t>(B));
      for (Index b = 0; b < B; ++b) {
        const std::int64_t a = col.offsets[b], e = col.offsets[b + 1];
        if (a < 0 || e < a || e > static_cast<std::int64_t>(col.ids.size()))
          fail("co_action: sequence '", in.name, "': offsets [", a, ", ", e, ") of sample ", b, " invalid");
        lens[b] = std::min<Index>(static_cast<Index>(e - a), in.max_len);
        L = std::max(L, lens[b]);
      }
      rows.assign(static_cast<std::size_t>(B * L), -1);
      for (Index b = 0; b < B; ++b) {
        const std::int64_t e = col.offsets[b + 1];
        for (Index t = 0; t < lens[b]; ++t)  // the most recent lens[b] ids, oldest first
          rows[b * L + t] = row_for(col.ids[static_cast<std::size_t>(e - lens[b] + t)], in.vocab, in.hash, in.oov_row, in.name);
      }
    }
    MatrixView<T> x = ensure(ws.x[i], B * L, d);
    for (Index r = 0; r < B * L; ++r) {
      if (rows[r] < 0) std::fill(x.row(r), x.row(r) + d, T(0));
      else std::memcpy(x.row(r), in.table->value + rows[r] * d, sizeof(T) * d);
    }
    auto y = unit_.forward(p, x, L, lens, ws.units[i]);
    copy(y, out.col_block(static_cast<Index>(i) * w, w));
  }
}

template <class T>
void CoActionFeatures<T>::backward(MatrixView<const T> dy, Workspace& ws) const {
  const Index B = ws.p.dim(0), pw = unit_.param_width(), d = opt_.dim, w = unit_.out_features();
  require_shape(dy, B, out_features(), "co-action features backward dy");
  MatrixView<T> dp = ensure(ws.dp, B, pw);
  ws.dp.zero();
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    auto& uw = ws.units[i];
    unit_.backward(dy.col_block(static_cast<Index>(i) * w, w), uw);
    const MatrixView<const T> dpi = uw.dp.matrix(), dx = uw.dx.matrix();
    for (Index b = 0; b < B; ++b)
      for (Index c = 0; c < pw; ++c) dp(b, c) += dpi(b, c);
    auto& g = inputs_[i].table->sparse_grad;
    const auto& rows = ws.rows[i];
    for (Index r = 0; r < dx.rows; ++r) {
      if (rows[r] < 0) continue;
      T* gr = g.row(rows[r]);
      for (Index c = 0; c < d; ++c) gr[c] += dx(r, c);
    }
  }
  for (Index b = 0; b < B; ++b) {
    T* gr = item_table_->sparse_grad.row(ws.item_rows[b]);
    for (Index c = 0; c < pw; ++c) gr[c] += dp(b, c);
  }
}

template class CoActionFeatures<float>;
template class CoActionFeatures<double>;

CoActionFeatureOptions parse_co_action(const nlohmann::json& j, const std::string& p, const data::FeatureSchema& schema) {
  using io::get_optional;
  io::reject_unknown_keys(j, {"item_field", "inputs", "dim", "micro_mlp", "orders", "order_independent", "activation",
                              "activate_last", "bias", "concat_layers", "sum_orders", "init_std"},
                          p);
  CoActionFeatureOptions o;
  o.item_field = io::get_required<std::string>(j, "item_field", p, "a sparse field name");
  if (schema.sparse_index(o.item_field) < 0) fail(p, ".item_field: \"", o.item_field, "\" is not a sparse field of the schema");
  auto it = j.find("inputs");
  if (it == j.end() || !it->is_array() || it->empty()) fail(p, ".inputs: expected a non-empty array of field names");
  for (auto& e : *it) {
    if (!e.is_string()) fail(p, ".inputs: expected field names, got ", it->dump());
    const std::string name = e.get<std::string>();
    bool known = schema.sparse_index(name) >= 0;
    for (auto& s : schema.sequences) known = known || s.name == name;
    if (!known) fail(p, ".inputs: \"", name, "\" is neither a sparse nor a sequence field of the schema");
    if (name == o.item_field) fail(p, ".inputs: \"", name, "\" is the item field itself");
    o.inputs.push_back(name);
  }
  o.dim = get_optional<Index>(j, "dim", p, "a positive integer", 4);
  if (o.dim <= 0) fail(p, ".dim: expected a positive integer, got ", o.dim);
  if (auto m = j.find("micro_mlp"); m != j.end()) {
    if (!m->is_array() || m->empty()) fail(p, ".micro_mlp: expected a non-empty array of positive integers");
    o.unit.layers.clear();
    for (auto& e : *m) {
      if (!e.is_number_integer() || e.get<Index>() <= 0)
        fail(p, ".micro_mlp: expected a non-empty array of positive integers, got ", m->dump());
      o.unit.layers.push_back(e.get<Index>());
    }
  }
  o.unit.orders = get_optional<Index>(j, "orders", p, "a positive integer", 1);
  if (o.unit.orders < 1 || o.unit.orders > 8) fail(p, ".orders: expected an integer in [1, 8], got ", o.unit.orders);
  o.unit.order_independent = get_optional<bool>(j, "order_independent", p, "a boolean", false);
  const std::string act = get_optional<std::string>(j, "activation", p, "\"tanh\", \"relu\", \"sigmoid\" or \"identity\"", "tanh");
  if (act == "tanh") o.unit.activation = blocks::MicroActivation::tanh;
  else if (act == "relu") o.unit.activation = blocks::MicroActivation::relu;
  else if (act == "sigmoid") o.unit.activation = blocks::MicroActivation::sigmoid;
  else if (act == "identity") o.unit.activation = blocks::MicroActivation::identity;
  else fail(p, ".activation: expected \"tanh\", \"relu\", \"sigmoid\" or \"identity\", got \"", act, "\"");
  o.unit.activate_last = get_optional<bool>(j, "activate_last", p, "a boolean", false);
  o.unit.bias = get_optional<bool>(j, "bias", p, "a boolean", true);
  o.unit.concat_layers = get_optional<bool>(j, "concat_layers", p, "a boolean", true);
  o.unit.sum_orders = get_optional<bool>(j, "sum_orders", p, "a boolean", false);
  o.init_std = get_optional<double>(j, "init_std", p, "a positive number", 0.1);
  if (!(o.init_std > 0)) fail(p, ".init_std: expected a positive number, got ", o.init_std);
  return o;
}

}  // namespace mtrank::models
