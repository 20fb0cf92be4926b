#include "mtrank/serve/request.hpp"

#include <cmath>
#include <cstdio>
#include <limits>

#include <nlohmann/json.hpp>

#include "mtrank/data/schema.hpp"
#include "mtrank/io/json_util.hpp"

namespace mtrank::serve {

using nlohmann::json;

namespace {

template <class... Parts>
[[noreturn]] void bad(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  throw RequestError(os.str());
}

std::string type_name(const json& v) { return v.type_name(); }

std::string preview(const std::string& t) {  // a client string quoted in an error, bounded
  std::string q = t.size() > 40 ? t.substr(0, 40) + "..." : t;
  return json(q).dump(-1, ' ', true, json::error_handler_t::replace);
}

std::int64_t parse_id(const json& v, const std::string& path, const std::string& field, Index vocab, bool hash,
                      Index oov_row) {
  std::int64_t id;
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    id = v.get<std::int64_t>();
  } else if (v.is_number_unsigned()) {
    const std::uint64_t u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      bad(path, ": id ", u, " does not fit in a signed 64-bit integer");
    id = static_cast<std::int64_t>(u);
  } else if (v.is_string()) {
    const std::string& t = v.get_ref<const std::string&>();
    if (hash) return data::id_from_text(t);  // the same raw id the CSV reader makes of this text
    if (!data::canonical_integer_id(t, id))
      bad(path, ": expected an integer id (or its decimal text) for vocabulary field '", field, "', got string ",
          preview(t));
  } else {
    bad(path, ": expected an integer id", hash ? " or a string" : " (or its decimal text)", " for field '", field,
        "', got ", type_name(v));
  }
  if (!hash && (id < 0 || id >= vocab) && oov_row < 0)
    bad(path, ": id ", id, " out of range [0, ", vocab, ") for field '", field, "' (vocabulary size ", vocab,
        ", no oov_row)");
  return id;
}

float parse_dense(const json& v, const std::string& path, const std::string& field, double max_abs) {
  if (!v.is_number()) bad(path, ": expected a number for dense field '", field, "', got ", type_name(v));
  const double d = v.get<double>();
  const float f = static_cast<float>(d);
  if (!std::isfinite(d) || !std::isfinite(f)) bad(path, ": value ", d, " of dense field '", field, "' is not a finite float");
  if (std::fabs(d) > max_abs)
    bad(path, ": value ", d, " of dense field '", field, "' is beyond +-", max_abs, " (serving.max_abs_dense)");
  return f;
}

std::int32_t parse_scene(const json& v, const std::string& path, Index num_scenes) {
  if (!v.is_number_integer()) bad(path, ": expected an integer scene id in [0, ", num_scenes, "), got ", type_name(v));
  const bool neg = !v.is_number_unsigned() && v.get<std::int64_t>() < 0;
  if (neg || v.get<std::uint64_t>() >= static_cast<std::uint64_t>(num_scenes))
    bad(path, ": unknown scene ", v.dump(), " (the model has scenes 0..", num_scenes - 1, ")");
  return static_cast<std::int32_t>(v.get<std::int64_t>());
}

std::string echo_id(const json& v, const std::string& path) {
  if (!v.is_string() && !v.is_number_integer()) bad(path, ": expected a string or an integer, got ", type_name(v));
  std::string t = v.dump(-1, ' ', false, json::error_handler_t::strict);
  if (t.size() > 258) bad(path, ": longer than 256 characters");
  return t;
}

enum class Slot { none, user_sparse, user_dense, cand_sparse, cand_dense, sequence };

struct Where {
  Slot slot = Slot::none;
  std::size_t pos = 0;  // position within the layout list (or sequence index)
};

Where locate(const std::string& name, const data::FeatureSchema& schema, const RequestLayout& l) {
  for (std::size_t i = 0; i < l.user_sparse.size(); ++i)
    if (schema.sparse[l.user_sparse[i]].name == name) return {Slot::user_sparse, i};
  for (std::size_t i = 0; i < l.cand_sparse.size(); ++i)
    if (schema.sparse[l.cand_sparse[i]].name == name) return {Slot::cand_sparse, i};
  for (std::size_t i = 0; i < l.user_dense.size(); ++i)
    if (schema.dense[l.user_dense[i]].name == name) return {Slot::user_dense, i};
  for (std::size_t i = 0; i < l.cand_dense.size(); ++i)
    if (schema.dense[l.cand_dense[i]].name == name) return {Slot::cand_dense, i};
  for (std::size_t i = 0; i < schema.sequences.size(); ++i)
    if (schema.sequences[i].name == name) return {Slot::sequence, i};
  return {};
}

std::string field_list(const data::FeatureSchema& schema, const RequestLayout& l, bool candidate) {
  std::string s;
  auto add = [&](const std::string& n) { s += (s.empty() ? "" : ", ") + n; };
  if (candidate) {
    add("candidate_id");
    add("scene_id");
    for (Index i : l.cand_sparse) add(schema.sparse[i].name);
    for (Index i : l.cand_dense) add(schema.dense[i].name);
  } else {
    add("request_id");
    add("scene_id");
    add("candidates");
    for (Index i : l.user_sparse) add(schema.sparse[i].name);
    for (Index i : l.user_dense) add(schema.dense[i].name);
    for (auto& q : schema.sequences) add(q.name);
  }
  return s;
}

}  // namespace

void parse_request(std::string_view body, const data::FeatureSchema& schema, const ServingConfig& serving, Request& out,
                   RequestEcho& echo, const RequestParseOptions& options) {
  const RequestLayout& l = serving.layout;
  out.clear();
  echo.clear();
  if (!serving.layout_error.empty()) throw Error(serving.layout_error);  // the model, not the client
  if (body.size() > options.max_bytes) bad("request body: ", body.size(), " bytes, limit ", options.max_bytes);
  // Linear-time structure check first (depth); then a plain DOM parse without a callback.
  if (std::string why = io::check_json_structure(body, options.max_depth); !why.empty()) bad("request: ", why);
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const json::parse_error& e) {
    bad("request: ", io::describe_json_error(e.byte, e.what()));
  } catch (const json::exception& e) {
    bad("request: invalid JSON");
  }
  if (!j.is_object()) bad("request: expected a JSON object, got ", type_name(j));

  const std::size_t nus = l.user_sparse.size(), nud = l.user_dense.size(), ncs = l.cand_sparse.size(),
                    ncd = l.cand_dense.size(), nq = schema.sequences.size();
  out.user_sparse.resize(nus);
  out.user_dense.resize(nud);
  out.sequences.resize(nq);
  out.sequence_times.resize(nq);
  std::vector<char> seen(nus + nud + nq, 0);
  const json* cands = nullptr;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const std::string path = "request." + key;
    if (key == "candidates") {
      cands = &*it;
      continue;
    }
    if (key == "request_id") {
      echo.request_id = echo_id(*it, path);
      continue;
    }
    if (key == "scene_id") {
      out.scene = parse_scene(*it, path, schema.num_scenes);
      continue;
    }
    const Where w = locate(key, schema, l);
    switch (w.slot) {
      case Slot::user_sparse: {
        const auto& f = schema.sparse[l.user_sparse[w.pos]];
        out.user_sparse[w.pos] = parse_id(*it, path, f.name, f.vocab, f.hash, f.oov_row);
        seen[w.pos] = 1;
        break;
      }
      case Slot::user_dense:
        out.user_dense[w.pos] = parse_dense(*it, path, key, serving.max_abs_dense);
        seen[nus + w.pos] = 1;
        break;
      case Slot::sequence: {
        const auto t = schema.sequence_table(w.pos);
        const json* ids = &*it;
        const json* times = nullptr;
        std::string ids_path = path;
        if (it->is_object()) {
          for (auto e = it->begin(); e != it->end(); ++e)
            if (e.key() != "ids" && e.key() != "times")
              bad(path, ".", e.key(), ": unknown key (a sequence object has \"ids\" and optional \"times\")");
          if (!it->contains("ids")) bad(path, ": missing \"ids\" (an array of ids, oldest first)");
          ids = &(*it)["ids"];
          ids_path = path + ".ids";
          if (it->contains("times")) times = &(*it)["times"];
        }
        if (!ids->is_array())
          bad(ids_path, ": expected an array of ids (or {\"ids\": [...], \"times\": [...]}) for sequence field '", key,
              "', got ", type_name(*ids));
        if (static_cast<Index>(ids->size()) > serving.max_sequence_length)
          bad(ids_path, ": ", ids->size(), " ids, limit ", serving.max_sequence_length);
        auto& out_ids = out.sequences[w.pos];
        for (std::size_t i = 0; i < ids->size(); ++i)
          out_ids.push_back(parse_id((*ids)[i], ids_path + "[" + std::to_string(i) + "]", key, t.vocab, t.hash, t.oov_row));
        if (times) {
          const std::string tp = path + ".times";
          if (!times->is_array()) bad(tp, ": expected an array of numbers (one gap per id), got ", type_name(*times));
          if (times->size() != ids->size()) bad(tp, ": ", times->size(), " times for ", ids->size(), " ids (expected one per id)");
          auto& out_t = out.sequence_times[w.pos];
          for (std::size_t i = 0; i < times->size(); ++i) {
            const json& x = (*times)[i];
            const std::string xp = tp + "[" + std::to_string(i) + "]";
            if (!x.is_number()) bad(xp, ": expected a number (the gap from the behaviour to the request), got ", type_name(x));
            const double d = x.get<double>();
            if (!std::isfinite(d) || !std::isfinite(static_cast<float>(d)))
              bad(xp, ": ", d, " is not a finite float");
            if (d < 0) bad(xp, ": ", d, " is in the future (expected a gap >= 0 to the request)");
            out_t.push_back(static_cast<float>(d));
          }
        }
        seen[nus + nud + w.pos] = 1;
        break;
      }
      case Slot::cand_sparse:
      case Slot::cand_dense:
        bad(path, ": '", key, "' is a candidate field; give it in each element of \"candidates\"");
      case Slot::none:
        bad(path, ": unknown field (expected one of: ", field_list(schema, l, false), ")");
    }
  }
  for (std::size_t i = 0; i < nus; ++i)
    if (!seen[i]) bad("request: missing user field '", schema.sparse[l.user_sparse[i]].name, "'");
  for (std::size_t i = 0; i < nud; ++i)
    if (!seen[nus + i]) bad("request: missing user field '", schema.dense[l.user_dense[i]].name, "'");
  for (std::size_t i = 0; i < nq; ++i)
    if (!seen[nus + nud + i]) bad("request: missing sequence field '", schema.sequences[i].name, "' (use [] for none)");
  if (!cands) bad("request: missing field 'candidates' (an array of candidate objects)");
  if (!cands->is_array()) bad("request.candidates: expected an array of objects, got ", type_name(*cands));
  const Index N = static_cast<Index>(cands->size());
  if (N > serving.max_candidates) bad("request.candidates: ", N, " candidates, limit ", serving.max_candidates);
  out.num_candidates = N;
  out.cand_sparse.resize(static_cast<std::size_t>(N) * ncs);
  out.cand_dense.resize(static_cast<std::size_t>(N) * ncd);
  std::vector<char> cseen(ncs + ncd);
  bool any_scene = false, any_id = false;
  for (Index i = 0; i < N; ++i) {
    const json& c = (*cands)[static_cast<std::size_t>(i)];
    const std::string cp = "request.candidates[" + std::to_string(i) + "]";
    if (!c.is_object()) bad(cp, ": expected an object, got ", type_name(c));
    std::fill(cseen.begin(), cseen.end(), 0);
    for (auto it = c.begin(); it != c.end(); ++it) {
      const std::string& key = it.key();
      const std::string path = cp + "." + key;
      if (key == "candidate_id") {
        if (!any_id) echo.candidate_ids.assign(static_cast<std::size_t>(N), std::string());
        any_id = true;
        echo.candidate_ids[static_cast<std::size_t>(i)] = echo_id(*it, path);
        continue;
      }
      if (key == "scene_id") {
        if (!any_scene) out.cand_scene.assign(static_cast<std::size_t>(N), -1);
        any_scene = true;
        out.cand_scene[static_cast<std::size_t>(i)] = parse_scene(*it, path, schema.num_scenes);
        continue;
      }
      const Where w = locate(key, schema, l);
      if (w.slot == Slot::cand_sparse) {
        const auto& f = schema.sparse[l.cand_sparse[w.pos]];
        out.cand_sparse[static_cast<std::size_t>(i) * ncs + w.pos] = parse_id(*it, path, f.name, f.vocab, f.hash, f.oov_row);
        cseen[w.pos] = 1;
      } else if (w.slot == Slot::cand_dense) {
        out.cand_dense[static_cast<std::size_t>(i) * ncd + w.pos] = parse_dense(*it, path, key, serving.max_abs_dense);
        cseen[ncs + w.pos] = 1;
      } else if (w.slot == Slot::none) {
        bad(path, ": unknown field (expected one of: ", field_list(schema, l, true), ")");
      } else {
        bad(path, ": '", key, "' is a user-side field; give it once at the top level");
      }
    }
    for (std::size_t k = 0; k < ncs; ++k)
      if (!cseen[k]) bad(cp, ": missing candidate field '", schema.sparse[l.cand_sparse[k]].name, "'");
    for (std::size_t k = 0; k < ncd; ++k)
      if (!cseen[ncs + k]) bad(cp, ": missing candidate field '", schema.dense[l.cand_dense[k]].name, "'");
  }
  // Candidates without their own scene_id are in the request's scene.
  for (auto& sc : out.cand_scene)
    if (sc < 0) sc = out.scene;
}

void write_response(const Scores& s, const data::FeatureSchema& schema, const RequestEcho& echo, std::string& out) {
  char buf[64];
  out += '{';
  if (!echo.request_id.empty()) {
    out += "\"request_id\":";
    out += echo.request_id;  // JSON text as the client sent it (validated by the parser)
    out += ',';
  }
  out += "\"tasks\":[";
  for (std::size_t k = 0; k < schema.tasks.size(); ++k) {
    if (k) out += ',';
    out += json(schema.tasks[k].name).dump();
  }
  out += "],\"scores\":[";
  for (Index b = 0; b < s.probs.rows; ++b) {
    out += b ? ",{" : "{";
    if (static_cast<std::size_t>(b) < echo.candidate_ids.size() && !echo.candidate_ids[static_cast<std::size_t>(b)].empty()) {
      out += "\"candidate_id\":";
      out += echo.candidate_ids[static_cast<std::size_t>(b)];
      out += ',';
    }
    auto number = [&](double v) {  // JSON has no NaN/Inf: write null
      if (std::isfinite(v)) std::snprintf(buf, sizeof buf, "%.9g", v);
      else std::snprintf(buf, sizeof buf, "null");
      out += buf;
    };
    for (Index k = 0; k < s.probs.cols; ++k) {
      out += json(schema.tasks[k].name).dump();
      out += ':';
      number(s.probs(b, k));
      out += ',';
    }
    out += "\"fused\":";
    number(s.fused[static_cast<std::size_t>(b)]);
    out += '}';
  }
  out += "]}";
}

}  // namespace mtrank::serve
