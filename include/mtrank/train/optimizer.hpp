// Optimisers over a ParameterArena: SGD (momentum, Nesterov), Adam, AdamW, Adagrad and
// FTRL-Proximal, with row-wise (lazy) updates for sparse parameters.
//
// step(arena) updates every trainable parameter once and increments the global step t:
//   * dense parameters from p.grad (all elements);
//   * sparse parameters (embedding tables, p.sparse) from p.sparse_grad: ONLY the touched rows
//     p.sparse_grad.rows() change, weights and optimiser state alike; every other row stays
//     bit-identical (PyTorch SparseAdam / sparse Adagrad semantics). Bias corrections and
//     learning-rate decay use the global step t.
// Gradients are read, never cleared: call arena.zero_grad() between steps.
//
// Per-element rules (g = gradient, w = weight; all state starts at 0 unless noted):
//   SGD      d = g + wd·w;  b = d at the first step, else b = μ·b + (1−dampening)·d;
//            d = nesterov ? d + μ·b : b  (μ > 0);  w ← w − lr·d             (torch.optim.SGD)
//   Adam     g ← g + wd·w;  m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²;
//            w ← w − lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)                 (torch.optim.Adam)
//   AdamW    w ← w·(1 − lr·wd), then Adam without the L2 term               (torch.optim.AdamW)
//   Adagrad  g ← g + wd·w;  s += g²  (s starts at initial_accumulator_value);
//            w ← w − lr/(1 + (t−1)·lr_decay) · g / (√s + ε)                 (torch.optim.Adagrad)
//   FTRL     n' = n + g²;  σ = (√n' − √n)/α;  z += g − σ·w;  n = n';
//            w = 0 if |z| ≤ λ1 else −(z − sign(z)·λ1) / ((β + √n)/α + λ2)    (McMahan et al. 2013)
//            (n starts at initial_accumulator_value; z at 0)
// Sparse rows differ from the dense rules in one place: an SGD momentum buffer row first
// touched after step 1 starts from 0 (b = μ·0 + (1−dampening)·d), which equals the dense
// rule when dampening = 0 (the default).
//
// The per-row arithmetic is in flat functions on raw pointers (sgd_update_row, ...) so that
// SIMD variants can be dispatched later; a dense parameter is one "row" of numel elements.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::train {

// ---- options (PyTorch defaults where PyTorch has the optimiser) ----

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;  // requires momentum > 0 and dampening = 0 (as torch)
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2 added to the gradient (Adam); decoupled decay (AdamW)
};

/// AdamW: same fields, weight_decay defaults to 1e-2 as torch.optim.AdamW.
struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

struct AdagradOptions {
  double lr = 1e-2;
  double lr_decay = 0.0;
  double weight_decay = 0.0;
  double initial_accumulator_value = 0.0;
  double eps = 1e-10;
};

struct FtrlOptions {
  double alpha = 0.05;  // learning rate α
  double beta = 1.0;    // β (smooths the per-coordinate rate at the start)
  double l1 = 0.0;      // λ1
  double l2 = 0.0;      // λ2
  double initial_accumulator_value = 0.0;  // n at start
};

// ---- per-row update kernels (scalar reference; n elements, in place) ----

struct SgdRowParams {
  float lr, momentum, dampening, weight_decay;
  bool nesterov;
  bool first;  // momentum buffer is fresh: b = d (dense parameters at their first step)
};
/// buf may be nullptr when momentum == 0.
void sgd_update_row(float* w, float* buf, const float* g, Index n, const SgdRowParams& p);

struct AdamRowParams {
  float lr, beta1, beta2, eps, weight_decay;
  double bias_correction1, bias_correction2;  // 1 − β1^t, 1 − β2^t
  bool decoupled;  // AdamW
};
void adam_update_row(float* w, float* m, float* v, const float* g, Index n, const AdamRowParams& p);

struct AdagradRowParams {
  float clr, weight_decay, eps;  // clr = lr / (1 + (t − 1)·lr_decay)
};
void adagrad_update_row(float* w, float* sum, const float* g, Index n, const AdagradRowParams& p);

struct FtrlRowParams {
  double alpha, beta, l1, l2;
};
void ftrl_update_row(float* w, float* z, float* nacc, const float* g, Index n, const FtrlRowParams& p);

// ---- the optimiser interface ----

using OptimizerState = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// One update of every trainable parameter of `arena` (see the file comment).
  void step(ParameterArena& arena);

  /// "sgd", "adam", "adamw", "adagrad", "ftrl": also the prefix of state names.
  virtual const char* name() const = 0;
  /// The learning rate (α for FTRL); set_lr is for schedules.
  virtual double lr() const = 0;
  virtual void set_lr(double lr) = 0;
  std::int64_t step_count() const { return step_; }

  /// Optimiser state for checkpoints: "<name>.<buffer>.<parameter name>" tensors shaped like
  /// the parameter (e.g. "adam.exp_avg.mlp.layers.0.weight") in arena order, and
  /// "<name>.step" = [step / 2^24, step mod 2^24] (two exact floats; a 1-element tensor is
  /// accepted on load). Hyper-parameters are not part of the state: they come from the config.
  OptimizerState state() const;
  /// Restores state() output for the same arena layout. Strict: every entry must name a
  /// trainable parameter of `arena` with the same shape, each parameter has all of this
  /// optimiser's buffers or none, the step is present, and once step > 0 every trainable
  /// parameter must have state. On error nothing changes. Resuming gives bit-identical steps.
  void load_state(const OptimizerState& state, const ParameterArena& arena);

 protected:
  struct Slot {
    std::string param;
    Shape shape;
    std::vector<Tensor> buf;  // one per buffer_names() entry
  };
  Optimizer() = default;
  /// Buffer names in state order (e.g. {"exp_avg", "exp_avg_sq"}).
  virtual std::vector<std::string> buffer_names() const = 0;
  /// Initial value of buffer i (0 except accumulators).
  virtual float buffer_init(std::size_t i) const { return 0.0f; }
  /// Called once per step() after the step count was incremented.
  virtual void begin_step() {}
  /// Update `n` contiguous elements: the whole of a dense parameter (row = false, fresh when its
  /// state was created in this step) or one touched row of a sparse one (row = true). Called
  /// concurrently on disjoint pieces (64-aligned chunks of a dense parameter, distinct rows):
  /// it must be elementwise and must not write members.
  virtual void update(float* w, float* const* buf, const float* g, Index n, bool row, bool fresh) = 0;

  std::int64_t step_ = 0;

 private:
  Slot& slot_for(const Parameter<float>& p, bool& created);
  std::vector<Slot> slots_;
  std::unordered_map<std::string, std::size_t> index_;
  static constexpr std::size_t kMaxBuffers = 8;
  struct WorkChunk {  // elements [begin, end) of a dense parameter or touched rows [begin, end) of a sparse one
    Parameter<float>* param;
    std::size_t slot;
    std::size_t begin, end;
    bool fresh;  // dense state created in this step
  };
  std::vector<WorkChunk> work_;  // reused across steps (no per-step allocation)
};

class Sgd final : public Optimizer {
 public:
  explicit Sgd(SgdOptions opt = {});
  const char* name() const override { return "sgd"; }
  double lr() const override { return opt_.lr; }
  void set_lr(double lr) override;
  const SgdOptions& options() const { return opt_; }

 private:
  std::vector<std::string> buffer_names() const override;
  void update(float* w, float* const* buf, const float* g, Index n, bool row, bool fresh) override;
  SgdOptions opt_;
};

class Adam : public Optimizer {
 public:
  explicit Adam(AdamOptions opt = {}) : Adam(opt, false) {}
  const char* name() const override { return decoupled_ ? "adamw" : "adam"; }
  double lr() const override { return opt_.lr; }
  void set_lr(double lr) override;
  const AdamOptions& options() const { return opt_; }
  bool decoupled() const { return decoupled_; }

 protected:
  Adam(AdamOptions opt, bool decoupled);

 private:
  std::vector<std::string> buffer_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  void begin_step() override;
  void update(float* w, float* const* buf, const float* g, Index n, bool row, bool fresh) override;
  AdamOptions opt_;
  bool decoupled_ = false;
  AdamRowParams rp_{};
};

/// Adam with decoupled weight decay; name() == "adamw".
class AdamW final : public Adam {
 public:
  explicit AdamW(AdamWOptions o = {})
      : Adam({.lr = o.lr, .beta1 = o.beta1, .beta2 = o.beta2, .eps = o.eps, .weight_decay = o.weight_decay}, true) {}
};

class Adagrad final : public Optimizer {
 public:
  explicit Adagrad(AdagradOptions opt = {});
  const char* name() const override { return "adagrad"; }
  double lr() const override { return opt_.lr; }
  void set_lr(double lr) override;
  const AdagradOptions& options() const { return opt_; }

 private:
  std::vector<std::string> buffer_names() const override { return {"sum"}; }
  float buffer_init(std::size_t) const override { return static_cast<float>(opt_.initial_accumulator_value); }
  void begin_step() override;
  void update(float* w, float* const* buf, const float* g, Index n, bool row, bool fresh) override;
  AdagradOptions opt_;
  AdagradRowParams rp_{};
};

class Ftrl final : public Optimizer {
 public:
  explicit Ftrl(FtrlOptions opt = {});
  const char* name() const override { return "ftrl"; }
  double lr() const override { return opt_.alpha; }
  void set_lr(double lr) override;
  const FtrlOptions& options() const { return opt_; }

 private:
  std::vector<std::string> buffer_names() const override { return {"z", "n"}; }
  float buffer_init(std::size_t i) const override {
    return i == 1 ? static_cast<float>(opt_.initial_accumulator_value) : 0.0f;
  }
  void update(float* w, float* const* buf, const float* g, Index n, bool row, bool fresh) override;
  FtrlOptions opt_;
};

/// Builds an optimiser from {"type": "sgd"|"adam"|"adamw"|"adagrad"|"ftrl", ...options}.
/// Option keys are the struct fields; Adam/AdamW also accept "betas": [β1, β2] (as torch);
/// FTRL accepts "lr" as an alias of "alpha". Unknown keys and bad values throw mtrank::Error
/// naming "<path>.<field>".
std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& config, const std::string& path = "optimizer");

}  // namespace mtrank::train
