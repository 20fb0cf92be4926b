// Finite-difference gradient checker, in double.
//
// Blocks are templates over the scalar type, so a test instantiates the block for double,
// defines loss = <r, forward(x)> for a fixed random r (then dL/dy = r), and lets this checker
// compare the analytic gradients (from backward) with central differences
// (L(w + eps) - L(w - eps)) / (2 eps) for every parameter and input element (or a
// deterministic sample of them for large tensors).
#pragma once
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "mtrank/core/arena.hpp"

namespace mtrank {

struct GradCheckOptions {
  double eps = 1e-6;
  double tolerance = 1e-6;     // on |analytic - numeric| / max(1, |analytic|, |numeric|)
  Index max_per_tensor = 200;  // elements checked per tensor (sampled deterministically beyond)
  std::uint64_t seed = 7;
};

/// An input tensor to check: `value` is perturbed, `grad` holds the analytic gradient
/// written by the backward callback.
struct GradCheckInput {
  std::string name;
  double* value = nullptr;
  const double* grad = nullptr;
  Index size = 0;
};

struct GradCheckReport {
  double max_error = 0;
  std::string worst;  // "name[i]: analytic A numeric N"
  Index checked = 0;
  bool ok(double tol) const { return max_error <= tol; }
};

/// `loss()` runs the forward pass and returns the scalar loss; `analytic()` runs forward and
/// backward so that arena grads (zeroed by the checker first) and input grads are filled.
inline GradCheckReport grad_check(ParameterArenaT<double>& arena, const std::function<double()>& loss,
                                  const std::function<void()>& analytic,
                                  std::vector<GradCheckInput> inputs = {}, GradCheckOptions opt = {}) {
  arena.zero_grad();
  analytic();
  // Snapshot analytic gradients before the loss() calls below run forward again.
  struct Target {
    std::string name;
    double* value;
    std::vector<double> grad;
  };
  std::vector<Target> targets;
  for (auto& p : arena.parameters()) {
    if (!p.trainable) continue;
    Target t{p.name, p.value, std::vector<double>(static_cast<std::size_t>(p.numel()), 0.0)};
    if (p.sparse) {
      const Index w = p.sparse_grad.width();
      const auto& rows = p.sparse_grad.rows();
      for (std::size_t s = 0; s < rows.size(); ++s)
        for (Index c = 0; c < w; ++c) t.grad[rows[s] * w + c] = p.sparse_grad.values()[s * w + c];
    } else {
      for (Index i = 0; i < p.numel(); ++i) t.grad[i] = p.grad[i];
    }
    targets.push_back(std::move(t));
  }
  for (auto& in : inputs)
    targets.push_back({in.name, in.value, std::vector<double>(in.grad, in.grad + in.size)});

  GradCheckReport report;
  Rng rng(opt.seed);
  for (auto& t : targets) {
    const Index n = static_cast<Index>(t.grad.size());
    const Index count = std::min(n, opt.max_per_tensor);
    for (Index k = 0; k < count; ++k) {
      const Index i = n <= opt.max_per_tensor ? k : static_cast<Index>(rng.below(static_cast<std::uint64_t>(n)));
      const double saved = t.value[i];
      t.value[i] = saved + opt.eps;
      const double lp = loss();
      t.value[i] = saved - opt.eps;
      const double lm = loss();
      t.value[i] = saved;
      const double numeric = (lp - lm) / (2 * opt.eps);
      const double a = t.grad[i];
      const double err = std::abs(a - numeric) / std::max({1.0, std::abs(a), std::abs(numeric)});
      ++report.checked;
      if (err > report.max_error) {
        report.max_error = err;
        std::ostringstream os;
        os << t.name << "[" << i << "]: analytic " << a << " numeric " << numeric;
        report.worst = os.str();
      }
    }
  }
  return report;
}

/// <r, y> for a matrix view: the standard scalar loss used with grad_check.
inline double dot_loss(MatrixView<const double> y, const std::vector<double>& r) {
  double s = 0;
  for (Index i = 0; i < y.rows; ++i)
    for (Index j = 0; j < y.cols; ++j) s += y(i, j) * r[static_cast<std::size_t>(i * y.cols + j)];
  return s;
}

}  // namespace mtrank
