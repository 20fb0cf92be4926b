// The ranking server's Prometheus text: histogram bucket semantics, number formatting, escaping,
// and consistency of a scrape taken while other threads observe.
#include <thread>
#include <vector>

#include "metrics.hpp"
#include "testing.hpp"

using namespace mtrank::server;
using Catch::Matchers::Contains;

TEST_CASE("server metrics: histogram buckets are 'less or equal', cumulative, with +Inf = count", "[server][metrics]") {
  Histogram h({0.5, 1, 2.5});
  for (double v : {0.1, 0.5, 0.7, 1.0, 3.0, 100.0}) h.observe(v);
  const auto s = h.snapshot();
  CHECK(s.cumulative == std::vector<std::uint64_t>{2, 4, 4, 6});
  CHECK(s.sum == Approx(105.3));
  std::string out;
  write_histogram(out, "x_seconds", "help", h);
  CHECK(out ==
        "# HELP x_seconds help\n# TYPE x_seconds histogram\n"
        "x_seconds_bucket{le=\"0.5\"} 2\nx_seconds_bucket{le=\"1\"} 4\nx_seconds_bucket{le=\"2.5\"} 4\n"
        "x_seconds_bucket{le=\"+Inf\"} 6\nx_seconds_sum 105.3\nx_seconds_count 6\n");
  CHECK_THROWS(Histogram({1, 1}));
  CHECK_THROWS(Histogram({2, 1}));
}

TEST_CASE("server metrics: numbers and label values in the text format", "[server][metrics]") {
  CHECK(format_number(0.0005) == "0.0005");
  CHECK(format_number(10) == "10");
  CHECK(format_number(0) == "0");
  CHECK(format_number(1796433555.919141) == "1796433555.919141");
  CHECK(format_number(1e-9) == "1e-09");
  CHECK(format_number(INFINITY) == "+Inf");
  CHECK(format_number(-INFINITY) == "-Inf");
  CHECK(format_number(NAN) == "NaN");
  CHECK(escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  std::string out;
  write_sample(out, "m_total", "k=\"v\"", 3);
  write_sample(out, "g", "", 1.5);
  CHECK(out == "m_total{k=\"v\"} 3\ng 1.5\n");
}

TEST_CASE("server metrics: a scrape during concurrent observations stays consistent", "[server][metrics]") {
  Histogram h({1, 10, 100});
  Counter c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20000; ++i) {
        h.observe(static_cast<double>((i + t) % 200));
        c.inc();
      }
    });
  for (int k = 0; k < 200; ++k) {
    const auto s = h.snapshot();
    for (std::size_t i = 1; i < s.cumulative.size(); ++i) REQUIRE(s.cumulative[i] >= s.cumulative[i - 1]);
  }
  for (auto& t : threads) t.join();
  CHECK(h.snapshot().cumulative.back() == 80000);
  CHECK(c.value() == 80000);
}
