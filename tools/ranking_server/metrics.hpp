// Lock-free counters, gauges and histograms written in the Prometheus text exposition format
// (version 0.0.4), for the ranking server's GET /metrics.
//
// Written by hand rather than with prometheus-cpp: Debian 12 packages it (prometheus-cpp-dev
// 1.0.1), but the -dev package depends on civetweb, libcivetweb-dev, libcurl4-openssl-dev and
// zlib1g-dev (its pull and push parts: a second HTTP server next to cpp-httplib, and an HTTP
// client) for what is here about 150 lines, and its histograms take a mutex per observation.
// Here every update is one relaxed atomic add (a histogram: one bucket, the count and the sum).
//
//   Histogram h({0.001, 0.01, 0.1});       // upper bounds, ascending; +Inf is implicit
//   h.observe(0.004);
//   std::string out;
//   write_histogram(out, "x_seconds", "help text", h);
// A scrape reads each bucket once and derives the cumulative counts and _count from the same
// reads, so +Inf always equals _count and the buckets never decrease along `le`, even while
// other threads observe.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mtrank::server {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void add(double d) { v_.fetch_add(d, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0.0};
};

class Histogram {
 public:
  /// `upper_bounds` ascending, finite; a last bucket (+Inf) is added.
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // [bounds + 1], the last is +Inf (= count)
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // [bounds + 1], per bucket (not cumulative)
  std::atomic<double> sum_{0.0};
};

/// A number as Prometheus reads it: shortest round-trip decimal, "+Inf", "-Inf", "NaN".
std::string format_number(double v);
/// `"` `\` and newline escaped, for a label value.
std::string escape_label_value(std::string_view v);

/// "# HELP name help\n# TYPE name type\n".
void write_header(std::string& out, std::string_view name, std::string_view help, std::string_view type);
/// "name{labels} value\n"; labels is the text inside the braces ("" for none).
void write_sample(std::string& out, std::string_view name, std::string_view labels, double value);
/// HELP/TYPE, then name_bucket{le="..."} (cumulative), name_sum and name_count.
void write_histogram(std::string& out, std::string_view name, std::string_view help, const Histogram& h);

}  // namespace mtrank::server
