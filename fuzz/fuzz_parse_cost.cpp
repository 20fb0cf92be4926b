// libFuzzer target: flags super-linear parse time on large inputs built from the fuzzer's bytes.
//
//   byte 0: the parser   0 request JSON      serve::parse_request (1 MiB body, the server's limit)
//                        1 config JSON       io::parse_json -> models::build_model -> Predictor
//                                            (the path of Predictor::from_files / mtrank train)
//                        2 safetensors       SafetensorsFile::parse of a file with that header
//                        3 CSV               data::parse_csv with a fixed schema
//   the rest, split on 0xFF bytes: prefix, open, middle, close, suffix. The input parsed is
//     prefix + open(0) + ... + open(k-1) + middle + close(k-1) + ... + close(0) + suffix
//   where '#' in open/close becomes the repetition index (unique keys and names), so both long
//   lists ("{}," repeated) and deep nesting ("[" ... "]") are reachable.
//
// Each input is parsed at about 8 KiB, 128 KiB and 1 MiB (k chosen so the text stays within the
// size), timing thread CPU time (CLOCK_THREAD_CPUTIME_ID, so other processes on the machine do
// not count). It aborts when the large input's time per byte is both
//   - more than kRatio times the 8 KiB input's time per byte (the cost grows with the size), and
//   - more than kBaseFactor times the baseline measured at start-up: a plain nlohmann DOM parse
//     of 1 MiB of JSON, i.e. this machine's speed under this instrumentation (not the code under
//     test, so a regression cannot inflate its own yardstick). The seeds' linear parses measured
//     0.2-5.5 times the baseline per byte at 1 MiB, except a config of 65 000 one-unit layers at
//     about 100 times (model building per layer; not super-linear, so the kRatio test keeps it),
// and it took at least kMinSeconds; a flagged input is measured again before aborting. These are
// deliberately generous (a quadratic parse of 1 MiB is 128 times slower per byte than of 8 KiB).
// A larger size is skipped when the linear extrapolation of the last one exceeds kMaxPredicted
// seconds (a slow but linear parse must not hit -timeout). A parse so slow that one size step
// runs past -timeout=10 is reported by libFuzzer as a timeout (input saved), also a finding:
// with the old parser callback put back into serve::parse_request, the request_empty_objects
// seed took 0.15 s at 8 KiB and 37.6 s at 128 KiB.
// Crashes (e.g. stack overflow on deep nesting) are findings too.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "mtrank/core/arena.hpp"
#include "mtrank/data/csv.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/serve/predictor.hpp"
#include "mtrank/serve/request.hpp"

namespace {

using namespace mtrank;
using nlohmann::json;

constexpr double kRatio = 4.0;        // per-byte time, large vs small input
constexpr double kBaseFactor = 20.0;  // per-byte time, large input vs the machine's JSON parse baseline
constexpr double kMinSeconds = 0.25;  // below this nothing is flagged
constexpr double kMaxPredicted = 4.0;  // skip a larger size whose linear extrapolation exceeds this (-timeout)
constexpr std::size_t kSizes[] = {8 << 10, 128 << 10, 1 << 20};
constexpr int kModes = 4;
const char* const kModeName[kModes] = {"request", "config", "safetensors", "csv"};

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

const serve::Predictor& request_predictor() {
  static const auto p = [] {
    auto cfg = json::parse(R"({
      "seed": 1,
      "schema": {"sparse": [{"name": "user_id", "vocab": 20, "dim": 2}, {"name": "item_id", "vocab": 30, "dim": 2},
                            {"name": "tag", "vocab": 8, "dim": 2, "hash": true}],
                 "dense": [{"name": "hour"}, {"name": "pop"}],
                 "sequences": [{"name": "clicks", "vocab": 30, "dim": 2, "max_len": 4, "table": "item_id"}],
                 "tasks": [{"name": "click"}, {"name": "like"}]},
      "model": {"type": "mmoe", "num_experts": 2, "expert": {"layers": [4]}, "tower": {"hidden": [2]}},
      "serving": {"candidate_fields": ["item_id", "tag", "pop"], "max_candidates": 1048576,
                  "max_sequence_length": 1048576}})");
    return std::make_unique<serve::Predictor>(models::build_model(cfg));
  }();
  return *p;
}

const data::FeatureSchema& csv_schema() {
  static const data::FeatureSchema s = json::parse(R"({
    "sparse": [{"name": "user", "vocab": 50, "dim": 4}, {"name": "city", "vocab": 16, "dim": 4, "hash": true}],
    "dense": [{"name": "age"}],
    "sequences": [{"name": "hist", "vocab": 100, "dim": 4, "max_len": 5}],
    "tasks": [{"name": "click"}, {"name": "buy"}]})")
                                           .get<data::FeatureSchema>();
  return s;
}

// One parse; every outcome but a crash is fine here (only the time matters).
void parse(int mode, const std::string& text) {
  try {
    switch (mode) {
      case 0: {
        static serve::Request r;
        static serve::RequestEcho echo;
        const auto& p = request_predictor();
        serve::parse_request(text, p.schema(), p.serving(), r, echo);
        break;
      }
      case 1: {
        const json j = io::parse_json(text, "config");
        const serve::Predictor p(models::build_model(j));
        break;
      }
      case 2: {
        std::string file(8, '\0');
        const std::uint64_t n = text.size();
        std::memcpy(file.data(), &n, 8);
        file += text;
        (void)io::SafetensorsFile::parse(std::move(file), "<fuzz>");
        break;
      }
      default: {
        data::CsvOptions o;
        o.user_column = "user";
        (void)data::parse_csv(text, "<fuzz>", csv_schema(), o);
        break;
      }
    }
  } catch (const Error&) {
  }
}

struct Pieces {
  std::string prefix, open, middle, close, suffix;
};

std::string fill(const std::string& fragment, std::size_t i) {
  std::string out;
  const std::string n = std::to_string(i);
  for (char c : fragment)
    if (c == '#') out += n;
    else out += c;
  return out;
}

// The largest repetition count whose text fits in `limit` bytes (at least 0 repetitions).
std::string build(const Pieces& p, std::size_t limit) {
  std::string opens;
  std::vector<std::string> closes;
  std::size_t size = p.prefix.size() + p.middle.size() + p.suffix.size(), close_bytes = 0;
  for (std::size_t i = 0;; ++i) {
    std::string o = fill(p.open, i), c = fill(p.close, i);
    if (size + o.size() + c.size() > limit || (o.empty() && c.empty())) break;
    size += o.size() + c.size();
    opens += o;
    close_bytes += c.size();
    closes.push_back(std::move(c));
  }
  std::string s;
  s.reserve(size);
  s += p.prefix;
  s += opens;
  s += p.middle;
  for (auto it = closes.rbegin(); it != closes.rend(); ++it) s += *it;
  s += p.suffix;
  return s;
}

double min_time(int mode, const std::string& text, int runs) {
  double best = 1e300;
  for (int r = 0; r < runs; ++r) {
    const double t0 = cpu_seconds();
    parse(mode, text);
    best = std::min(best, cpu_seconds() - t0);
  }
  return best;
}

double g_baseline = 0;  // seconds per byte of a plain DOM parse of 1 MiB of JSON

// The baseline text: 1 MiB of JSON with objects, arrays, strings and numbers.
std::string baseline_text() {
  return build({R"({"request_id":"r","user_id":3,"hour":0.5,"clicks":[1,2,3],"candidates":[)",
                R"({"candidate_id":"c#","item_id":7,"tag":"t#","pop":0.25,"x":[1,2.5,"a"]},)", R"({"item_id":1})", "", "]}"},
               kSizes[2]);
}

void report(const char* what, int mode, const Pieces& p, std::size_t s1, double t1, std::size_t s2, double t2) {
  auto show = [](const std::string& s) { return s.substr(0, 80); };
  std::fprintf(stderr,
               "fuzz_parse_cost: %s: %s parse of %zu bytes took %.3f s CPU (%.1f ns/byte); %zu bytes took %.6f s "
               "(%.1f ns/byte); baseline (JSON parse) %.1f ns/byte\n  prefix '%s'\n  open '%s'\n  middle '%s'\n  close '%s'\n"
               "  suffix '%s'\n",
               what, kModeName[mode], s2, t2, 1e9 * t2 / double(s2), s1, t1, 1e9 * t1 / double(s1), 1e9 * g_baseline,
               show(p.prefix).c_str(), show(p.open).c_str(), show(p.middle).c_str(), show(p.close).c_str(),
               show(p.suffix).c_str());
}

bool flagged(int mode, std::size_t s1, double t1, std::size_t s2, double t2) {
  const double pb1 = t1 / double(std::max<std::size_t>(s1, 1)), pb2 = t2 / double(s2);
  return t2 >= kMinSeconds && pb2 > kRatio * pb1 && pb2 > kBaseFactor * g_baseline;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_parameter_memory_budget(32ull << 20);
  (void)request_predictor();
  const std::string text = baseline_text();
  double best = 1e300;
  for (int r = 0; r < 3; ++r) {
    const double t0 = cpu_seconds();
    const json j = json::parse(text);
    best = std::min(best, cpu_seconds() - t0);
    if (!j.is_object()) std::abort();
  }
  g_baseline = best / double(text.size());
  std::fprintf(stderr, "fuzz_parse_cost: baseline (JSON parse): %.1f ns/byte (%zu bytes)\n", 1e9 * g_baseline, text.size());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] % kModes;
  std::vector<std::string> parts(5);
  std::size_t k = 0;
  for (std::size_t i = 1; i < size; ++i) {
    if (data[i] == 0xFF) {
      if (++k == parts.size()) break;
    } else {
      parts[k] += static_cast<char>(data[i]);
    }
  }
  const Pieces p{parts[0], parts[1], parts[2], parts[3], parts[4]};
  const std::string small = build(p, kSizes[0]);
  const double t1 = min_time(mode, small, 5);
  if (p.open.empty() && p.close.empty()) return 0;  // nothing repeats: no growth to measure
  double t_prev = t1;
  std::size_t s_prev = small.size();
  for (std::size_t level = 1; level < 3; ++level) {
    const std::string big = build(p, kSizes[level]);
    if (big.size() <= s_prev * 2) return 0;
    // A linear but slow parser would run past -timeout at the next size: stop here (what is
    // super-linear shows at the size measured already).
    if (t_prev * double(big.size()) / double(s_prev) > kMaxPredicted) return 0;
    const double t2 = min_time(mode, big, 1);
    if (mtrank::fuzz::verbose())
      std::fprintf(stderr, "fuzz_parse_cost: %s %zu bytes %.4f s, %zu bytes %.4f s\n", kModeName[mode], small.size(), t1,
                   big.size(), t2);
    t_prev = t2;
    s_prev = big.size();
    if (!flagged(mode, small.size(), t1, big.size(), t2)) continue;
    // Measure again (both sizes) before calling it a finding.
    const double t1b = std::min(t1, min_time(mode, small, 5)), t2b = min_time(mode, big, 2);
    if (flagged(mode, small.size(), t1b, big.size(), t2b)) {
      report("super-linear parse time", mode, p, small.size(), t1b, big.size(), t2b);
      std::abort();
    }
  }
  return 0;
}
