#include "mtrank/io/json_util.hpp"

#include <set>

namespace mtrank::io {

namespace {

// SAX handler: depth and duplicate keys only; every value is dropped.
struct StructureCheck {
  int max_depth = 0;
  bool duplicates = false;
  int depth = 0;  // open containers
  std::vector<std::set<std::string>> keys;  // per open object (only when checking duplicates)
  std::vector<bool> is_object;
  std::string error;

  bool open(bool object) {
    if (depth > max_depth) {
      error = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
      return false;
    }
    ++depth;
    is_object.push_back(object);
    if (object && duplicates) keys.emplace_back();
    return true;
  }
  bool close() {
    --depth;
    if (is_object.back() && duplicates) keys.pop_back();
    is_object.pop_back();
    return true;
  }
  bool null() { return true; }
  bool boolean(bool) { return true; }
  bool number_integer(json::number_integer_t) { return true; }
  bool number_unsigned(json::number_unsigned_t) { return true; }
  bool number_float(json::number_float_t, const json::string_t&) { return true; }
  bool string(json::string_t&) { return true; }
  bool binary(json::binary_t&) { return true; }
  bool start_object(std::size_t) { return open(true); }
  bool key(json::string_t& k) {
    if (duplicates && !keys.back().insert(k).second) {
      error = "duplicate key \"" + k.substr(0, 64) + "\"";
      return false;
    }
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(false); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t byte, const std::string&, const nlohmann::detail::exception& e) {
    error = describe_json_error(byte, e.what());
    return false;
  }
};

}  // namespace

std::string describe_json_error(std::size_t byte, const std::string& what) {
  std::string reason = what;
  if (reason.rfind("[json.exception.", 0) == 0)
    if (const auto p = reason.find("] "); p != std::string::npos) reason.erase(0, p + 2);
  // "parse error at line 1, column 7: syntax error while parsing value - invalid literal; ..."
  if (reason.rfind("parse error at ", 0) == 0)
    if (const auto p = reason.find(": "); p != std::string::npos) reason.erase(0, p + 2);
  return "invalid JSON at byte " + std::to_string(byte) + ": " + reason;
}

std::string check_json_structure(std::string_view text, int max_depth, bool reject_duplicate_keys) {
  StructureCheck h;
  h.max_depth = max_depth;
  h.duplicates = reject_duplicate_keys;
  const bool ok = json::sax_parse(text.begin(), text.end(), &h, json::input_format_t::json, true);
  if (ok) return {};
  return h.error.empty() ? std::string("invalid JSON") : h.error;
}

}  // namespace mtrank::io
