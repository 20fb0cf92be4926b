#include "mtrank/train/loss.hpp"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "mtrank/io/json_util.hpp"

namespace mtrank::train {

const char* loss_kind_name(LossKind k) {
  switch (k) {
    case LossKind::bce_with_logits: return "bce_with_logits";
    case LossKind::mse: return "mse";
    case LossKind::huber: return "huber";
  }
  return "?";
}

LossKind parse_loss_kind(const std::string& s, const std::string& field) {
  if (s == "bce_with_logits" || s == "bce") return LossKind::bce_with_logits;
  if (s == "mse") return LossKind::mse;
  if (s == "huber") return LossKind::huber;
  fail(field, ": unknown loss '", s, "' (expected one of: bce_with_logits, mse, huber)");
}

namespace {
void validate_spec(const TaskLossSpec& t, std::size_t k) {
  if (!(std::isfinite(t.weight) && t.weight >= 0))
    fail("loss task ", k, " ('", t.name, "'): weight must be finite and >= 0, got ", t.weight);
  if (t.kind == LossKind::huber && !(std::isfinite(t.huber_delta) && t.huber_delta > 0))
    fail("loss task ", k, " ('", t.name, "'): huber_delta must be finite and > 0, got ", t.huber_delta);
}
}  // namespace

std::vector<TaskLossSpec> parse_task_loss_specs(const nlohmann::json& j, const std::string& path) {
  if (!j.is_array()) fail(path, ": expected an array of task loss specs");
  std::vector<TaskLossSpec> out;
  for (std::size_t k = 0; k < j.size(); ++k) {
    const std::string p = path + "[" + std::to_string(k) + "]";
    io::reject_unknown_keys(j[k], {"name", "loss", "weight", "huber_delta"}, p);
    TaskLossSpec t;
    t.name = io::get_optional<std::string>(j[k], "name", p, "a string", "task" + std::to_string(k));
    t.kind = parse_loss_kind(io::get_optional<std::string>(j[k], "loss", p, "a string", "bce_with_logits"), p + ".loss");
    t.weight = io::get_optional<double>(j[k], "weight", p, "a number", 1.0);
    t.huber_delta = io::get_optional<double>(j[k], "huber_delta", p, "a number", 1.0);
    validate_spec(t, k);
    out.push_back(std::move(t));
  }
  return out;
}

template <class T>
double element_loss(LossKind kind, double delta, T xt, T yt, double* dldx) {
  const double x = xt, y = yt;
  switch (kind) {
    case LossKind::bce_with_logits: {
      // log(1 + e^{-|x|}) never overflows; σ(x) from the same exponential.
      const double e = std::exp(-std::abs(x));
      if (dldx) *dldx = (x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e)) - y;
      return std::max(x, 0.0) - x * y + std::log1p(e);
    }
    case LossKind::mse: {
      const double d = x - y;
      if (dldx) *dldx = 2 * d;
      return d * d;
    }
    case LossKind::huber: {
      const double d = x - y, a = std::abs(d);
      if (a <= delta) {
        if (dldx) *dldx = d;
        return 0.5 * d * d;
      }
      if (dldx) *dldx = d > 0 ? delta : -delta;
      return delta * (a - 0.5 * delta);
    }
  }
  return 0;
}

template <class T>
MultiTaskLoss<T>::MultiTaskLoss(std::vector<TaskLossSpec> tasks) : tasks_(std::move(tasks)) {
  require(!tasks_.empty(), "MultiTaskLoss: no tasks");
  for (std::size_t k = 0; k < tasks_.size(); ++k) {
    if (tasks_[k].name.empty()) tasks_[k].name = "task" + std::to_string(k);
    validate_spec(tasks_[k], k);
  }
}

template <class T>
LossResult MultiTaskLoss<T>::compute(MatrixView<const T> outputs, MatrixView<const T> labels, MatrixView<const T> mask,
                                     std::span<const T> sample_weight, MatrixView<T> grad) const {
  const Index K = num_tasks(), B = outputs.rows;
  require(K > 0, "MultiTaskLoss: not initialised with tasks");
  require_shape(outputs, B, K, "loss: outputs");
  require_shape(labels, B, K, "loss: labels");
  const bool has_mask = mask.data != nullptr, has_grad = grad.data != nullptr;
  if (has_mask) require_shape(mask, B, K, "loss: mask");
  if (has_grad) require_shape(grad, B, K, "loss: grad");
  if (!sample_weight.empty() && static_cast<Index>(sample_weight.size()) != B)
    fail("loss: sample_weight has ", sample_weight.size(), " entries, expected ", B, " (one per row) or none");

  LossResult r;
  r.task_loss.assign(K, 0.0);
  r.task_count.assign(K, 0);
  r.task_weight_sum.assign(K, 0.0);
  // Pass 1: validate, sum weights per task (the mean's denominator).
  for (Index b = 0; b < B; ++b) {
    const double w = sample_weight.empty() ? 1.0 : double(sample_weight[b]);
    if (!(std::isfinite(w) && w >= 0)) fail("loss: sample_weight of row ", b, " is ", w, " (expected finite and >= 0)");
    for (Index k = 0; k < K; ++k) {
      const TaskLossSpec& t = tasks_[k];
      const T x = outputs(b, k);
      if (!std::isfinite(x)) fail("loss: task '", t.name, "' row ", b, ": output is ", double(x), " (expected finite)");
      const T m = has_mask ? mask(b, k) : T(1);
      if (m != T(0) && m != T(1)) fail("loss: task '", t.name, "' row ", b, ": mask is ", double(m), " (expected 0 or 1)");
      if (m == T(0)) continue;
      const T y = labels(b, k);
      if (!std::isfinite(y)) fail("loss: task '", t.name, "' row ", b, ": label is ", double(y), " (expected finite)");
      if (t.kind == LossKind::bce_with_logits && (y < T(0) || y > T(1)))
        fail("loss: task '", t.name, "' row ", b, ": label ", double(y), " outside [0, 1] for bce_with_logits");
      ++r.task_count[k];
      r.task_weight_sum[k] += w;
    }
  }
  // Pass 2: losses and gradients. d(total)/dx_bk = λ_k w_b m_bk ℓ'(x, y) / W_k.
  std::vector<double> coef(K);
  for (Index k = 0; k < K; ++k) coef[k] = r.task_weight_sum[k] > 0 ? 1.0 / r.task_weight_sum[k] : 0.0;
  for (Index b = 0; b < B; ++b) {
    const double w = sample_weight.empty() ? 1.0 : double(sample_weight[b]);
    for (Index k = 0; k < K; ++k) {
      const bool present = !has_mask || mask(b, k) != T(0);
      if (!present || coef[k] == 0.0) {
        if (has_grad) grad(b, k) = T(0);
        continue;
      }
      const TaskLossSpec& t = tasks_[k];
      double d = 0;
      const double l = element_loss<T>(t.kind, t.huber_delta, outputs(b, k), labels(b, k), has_grad ? &d : nullptr);
      r.task_loss[k] += w * l;
      if (has_grad) grad(b, k) = static_cast<T>(t.weight * w * coef[k] * d);
    }
  }
  for (Index k = 0; k < K; ++k) {
    r.task_loss[k] *= coef[k];
    r.total += tasks_[k].weight * r.task_loss[k];
  }
  return r;
}

template <class T>
void scale_task_gradients(MatrixView<T> grad, std::span<const double> scale) {
  if (static_cast<Index>(scale.size()) != grad.cols)
    fail("scale_task_gradients: ", scale.size(), " scales for ", grad.cols, " task columns");
  for (Index b = 0; b < grad.rows; ++b) {
    T* g = grad.row(b);
    for (Index k = 0; k < grad.cols; ++k) g[k] = static_cast<T>(g[k] * scale[k]);
  }
}

template <class T>
double bpr_loss(std::span<const T> scores, std::span<const std::pair<Index, Index>> pairs, std::span<T> grad,
                std::span<const T> pair_weight, double scale) {
  const Index n = static_cast<Index>(scores.size());
  if (!grad.empty() && grad.size() != scores.size())
    fail("bpr_loss: grad has ", grad.size(), " entries, expected ", scores.size(), " (one per score) or none");
  if (!pair_weight.empty() && pair_weight.size() != pairs.size())
    fail("bpr_loss: pair_weight has ", pair_weight.size(), " entries, expected ", pairs.size(), " (one per pair) or none");
  double wsum = 0;
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    auto [i, j] = pairs[p];
    if (i < 0 || i >= n || j < 0 || j >= n)
      fail("bpr_loss: pair ", p, " = (", i, ", ", j, ") out of range for ", n, " scores");
    if (!std::isfinite(scores[i])) fail("bpr_loss: pair ", p, ": positive score[", i, "] is ", double(scores[i]));
    if (!std::isfinite(scores[j])) fail("bpr_loss: pair ", p, ": negative score[", j, "] is ", double(scores[j]));
    const double w = pair_weight.empty() ? 1.0 : double(pair_weight[p]);
    if (!(std::isfinite(w) && w >= 0)) fail("bpr_loss: pair_weight[", p, "] is ", w, " (expected finite and >= 0)");
    wsum += w;
  }
  if (wsum <= 0) return 0.0;
  double loss = 0;
  for (std::size_t p = 0; p < pairs.size(); ++p) {
    auto [i, j] = pairs[p];
    const double w = pair_weight.empty() ? 1.0 : double(pair_weight[p]);
    const double d = double(scores[i]) - double(scores[j]);
    const double e = std::exp(-std::abs(d));
    loss += w * (std::max(-d, 0.0) + std::log1p(e));
    if (!grad.empty()) {
      // d/dd [−log σ(d)] = −σ(−d)
      const double sig_neg = d >= 0 ? e / (1.0 + e) : 1.0 / (1.0 + e);
      const double g = -scale * w * sig_neg / wsum;
      grad[i] = static_cast<T>(grad[i] + g);
      grad[j] = static_cast<T>(grad[j] - g);
    }
  }
  return loss / wsum;
}

template class MultiTaskLoss<float>;
template class MultiTaskLoss<double>;
template double element_loss<float>(LossKind, double, float, float, double*);
template double element_loss<double>(LossKind, double, double, double, double*);
template void scale_task_gradients<float>(MatrixView<float>, std::span<const double>);
template void scale_task_gradients<double>(MatrixView<double>, std::span<const double>);
template double bpr_loss<float>(std::span<const float>, std::span<const std::pair<Index, Index>>, std::span<float>,
                                std::span<const float>, double);
template double bpr_loss<double>(std::span<const double>, std::span<const std::pair<Index, Index>>, std::span<double>,
                                 std::span<const double>, double);

}  // namespace mtrank::train
