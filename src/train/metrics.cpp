#include "mtrank/train/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mtrank/core/error.hpp"

namespace mtrank::train {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void check_inputs(const char* what, std::span<const float> scores, std::span<const float> labels,
                  std::span<const float> weights, bool binary) {
  if (labels.size() != scores.size())
    fail(what, ": labels has ", labels.size(), " entries, expected ", scores.size(), " (one per score)");
  if (!weights.empty() && weights.size() != scores.size())
    fail(what, ": weights has ", weights.size(), " entries, expected ", scores.size(), " or none");
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) fail(what, ": score[", i, "] is ", scores[i], " (expected a finite value)");
    if (binary) {
      if (labels[i] != 0.0f && labels[i] != 1.0f) fail(what, ": label[", i, "] is ", labels[i], " (expected 0 or 1)");
    } else if (!std::isfinite(labels[i])) {
      fail(what, ": label[", i, "] is ", labels[i], " (expected a finite value)");
    }
    if (!weights.empty() && !(std::isfinite(weights[i]) && weights[i] >= 0))
      fail(what, ": weight[", i, "] is ", weights[i], " (expected finite and >= 0)");
  }
}

inline double w_at(std::span<const float> weights, Index i) { return weights.empty() ? 1.0 : double(weights[i]); }

struct Entry {
  float score, label, weight;
};
struct UserEntry {
  std::int64_t user;
  float score, label, weight;
};

/// AUC over [first, last), which must be sorted by ascending score. Sweeps tie groups: each
/// positive in a group beats every negative below the group and ties (½) with the group's
/// negatives.
template <class It>
double auc_sweep(It first, It last) {
  double neg_below = 0, pos_total = 0, num = 0;
  It i = first;
  while (i != last) {
    const float s = i->score;
    double gp = 0, gn = 0;
    It j = i;
    for (; j != last && j->score == s; ++j) {
      if (j->label == 1.0f) gp += j->weight; else gn += j->weight;
    }
    num += gp * (neg_below + 0.5 * gn);
    neg_below += gn;
    pos_total += gp;
    i = j;
  }
  if (pos_total <= 0 || neg_below <= 0) return kNaN;
  return num / (pos_total * neg_below);
}

double auc_unchecked(std::span<const float> scores, std::span<const float> labels, std::span<const float> weights) {
  std::vector<Entry> e(scores.size());
  for (std::size_t i = 0; i < e.size(); ++i) e[i] = {scores[i], labels[i], weights.empty() ? 1.0f : weights[i]};
  std::sort(e.begin(), e.end(), [](const Entry& a, const Entry& b) { return a.score < b.score; });
  return auc_sweep(e.begin(), e.end());
}

GaucResult gauc_unchecked(std::span<const float> scores, std::span<const float> labels,
                          std::span<const std::int64_t> users, std::span<const float> weights) {
  std::vector<UserEntry> e(scores.size());
  for (std::size_t i = 0; i < e.size(); ++i)
    e[i] = {users[i], scores[i], labels[i], weights.empty() ? 1.0f : weights[i]};
  std::sort(e.begin(), e.end(), [](const UserEntry& a, const UserEntry& b) {
    return a.user != b.user ? a.user < b.user : a.score < b.score;
  });
  GaucResult r;
  double num = 0, den = 0;
  auto i = e.begin();
  while (i != e.end()) {
    auto j = i;
    double impressions = 0;
    for (; j != e.end() && j->user == i->user; ++j) impressions += j->weight;
    const double a = auc_sweep(i, j);
    if (std::isnan(a)) {
      ++r.skipped_users;
    } else {
      ++r.users;
      num += impressions * a;
      den += impressions;
    }
    i = j;
  }
  r.value = den > 0 ? num / den : kNaN;
  return r;
}

double log_loss_unchecked(std::span<const float> probs, std::span<const float> labels, std::span<const float> weights,
                          double eps) {
  double s = 0, ws = 0;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    const double p = std::clamp(double(probs[i]), eps, 1.0 - eps);
    const double y = labels[i], w = w_at(weights, static_cast<Index>(i));
    s -= w * (y * std::log(p) + (1 - y) * std::log1p(-p));
    ws += w;
  }
  return ws > 0 ? s / ws : kNaN;
}

}  // namespace

double auc(std::span<const float> scores, std::span<const float> labels, std::span<const float> weights) {
  check_inputs("auc", scores, labels, weights, true);
  return auc_unchecked(scores, labels, weights);
}

GaucResult gauc(std::span<const float> scores, std::span<const float> labels, std::span<const std::int64_t> users,
                std::span<const float> weights) {
  check_inputs("gauc", scores, labels, weights, true);
  if (users.size() != scores.size())
    fail("gauc: users has ", users.size(), " entries, expected ", scores.size(), " (one per score)");
  return gauc_unchecked(scores, labels, users, weights);
}

double log_loss(std::span<const float> probs, std::span<const float> labels, std::span<const float> weights,
                double eps) {
  check_inputs("log_loss", probs, labels, weights, true);
  require(eps > 0 && eps < 0.5, "log_loss: eps must be in (0, 0.5), got ", eps);
  for (std::size_t i = 0; i < probs.size(); ++i)
    if (probs[i] < 0 || probs[i] > 1) fail("log_loss: prob[", i, "] is ", probs[i], " (expected a probability in [0, 1])");
  return log_loss_unchecked(probs, labels, weights, eps);
}

MetricAccumulator::MetricAccumulator(std::vector<TaskKind> kinds, std::vector<std::string> names, double log_loss_eps)
    : kinds_(std::move(kinds)), names_(std::move(names)), eps_(log_loss_eps), cols_(kinds_.size()) {
  require(!kinds_.empty(), "MetricAccumulator: no tasks");
  require(names_.empty() || names_.size() == kinds_.size(), "MetricAccumulator: ", names_.size(), " names for ",
          kinds_.size(), " tasks");
  require(eps_ > 0 && eps_ < 0.5, "MetricAccumulator: log_loss_eps must be in (0, 0.5), got ", eps_);
  if (names_.empty())
    for (std::size_t k = 0; k < kinds_.size(); ++k) names_.push_back("task" + std::to_string(k));
}

void MetricAccumulator::append(MatrixView<const float> probs, MatrixView<const float> labels,
                               MatrixView<const float> mask, std::span<const std::int64_t> users,
                               std::span<const float> weights) {
  const Index K = num_tasks(), N = probs.rows;
  require(K > 0, "MetricAccumulator: not initialised with tasks");
  require_shape(probs, probs.rows, K, "evaluate: predictions");
  require_shape(labels, N, K, "evaluate: labels");
  const bool has_mask = mask.data != nullptr;
  if (has_mask) require_shape(mask, N, K, "evaluate: mask");
  if (!users.empty() && static_cast<Index>(users.size()) != N)
    fail("evaluate: users has ", users.size(), " entries, expected ", N, " (one per row) or none");
  if (!weights.empty() && static_cast<Index>(weights.size()) != N)
    fail("evaluate: weights has ", weights.size(), " entries, expected ", N, " (one per row) or none");
  if (rows_ > 0 && users.empty() == with_users_)
    fail("evaluate: users given for ", with_users_ ? "earlier batches but not this one" : "this batch but not earlier ones");

  // Validate everything first so a bad batch leaves the accumulator unchanged.
  for (Index b = 0; b < N; ++b) {
    if (!weights.empty() && !(std::isfinite(weights[b]) && weights[b] >= 0))
      fail("evaluate: weight of row ", b, " is ", weights[b], " (expected finite and >= 0)");
    for (Index k = 0; k < K; ++k) {
      const float m = has_mask ? mask(b, k) : 1.0f;
      if (m != 0.0f && m != 1.0f)
        fail("evaluate: task '", names_[k], "' row ", b, ": mask is ", m, " (expected 0 or 1)");
      if (m == 0.0f) continue;
      const float p = probs(b, k), y = labels(b, k);
      if (!std::isfinite(p)) fail("evaluate: task '", names_[k], "' row ", b, ": prediction is ", p, " (expected finite)");
      if (kinds_[k] == TaskKind::binary) {
        if (p < 0 || p > 1)
          fail("evaluate: task '", names_[k], "' row ", b, ": prediction ", p, " is not a probability in [0, 1]");
        if (y != 0.0f && y != 1.0f) fail("evaluate: task '", names_[k], "' row ", b, ": label is ", y, " (expected 0 or 1)");
      } else if (!std::isfinite(y)) {
        fail("evaluate: task '", names_[k], "' row ", b, ": label is ", y, " (expected finite)");
      }
    }
  }
  with_users_ = !users.empty();
  weighted_ = weighted_ || !weights.empty();
  for (Index b = 0; b < N; ++b)
    for (Index k = 0; k < K; ++k) {
      if (has_mask && mask(b, k) == 0.0f) continue;
      Column& c = cols_[k];
      c.score.push_back(probs(b, k));
      c.label.push_back(labels(b, k));
      c.weight.push_back(weights.empty() ? 1.0f : weights[b]);
      if (with_users_) c.user.push_back(users[b]);
    }
  rows_ += N;
}

std::vector<TaskMetrics> MetricAccumulator::compute() const {
  std::vector<TaskMetrics> out(kinds_.size());
  for (std::size_t k = 0; k < kinds_.size(); ++k) {
    TaskMetrics& m = out[k];
    const Column& c = cols_[k];
    m.name = names_[k];
    m.kind = kinds_[k];
    m.count = static_cast<Index>(c.score.size());
    std::span<const float> w = weighted_ ? std::span<const float>(c.weight) : std::span<const float>();
    double sp = 0, sy = 0, se = 0, ws = 0;
    for (std::size_t i = 0; i < c.score.size(); ++i) {
      const double wi = w_at(w, static_cast<Index>(i)), d = double(c.score[i]) - c.label[i];
      sp += wi * c.score[i];
      sy += wi * c.label[i];
      se += wi * d * d;
      ws += wi;
    }
    m.weight_sum = ws;
    if (ws > 0) {
      m.mean_prediction = sp / ws;
      m.mean_label = sy / ws;
      m.mse = se / ws;
    }
    if (m.kind == TaskKind::binary && m.count > 0) {
      m.auc = auc_unchecked(c.score, c.label, w);
      m.log_loss = log_loss_unchecked(c.score, c.label, w, eps_);
      if (ws > 0 && m.mean_label > 0) m.calibration = m.mean_prediction / m.mean_label;
      if (with_users_) {
        GaucResult g = gauc_unchecked(c.score, c.label, c.user, w);
        m.gauc = g.value;
        m.gauc_users = g.users;
        m.gauc_skipped_users = g.skipped_users;
      }
    }
  }
  return out;
}

void MetricAccumulator::clear() {
  for (auto& c : cols_) c = Column{};
  rows_ = 0;
  weighted_ = with_users_ = false;
}

std::vector<TaskMetrics> evaluate_tasks(MatrixView<const float> probs, MatrixView<const float> labels,
                                        MatrixView<const float> mask, std::span<const std::int64_t> users,
                                        std::span<const TaskKind> kinds, std::span<const std::string> names,
                                        std::span<const float> weights, double log_loss_eps) {
  if (static_cast<Index>(kinds.size()) != probs.cols)
    fail("evaluate: ", kinds.size(), " task kinds for ", probs.cols, " prediction columns");
  MetricAccumulator acc(std::vector<TaskKind>(kinds.begin(), kinds.end()),
                        std::vector<std::string>(names.begin(), names.end()), log_loss_eps);
  acc.append(probs, labels, mask, users, weights);
  return acc.compute();
}

std::vector<SceneMetrics> evaluate_tasks_by_scene(MatrixView<const float> probs, MatrixView<const float> labels,
                                                  MatrixView<const float> mask, std::span<const std::int64_t> users,
                                                  std::span<const std::int32_t> scenes, std::int32_t num_scenes,
                                                  std::span<const TaskKind> kinds, std::span<const std::string> names,
                                                  std::span<const float> weights, double log_loss_eps) {
  const Index N = probs.rows, K = probs.cols;
  require(num_scenes >= 1, "evaluate_by_scene: num_scenes must be >= 1, got ", num_scenes);
  if (static_cast<Index>(scenes.size()) != N)
    fail("evaluate_by_scene: scenes has ", scenes.size(), " entries, expected ", N, " (one per row)");
  require_shape(labels, N, K, "evaluate_by_scene: labels");
  const bool has_mask = mask.data != nullptr;
  if (has_mask) require_shape(mask, N, K, "evaluate_by_scene: mask");
  if (!users.empty() && static_cast<Index>(users.size()) != N)
    fail("evaluate_by_scene: users has ", users.size(), " entries, expected ", N, " (one per row) or none");
  if (!weights.empty() && static_cast<Index>(weights.size()) != N)
    fail("evaluate_by_scene: weights has ", weights.size(), " entries, expected ", N, " (one per row) or none");
  std::vector<std::vector<Index>> rows(static_cast<std::size_t>(num_scenes));
  for (Index r = 0; r < N; ++r) {
    const std::int32_t s = scenes[static_cast<std::size_t>(r)];
    if (s < 0 || s >= num_scenes) fail("evaluate_by_scene: row ", r, " has scene ", s, ", expected [0, ", num_scenes, ")");
    rows[static_cast<std::size_t>(s)].push_back(r);
  }
  std::vector<SceneMetrics> out;
  std::vector<float> p, y, m, w;
  std::vector<std::int64_t> u;
  for (std::int32_t s = 0; s < num_scenes; ++s) {
    const auto& idx = rows[static_cast<std::size_t>(s)];
    const Index n = static_cast<Index>(idx.size());
    p.resize(static_cast<std::size_t>(n * K));
    y.resize(p.size());
    m.resize(has_mask ? p.size() : 0);
    u.clear();
    w.clear();
    for (Index i = 0; i < n; ++i) {
      const Index r = idx[static_cast<std::size_t>(i)];
      for (Index k = 0; k < K; ++k) {
        p[static_cast<std::size_t>(i * K + k)] = probs(r, k);
        y[static_cast<std::size_t>(i * K + k)] = labels(r, k);
        if (has_mask) m[static_cast<std::size_t>(i * K + k)] = mask(r, k);
      }
      if (!users.empty()) u.push_back(users[static_cast<std::size_t>(r)]);
      if (!weights.empty()) w.push_back(weights[static_cast<std::size_t>(r)]);
    }
    SceneMetrics sm;
    sm.scene = s;
    sm.rows = n;
    const MatrixView<const float> pm(p.data(), n, K), ym(y.data(), n, K);
    const MatrixView<const float> mm = has_mask ? MatrixView<const float>(m.data(), n, K) : MatrixView<const float>();
    // An empty user list would mean "no GAUC"; a scene without rows has no GAUC either way.
    sm.tasks = evaluate_tasks(pm, ym, mm, users.empty() ? std::span<const std::int64_t>() : std::span<const std::int64_t>(u),
                              kinds, names, weights.empty() ? std::span<const float>() : std::span<const float>(w),
                              log_loss_eps);
    out.push_back(std::move(sm));
  }
  return out;
}

}  // namespace mtrank::train
