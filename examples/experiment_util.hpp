// Small helpers shared by the example experiment programs (train_synthetic, train_simulator,
// train_adult, train_samples): flag parsing, mean ± std, wall-clock timing, one training run.
#pragma once
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/core/error.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/train/trainer.hpp"

namespace mtrank::examples {

using nlohmann::json;

/// "--name value" flags; every flag must be declared with a default; "--help" prints them.
class Flags {
 public:
  Flags(int argc, char** argv, std::string usage, std::map<std::string, std::string> defaults)
      : usage_(std::move(usage)), values_(std::move(defaults)) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        help_ = true;
        return;
      }
      require(a.rfind("--", 0) == 0, "argument '", a, "': expected --flag value");
      std::string name = a.substr(2);
      require(values_.count(name) == 1, "unknown flag --", name, " (see --help)");
      require(i + 1 < argc, "--", name, ": missing value");
      values_[name] = argv[++i];
    }
  }
  bool help() const {
    if (!help_) return false;
    std::fprintf(stderr, "%s\nflags (default):\n", usage_.c_str());
    for (auto& [k, v] : values_) std::fprintf(stderr, "  --%-18s %s\n", k.c_str(), v.c_str());
    return true;
  }
  std::string str(const std::string& k) const { return values_.at(k); }
  double num(const std::string& k) const {
    const std::string& s = values_.at(k);
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    require(end && *end == '\0' && !s.empty(), "--", k, ": expected a number, got '", s, "'");
    return v;
  }
  Index integer(const std::string& k) const {
    const double v = num(k);
    require(v == std::floor(v), "--", k, ": expected an integer, got ", values_.at(k));
    return static_cast<Index>(v);
  }
  std::vector<std::string> list(const std::string& k) const {
    std::vector<std::string> out;
    std::stringstream ss(values_.at(k));
    for (std::string item; std::getline(ss, item, ',');)
      if (!item.empty()) out.push_back(item);
    return out;
  }
  std::vector<double> numbers(const std::string& k) const {
    std::vector<double> out;
    for (auto& s : list(k)) {
      char* end = nullptr;
      const double v = std::strtod(s.c_str(), &end);
      require(end && *end == '\0', "--", k, ": expected comma-separated numbers, got '", values_.at(k), "'");
      out.push_back(v);
    }
    return out;
  }
  /// All flag values, for echoing the exact settings next to the results.
  std::string summary() const {
    std::string s;
    for (auto& [k, v] : values_) s += "--" + k + " " + v + " ";
    return s;
  }

 private:
  std::string usage_;
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

struct MeanStd {
  double mean = 0, std = 0;  // sample standard deviation (n − 1); 0 for n = 1
};

inline MeanStd mean_std(const std::vector<double>& v) {
  MeanStd r;
  if (v.empty()) return {std::nan(""), std::nan("")};
  for (double x : v) r.mean += x;
  r.mean /= double(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(ss / double(v.size() - 1));
  }
  return r;
}

class Stopwatch {
 public:
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(); }

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

/// Reads an optimiser spec like "adam:0.001" (type:lr).
inline json optimizer_spec(const std::string& s) {
  const auto colon = s.find(':');
  json j{{"type", s.substr(0, colon)}};
  if (colon != std::string::npos) j["lr"] = std::stod(s.substr(colon + 1));
  return j;
}

struct RunResult {
  std::vector<train::TaskMetrics> test;  // metrics of the final model on the test set
  Index params = 0;
  double seconds = 0;
};

/// Builds `config`, trains on `train` for topt.epochs and evaluates on `test`. Without `valid`
/// the last epoch is evaluated; with it (never the test set) early stopping (topt.patience) and
/// the choice of the best epoch watch `valid`.
inline RunResult train_and_evaluate(const json& config, const json& optimizer, const data::Dataset& train,
                                    const data::Dataset& test, train::TrainerOptions topt,
                                    const data::Dataset* valid = nullptr) {
  Stopwatch sw;
  auto model = models::build_model(config);
  auto opt = train::make_optimizer(optimizer);
  train::Trainer trainer(*model, *opt, topt);
  trainer.fit(train, valid);
  RunResult r;
  r.test = trainer.evaluate(test).second;
  r.params = model->arena().num_trainable();
  r.seconds = sw.seconds();
  return r;
}

}  // namespace mtrank::examples
