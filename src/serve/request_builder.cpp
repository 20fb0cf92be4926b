#include "mtrank/serve/request_builder.hpp"

#include <cmath>

namespace mtrank::serve {

namespace {

const char* kind_name(FieldValue::Kind k) {
  return k == FieldValue::Kind::integer ? "an integer" : k == FieldValue::Kind::real ? "a floating-point number" : "text";
}

std::int64_t raw_id(const FieldValue& v, Index vocab, bool hash, Index oov_row, const std::string& where) {
  std::int64_t id = 0;
  switch (v.kind()) {
    case FieldValue::Kind::integer:
      if (v.out_of_range()) fail(where, ": id does not fit in a signed 64-bit integer");
      id = v.integer();
      break;
    case FieldValue::Kind::text:
      if (hash) return data::id_from_text(v.text());
      if (!data::canonical_integer_id(v.text(), id))
        fail(where, ": expected an integer id (or its decimal text) for a vocabulary field, got text \"",
             v.text().substr(0, 40), v.text().size() > 40 ? "...\"" : "\"");
      break;
    case FieldValue::Kind::real:
      fail(where, ": expected an integer id", hash ? " or text" : " (or its decimal text)", ", got ", kind_name(v.kind()));
  }
  if (!hash && (id < 0 || id >= vocab) && oov_row < 0)
    fail(where, ": id ", id, " out of range [0, ", vocab, ") (vocabulary size ", vocab, ", no oov_row)");
  return id;
}

}  // namespace

RequestBuilder::RequestBuilder(const Predictor& p) : RequestBuilder(p.schema(), p.serving()) {}

RequestBuilder::RequestBuilder(const data::FeatureSchema& schema, const ServingConfig& serving)
    : schema_(&schema), serving_(&serving) {
  if (!serving.layout_error.empty()) fail("RequestBuilder: ", serving.layout_error);
  clear();
}

void RequestBuilder::clear() {
  r_.clear();
  r_.user_sparse.assign(serving_->layout.user_sparse.size(), 0);
  r_.user_dense.assign(serving_->layout.user_dense.size(), 0.0f);
  r_.sequences.resize(schema_->sequences.size());
  r_.sequence_times.resize(schema_->sequences.size());
  user_set_.assign(r_.user_sparse.size() + r_.user_dense.size(), 0);
  any_cand_scene_ = false;
  cand_scene_.clear();
}

std::int64_t RequestBuilder::id_of(const FieldValue& v, std::size_t f, const std::string& where) const {
  const auto& field = schema_->sparse[f];
  return raw_id(v, field.vocab, field.hash, field.oov_row, where);
}

std::int64_t RequestBuilder::sequence_id_of(const FieldValue& v, std::size_t q, const std::string& where) const {
  const auto t = schema_->sequence_table(q);
  return raw_id(v, t.vocab, t.hash, t.oov_row, where);
}

float RequestBuilder::dense_of(const FieldValue& v, const std::string& where) const {
  double d = 0;
  if (v.kind() == FieldValue::Kind::real) d = v.real();
  else if (v.kind() == FieldValue::Kind::integer && !v.out_of_range()) d = static_cast<double>(v.integer());
  else fail(where, ": expected a number for a dense field, got ", kind_name(v.kind()));
  const float x = static_cast<float>(d);
  if (!std::isfinite(d) || !std::isfinite(x)) fail(where, ": value ", d, " is not a finite float");
  if (std::fabs(d) > serving_->max_abs_dense)
    fail(where, ": value ", d, " is beyond +-", serving_->max_abs_dense, " (serving.max_abs_dense)");
  return x;
}

RequestBuilder& RequestBuilder::set_user(std::string_view name, const FieldValue& value) {
  const RequestLayout& l = serving_->layout;
  const std::string where = "request field '" + std::string(name) + "'";
  for (std::size_t i = 0; i < l.user_sparse.size(); ++i)
    if (schema_->sparse[static_cast<std::size_t>(l.user_sparse[i])].name == name) {
      r_.user_sparse[i] = id_of(value, static_cast<std::size_t>(l.user_sparse[i]), where);
      user_set_[i] = 1;
      return *this;
    }
  for (std::size_t i = 0; i < l.user_dense.size(); ++i)
    if (schema_->dense[static_cast<std::size_t>(l.user_dense[i])].name == name) {
      r_.user_dense[i] = dense_of(value, where);
      user_set_[l.user_sparse.size() + i] = 1;
      return *this;
    }
  for (Index f : l.cand_sparse)
    if (schema_->sparse[static_cast<std::size_t>(f)].name == name) fail(where, ": an item-side field; give it per candidate");
  for (Index f : l.cand_dense)
    if (schema_->dense[static_cast<std::size_t>(f)].name == name) fail(where, ": an item-side field; give it per candidate");
  for (const auto& q : schema_->sequences)
    if (q.name == name) fail(where, ": a sequence field; use set_sequence");
  fail(where, ": no user- or context-side field of that name in the schema");
}

RequestBuilder& RequestBuilder::set_scene(std::int32_t scene) {
  require(scene >= 0 && scene < schema_->num_scenes, "request scene: ", scene, " not in [0, ", schema_->num_scenes, ")");
  r_.scene = scene;
  return *this;
}

RequestBuilder& RequestBuilder::set_sequence(std::string_view name, std::span<const FieldValue> ids,
                                             std::span<const float> times) {
  for (std::size_t q = 0; q < schema_->sequences.size(); ++q) {
    if (schema_->sequences[q].name != name) continue;
    const std::string where = "request sequence '" + std::string(name) + "'";
    require(static_cast<Index>(ids.size()) <= serving_->max_sequence_length, where, ": ", ids.size(), " ids, limit ",
            serving_->max_sequence_length);
    require(times.empty() || times.size() == ids.size(), where, ": ", times.size(), " times for ", ids.size(),
            " ids (expected none or one per id)");
    auto& out = r_.sequences[q];
    out.clear();
    for (std::size_t i = 0; i < ids.size(); ++i) out.push_back(sequence_id_of(ids[i], q, where + "[" + std::to_string(i) + "]"));
    auto& t = r_.sequence_times[q];
    t.clear();
    for (std::size_t i = 0; i < times.size(); ++i) {
      require(std::isfinite(times[i]) && times[i] >= 0.0f, where, ": times[", i, "] = ", times[i],
              " (expected a finite gap >= 0 to the request; negative is in the future)");
      t.push_back(times[i]);
    }
    return *this;
  }
  fail("request sequence '", name, "': no sequence field of that name in the schema");
}

RequestBuilder& RequestBuilder::set_sequence(std::string_view name, std::initializer_list<FieldValue> ids,
                                             std::initializer_list<float> times) {
  return set_sequence(name, std::span<const FieldValue>(ids.begin(), ids.size()),
                      std::span<const float>(times.begin(), times.size()));
}

template <class Pairs>
void RequestBuilder::candidate(const Pairs& fields, std::optional<std::int32_t> scene) {
  const RequestLayout& l = serving_->layout;
  const std::size_t ncs = l.cand_sparse.size(), ncd = l.cand_dense.size();
  const Index i = r_.num_candidates;
  require(i < serving_->max_candidates, "request: more than ", serving_->max_candidates, " candidates");
  const std::string where = "candidate " + std::to_string(i);
  cand_set_.assign(ncs + ncd, 0);
  std::vector<std::int64_t> sparse(ncs, 0);
  std::vector<float> dense(ncd, 0.0f);
  for (const auto& [name, value] : fields) {
    const std::string fw = where + " field '" + std::string(name) + "'";
    bool found = false;
    for (std::size_t k = 0; k < ncs && !found; ++k)
      if (schema_->sparse[static_cast<std::size_t>(l.cand_sparse[k])].name == name) {
        require(!cand_set_[k], fw, ": given twice");
        sparse[k] = id_of(value, static_cast<std::size_t>(l.cand_sparse[k]), fw);
        cand_set_[k] = found = true;
      }
    for (std::size_t k = 0; k < ncd && !found; ++k)
      if (schema_->dense[static_cast<std::size_t>(l.cand_dense[k])].name == name) {
        require(!cand_set_[ncs + k], fw, ": given twice");
        dense[k] = dense_of(value, fw);
        cand_set_[ncs + k] = found = true;
      }
    if (!found) fail(fw, ": not an item-side field (user- and context-side fields go to set_user)");
  }
  for (std::size_t k = 0; k < ncs; ++k)
    require(cand_set_[k], where, ": missing field '", schema_->sparse[static_cast<std::size_t>(l.cand_sparse[k])].name, "'");
  for (std::size_t k = 0; k < ncd; ++k)
    require(cand_set_[ncs + k], where, ": missing field '", schema_->dense[static_cast<std::size_t>(l.cand_dense[k])].name, "'");
  if (scene) require(*scene >= 0 && *scene < schema_->num_scenes, where, ": scene ", *scene, " not in [0, ", schema_->num_scenes, ")");
  r_.cand_sparse.insert(r_.cand_sparse.end(), sparse.begin(), sparse.end());
  r_.cand_dense.insert(r_.cand_dense.end(), dense.begin(), dense.end());
  cand_scene_.push_back(scene ? *scene : -1);  // -1: the request's scene, resolved in request()
  any_cand_scene_ = any_cand_scene_ || scene.has_value();
  r_.num_candidates = i + 1;
}

RequestBuilder& RequestBuilder::add_candidate(std::initializer_list<std::pair<std::string_view, FieldValue>> fields,
                                              std::optional<std::int32_t> scene) {
  candidate(fields, scene);
  return *this;
}

RequestBuilder& RequestBuilder::add_candidate(std::span<const std::pair<std::string, FieldValue>> fields,
                                              std::optional<std::int32_t> scene) {
  candidate(fields, scene);
  return *this;
}

const Request& RequestBuilder::request() {
  const RequestLayout& l = serving_->layout;
  std::string missing;
  for (std::size_t i = 0; i < l.user_sparse.size(); ++i)
    if (!user_set_[i]) missing += (missing.empty() ? "" : ", ") + schema_->sparse[static_cast<std::size_t>(l.user_sparse[i])].name;
  for (std::size_t i = 0; i < l.user_dense.size(); ++i)
    if (!user_set_[l.user_sparse.size() + i])
      missing += (missing.empty() ? "" : ", ") + schema_->dense[static_cast<std::size_t>(l.user_dense[i])].name;
  if (!missing.empty()) fail("request: user/context fields not set: ", missing);
  // Candidates added before set_scene, without a scene of their own, are in the request's scene.
  r_.cand_scene.clear();
  if (any_cand_scene_)
    for (std::int32_t s : cand_scene_) r_.cand_scene.push_back(s < 0 ? r_.scene : s);
  return r_;
}

}  // namespace mtrank::serve
