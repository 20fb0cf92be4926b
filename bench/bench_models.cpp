// End-to-end model benchmarks: inference (forward in inference mode) and training steps
// (forward + BCE-with-logits loss + backward + Adam, sparse-row Adam for embedding tables) of
// the configurations in bench/model_cases.hpp, reported as samples/s and model GFLOP/s.
//
// Two modes:
//   * Google Benchmark (no --config / --stdin argument): every cell of the default grid
//     (inference at batch 1, 32, 256, 1024; training at 256, 1024; 1 and 2 threads at 1024),
//     e.g.  bench_models --benchmark_filter='BM_Model/mmoe/' --benchmark_min_time=0.2
//   * CLI, one cell:
//       bench_models --config mmoe --batch 256 --threads 1 --mode infer [--min-time 0.5] [--reps 3] [--json]
//     --reps R repeats the timed loop R times (after one warm-up loop) and reports each rate and
//     their median; --json prints one JSON object per cell.
//   * --stdin: keeps models alive and reads cells "config batch threads mode min_time reps", one
//     per line, answering each with one JSON line (used by bench/compare_torch.py to interleave
//     mtrank and PyTorch runs on the same machine without rebuilding models).
// Times are wall-clock (steady_clock) and process CPU time (CLOCK_PROCESS_CPUTIME_ID); the
// latter excludes time the OS gave to other processes, which matters on a shared machine.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model_cases.hpp"
#include "mtrank/core/cpu.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/packed_linear.hpp"

using namespace mtrank;
using namespace mtrank::bench;

namespace {

// infer_bf16 / infer_int8: inference with the case's serving plan set to bf16 / int8 weights
// (ModelCase::set_serving_weights; bf16 weights for batches <= kernels::kBf16MaxRows, int8
// weight-only quantisation for every batch).
enum class Mode { infer, train, infer_bf16, infer_int8 };

Mode parse_mode(const std::string& s) {
  if (s == "infer") return Mode::infer;
  if (s == "train") return Mode::train;
  if (s == "infer_bf16") return Mode::infer_bf16;
  if (s == "infer_int8") return Mode::infer_int8;
  fail("bench_models --mode: expected \"infer\", \"train\", \"infer_bf16\" or \"infer_int8\", got \"", s, "\"");
}
const char* mode_name(Mode m) {
  switch (m) {
    case Mode::infer: return "infer";
    case Mode::train: return "train";
    case Mode::infer_bf16: return "infer_bf16";
    case Mode::infer_int8: return "infer_int8";
  }
  return "?";
}
bool is_inference(Mode m) { return m != Mode::train; }

/// The serving weights of an inference mode (f32 for training, which never uses packed copies).
ServingWeights serving_weights(Mode m) {
  return m == Mode::infer_bf16 ? ServingWeights::bf16 : m == Mode::infer_int8 ? ServingWeights::int8 : ServingWeights::f32;
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

void run_once(ModelCase& c, Mode m) {
  if (is_inference(m)) c.infer();
  else c.train_step();
}

struct Timing {
  double samples_per_s = 0, cpu_samples_per_s = 0, seconds = 0;
  long iterations = 0;
};

/// Runs the cell for at least min_time seconds of wall time (and at least 2 iterations).
Timing time_loop(ModelCase& c, Mode m, double min_time) {
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = process_cpu_seconds();
  long it = 0;
  double wall = 0;
  do {
    run_once(c, m);
    ++it;
    wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (wall < min_time || it < 2);
  const double cpu = process_cpu_seconds() - c0;
  const double samples = double(it) * double(c.batch_size());
  return {samples / wall, samples / std::max(cpu, 1e-9), wall, it};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

struct Cell {
  std::string config;
  Index batch = 256;
  int threads = 1;
  Mode mode = Mode::infer;
  double min_time = 0.5;
  int reps = 1;
};

/// Cached cases so that --stdin does not rebuild a model for every cell.
class CaseCache {
 public:
  ModelCase& get(const std::string& config, Index batch, Mode mode) {
    // Training changes the weights; keep inference and training instances apart so that an
    // inference cell always sees the initial weights.
    const std::string key = config + "/" + std::to_string(batch) + "/" + (is_inference(mode) ? "i" : "t");
    auto it = cases_.find(key);
    if (it == cases_.end()) {
      // Keep at most one configuration in memory (the DIN tables and their Adam state are large).
      for (auto i = cases_.begin(); i != cases_.end();)
        i = i->first.rfind(config + "/", 0) == 0 ? std::next(i) : cases_.erase(i);
      it = cases_.emplace(key, make_case(config, batch)).first;
    }
    return *it->second;
  }

 private:
  std::map<std::string, std::unique_ptr<ModelCase>> cases_;
};

nlohmann::json run_cell(const Cell& cell, CaseCache& cache) {
  set_num_threads(cell.threads);
  ModelCase& c = cache.get(cell.config, cell.batch, cell.mode);
  c.set_serving_weights(serving_weights(cell.mode));  // the cached case keeps it until the next cell sets its own
  // Warm-up: first-touch of workspaces, optimiser state, oneDNN kernel generation.
  time_loop(c, cell.mode, std::min(0.2, cell.min_time));
  std::vector<double> rates, cpu_rates;
  long iterations = 0;
  for (int r = 0; r < cell.reps; ++r) {
    const Timing t = time_loop(c, cell.mode, cell.min_time);
    rates.push_back(t.samples_per_s);
    cpu_rates.push_back(t.cpu_samples_per_s);
    iterations += t.iterations;
  }
  const double fwd = c.forward_flops_per_batch() / double(c.batch_size());
  const double flops_per_sample = is_inference(cell.mode) ? fwd : 3.0 * fwd;
  const double med = median(rates);
  return {{"config", cell.config},
          {"batch", cell.batch},
          {"threads", cell.threads},
          {"mode", mode_name(cell.mode)},
          {"isa", isa_name(active_isa())},
          {"samples_per_s", med},
          {"samples_per_s_runs", rates},
          {"cpu_samples_per_s", median(cpu_rates)},
          {"cpu_samples_per_s_runs", cpu_rates},
          {"flops_per_sample", flops_per_sample},
          {"gflops", med * flops_per_sample / 1e9},
          {"iterations", iterations},
          {"checksum", c.checksum()}};
}

void print_cell(const nlohmann::json& j, bool as_json) {
  if (as_json) {
    std::cout << j.dump() << std::endl;
    return;
  }
  std::printf("%-10s batch %5lld threads %d %-5s  %12.0f samples/s (wall, median of %zu)  %12.0f samples/s (cpu)  %7.2f GFLOP/s\n",
              j["config"].get<std::string>().c_str(), j["batch"].get<long long>(), j["threads"].get<int>(),
              j["mode"].get<std::string>().c_str(), j["samples_per_s"].get<double>(), j["samples_per_s_runs"].size(),
              j["cpu_samples_per_s"].get<double>(), j["gflops"].get<double>());
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s --config NAME [--batch B] [--threads T] [--mode infer|train] [--min-time S] [--reps R] [--json]\n"
               "       %s --stdin        (cells \"config batch threads mode min_time reps\" per line, JSON answers)\n"
               "       %s --list\n"
               "       %s [--benchmark_* flags]   (Google Benchmark over the default grid)\n"
               "configs: mmoe ple mmoe_full din_L50 din_L200\n",
               argv0, argv0, argv0, argv0);
  return 2;
}

int cli(int argc, char** argv) {
  Cell cell;
  bool as_json = false, from_stdin = false;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) fail("bench_models ", argv[i], ": missing value");
    return argv[++i];
  };
  auto number = [&](int& i) -> double {
    const std::string flag = argv[i], s = value(i);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || *end != '\0' || !(v > 0)) fail("bench_models ", flag, ": expected a positive number, got \"", s, "\"");
    return v;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config") cell.config = value(i);
    else if (a == "--batch") cell.batch = static_cast<Index>(number(i));
    else if (a == "--threads") cell.threads = static_cast<int>(number(i));
    else if (a == "--mode") cell.mode = parse_mode(value(i));
    else if (a == "--min-time") cell.min_time = number(i);
    else if (a == "--reps") cell.reps = static_cast<int>(number(i));
    else if (a == "--json") as_json = true;
    else if (a == "--stdin") from_stdin = true;
    else if (a == "--list") {
      for (auto& c : model_configs()) std::cout << c << "\n";
      return 0;
    } else if (a == "--help" || a == "-h") return usage(argv[0]);
    else fail("bench_models: unknown argument \"", a, "\" (see --help)");
  }
  CaseCache cache;
  if (!from_stdin) {
    if (cell.config.empty()) return usage(argv[0]);
    print_cell(run_cell(cell, cache), as_json);
    return 0;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    Cell c;
    std::string mode;
    if (!(in >> c.config >> c.batch >> c.threads >> mode >> c.min_time >> c.reps)) {
      std::cout << nlohmann::json{{"error", "bad cell line: " + line}}.dump() << std::endl;
      continue;
    }
    try {
      c.mode = parse_mode(mode);
      print_cell(run_cell(c, cache), true);
    } catch (const std::exception& e) {
      std::cout << nlohmann::json{{"error", e.what()}}.dump() << std::endl;
    }
  }
  return 0;
}

// ---- Google Benchmark mode ----

void BM_Model(benchmark::State& state, std::string config, Mode mode) {
  const Index batch = state.range(0);
  const int threads = static_cast<int>(state.range(1));
  set_num_threads(threads);
  auto c = make_case(config, batch);
  c->set_serving_weights(serving_weights(mode));
  for (int i = 0; i < 3; ++i) run_once(*c, mode);  // warm-up
  for (auto _ : state) run_once(*c, mode);
  const double fwd = c->forward_flops_per_batch();
  const double flops = is_inference(mode) ? fwd : 3.0 * fwd;
  state.counters["samples/s"] =
      benchmark::Counter(double(state.iterations()) * double(batch), benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] = benchmark::Counter(double(state.iterations()) * flops / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(isa_name(active_isa()));
  set_num_threads(1);
}

void register_all() {
  for (const auto& config : model_configs()) {
    benchmark::RegisterBenchmark(("BM_Model/" + config + "/infer").c_str(), BM_Model, config, Mode::infer)
        ->ArgNames({"batch", "threads"})
        ->Args({1, 1})
        ->Args({32, 1})
        ->Args({256, 1})
        ->Args({1024, 1})
        ->Args({1024, 2})
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_Model/" + config + "/train").c_str(), BM_Model, config, Mode::train)
        ->ArgNames({"batch", "threads"})
        ->Args({256, 1})
        ->Args({1024, 1})
        ->Args({1024, 2})
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool cli_mode = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" || a == "--stdin" || a == "--list" || a == "--help" || a == "-h") cli_mode = true;
  }
  try {
    if (cli_mode) return cli(argc, argv);
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
