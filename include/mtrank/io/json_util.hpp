// Helpers for reading JSON configs with errors that name the path and the expectation.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "mtrank/core/error.hpp"

namespace mtrank::io {

using json = nlohmann::json;

namespace detail {
// nlohmann converts a float to an integer with a plain cast: 2.5 would silently become 2 and
// 1e300 is undefined behaviour. Integer fields therefore require a JSON integer.
template <class T>
bool json_kind_ok(const json& v) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return v.is_number_integer();
  else return true;
}
}  // namespace detail

/// One linear pass over JSON text (nlohmann's SAX interface, no DOM): checks that it is valid
/// JSON, that containers nest at most `max_depth` levels below the top-level value (the top
/// level is depth 0) and, when `reject_duplicate_keys`, that no object repeats a key (legal JSON
/// that a DOM parse would silently collapse). Returns "" when all holds, else the reason. Used
/// instead of a parser callback, which makes nlohmann rescan the parent container at every
/// closing brace (quadratic in the number of siblings: a 1 MiB body of {} took 86 s).
std::string check_json_structure(std::string_view text, int max_depth, bool reject_duplicate_keys = false);

/// "invalid JSON at byte N: <reason>" from a parse error, without nlohmann's internal
/// "[json.exception.parse_error.101]" tag (messages reach clients and logs).
std::string describe_json_error(std::size_t byte, const std::string& what);

/// j[key] as T; throws "path.key: missing (expected <what>)" or "path.key: expected <what>".
template <class T>
T get_required(const json& j, const std::string& key, const std::string& path, const char* what) {
  if (!j.is_object()) fail(path, ": expected an object");
  auto it = j.find(key);
  if (it == j.end()) fail(path, ".", key, ": missing (expected ", what, ")");
  if (!detail::json_kind_ok<T>(*it)) fail(path, ".", key, ": expected ", what, ", got ", it->dump());
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(path, ".", key, ": expected ", what, ", got ", it->dump());
  }
}

template <class T>
T get_optional(const json& j, const std::string& key, const std::string& path, const char* what, T fallback) {
  if (!j.is_object()) fail(path, ": expected an object");
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!detail::json_kind_ok<T>(*it)) fail(path, ".", key, ": expected ", what, ", got ", it->dump());
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(path, ".", key, ": expected ", what, ", got ", it->dump());
  }
}

/// Rejects keys not in `allowed` (typos in configs must not pass silently).
inline void reject_unknown_keys(const json& j, std::initializer_list<const char*> allowed, const std::string& path) {
  if (!j.is_object()) fail(path, ": expected an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || it.key() == a;
    if (!ok) {
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail(path, ".", it.key(), ": unknown field (expected one of: ", list, ")");
    }
  }
}

/// j[key] as a list of positive integers (layer widths), or `fallback` when absent.
inline std::vector<std::int64_t> get_positive_list(const json& j, const char* key, const std::string& path,
                                                   std::vector<std::int64_t> fallback) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (!it->is_array()) fail(path, ".", key, ": expected an array of positive integers");
  std::vector<std::int64_t> v;
  for (auto& e : *it) {
    if (!e.is_number_integer() || e.get<std::int64_t>() <= 0)
      fail(path, ".", key, ": expected an array of positive integers, got ", it->dump());
    v.push_back(e.get<std::int64_t>());
  }
  return v;
}

/// Parses text as JSON; throws "<what>: invalid JSON at byte N: ..." instead of nlohmann's exception.
inline json parse_json(const std::string& text, const std::string& what) {
  try {
    return json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail(what, ": invalid JSON at byte ", e.byte, ": ", e.what());
  } catch (const nlohmann::json::exception& e) {  // e.g. out_of_range 406: number overflow parsing '1e999'
    fail(what, ": invalid JSON: ", e.what());
  }
}

}  // namespace mtrank::io
