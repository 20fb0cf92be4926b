#include "metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace mtrank::server {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1]))
      throw std::invalid_argument("Histogram: upper bounds must be finite and strictly ascending");
  }
  for (std::size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  // First bucket whose upper bound is >= v (Prometheus buckets are "less than or equal").
  const auto b = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[b].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.cumulative.resize(bounds_.size() + 1);
  std::uint64_t acc = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    acc += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = acc;
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::string format_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Shortest round-trip digits; plain decimals ("0.0005", not "5e-04") in the usual range.
  const double a = std::fabs(v);
  const bool fixed = a == 0 || (a >= 1e-6 && a < 1e15);
  const auto r = fixed ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed) : std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void write_header(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void write_sample(std::string& out, std::string_view name, std::string_view labels, double value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(format_number(value)).append("\n");
}

void write_histogram(std::string& out, std::string_view name, std::string_view help, const Histogram& h) {
  write_header(out, name, help, "histogram");
  const Histogram::Snapshot s = h.snapshot();
  const std::string bucket = std::string(name) + "_bucket";
  for (std::size_t i = 0; i <= h.upper_bounds().size(); ++i) {
    const std::string le = i < h.upper_bounds().size() ? format_number(h.upper_bounds()[i]) : "+Inf";
    write_sample(out, bucket, "le=\"" + le + "\"", static_cast<double>(s.cumulative[i]));
  }
  write_sample(out, std::string(name) + "_sum", "", s.sum);
  write_sample(out, std::string(name) + "_count", "", static_cast<double>(s.cumulative.back()));
}

}  // namespace mtrank::server
