// Internal helpers shared by the data readers: strict number parsing and line splitting.
#pragma once
#include <charconv>
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

namespace mtrank::data::detail {

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

/// Whole-string float parse (a leading '+' is accepted); false when not a number.
inline bool parse_float(std::string_view s, double& out) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

/// Whole-string integer parse; false when not an integer or out of int64 range.
inline bool parse_int(std::string_view s, std::int64_t& out) {
  s = trim(s);
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

/// Splits on `delim` (no quoting); views into `s`.
inline void split(std::string_view s, char delim, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == delim) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
}

/// Calls fn(line_number, line) for each line of `text` (LF or CRLF; the '\r' is removed),
/// including empty ones; a final line without newline counts, an empty tail does not.
template <class Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  std::int64_t line = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t e = text.find('\n', pos);
    if (e == std::string_view::npos) e = text.size();
    std::string_view l = text.substr(pos, e - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    fn(++line, l);
    pos = e + 1;
  }
}

}  // namespace mtrank::data::detail
