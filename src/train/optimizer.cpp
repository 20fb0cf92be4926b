#include "mtrank/train/optimizer.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "mtrank/core/threading.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/kernels/optimizer_rows.hpp"

namespace mtrank::train {

// ---------------------------------------------------------------------------------------
// Row kernels: the per-step float constants are computed here exactly as torch.optim's
// single-tensor code does, and the element loop runs in the dispatched optimiser-row kernel
// family (kernels/optimizer_rows.hpp). Its AVX2 / AVX-512 variants are bit-identical to the
// scalar reference (no fused multiply-add; +, *, /, sqrt are correctly rounded on every ISA),
// so a resumed run gives the same bits whatever MTRANK_ISA is.

void sgd_update_row(float* w, float* buf, const float* g, Index n, const SgdRowParams& p) {
  const kernels::SgdRowArgs a{-p.lr, p.momentum, 1.0f - p.dampening, p.weight_decay, p.nesterov, p.first};
  kernels::optimizer_row_kernels().f32_sgd_row(w, buf, g, n, a);
}

void adam_update_row(float* w, float* m, float* v, const float* g, Index n, const AdamRowParams& p) {
  const kernels::AdamRowArgs a{p.beta1,
                               p.beta2,
                               static_cast<float>(1.0 - double(p.beta1)),
                               static_cast<float>(1.0 - double(p.beta2)),
                               -static_cast<float>(double(p.lr) / p.bias_correction1),
                               static_cast<float>(std::sqrt(p.bias_correction2)),
                               p.eps,
                               p.weight_decay,
                               static_cast<float>(1.0 - double(p.lr) * double(p.weight_decay)),
                               p.decoupled};
  kernels::optimizer_row_kernels().f32_adam_row(w, m, v, g, n, a);
}

void adagrad_update_row(float* w, float* sum, const float* g, Index n, const AdagradRowParams& p) {
  kernels::optimizer_row_kernels().f32_adagrad_row(w, sum, g, n, kernels::AdagradRowArgs{-p.clr, p.weight_decay, p.eps});
}

void ftrl_update_row(float* w, float* z, float* nacc, const float* g, Index n, const FtrlRowParams& p) {
  kernels::optimizer_row_kernels().f32_ftrl_row(w, z, nacc, g, n, kernels::FtrlRowArgs{p.alpha, p.beta, p.l1, p.l2});
}

// ---------------------------------------------------------------------------------------
// Optimizer base: state slots and the walk over the arena.

Optimizer::Slot& Optimizer::slot_for(const Parameter<float>& p, bool& created) {
  created = false;
  auto it = index_.find(p.name);
  if (it != index_.end()) {
    Slot& s = slots_[it->second];
    if (!(s.shape == p.shape))
      fail(name(), ": state of parameter '", p.name, "' has shape ", s.shape, " but the parameter has shape ", p.shape);
    return s;
  }
  Slot s;
  s.param = p.name;
  s.shape = p.shape;
  auto names = buffer_names();
  for (std::size_t i = 0; i < names.size(); ++i) s.buf.emplace_back(p.shape, buffer_init(i));
  index_.emplace(p.name, slots_.size());
  slots_.push_back(std::move(s));
  created = true;
  return slots_.back();
}

// The row kernels are bit-identical to their reference on any sub-range, which is what lets the
// step split parameters into chunks over threads without changing a bit. Training at batch 1024
// with 2 threads spent ~12% of the step here when it ran single-threaded.
void Optimizer::step(ParameterArena& arena) {
  ++step_;
  begin_step();
  // The step is a list of independent pieces of work: 64-aligned chunks of dense parameters and
  // chunks of the touched rows of sparse ones (rows are distinct). The chunks do not depend on
  // the thread count and update() is elementwise, so the result is bit-identical for any count;
  // one parallel region with dynamic scheduling keeps both threads busy on models made of many
  // small tensors, where a region per parameter would leave one thread waiting.
  constexpr Index kDenseChunk = Index(1) << 15;  // elements
  constexpr std::size_t kRowsPerChunk = 256;
  std::vector<WorkChunk>& work = work_;
  work.clear();
  double elements = 0;
  for (Parameter<float>& p : arena.parameters()) {
    if (!p.trainable) continue;
    bool created = false;
    Slot& s = slot_for(p, created);
    require(s.buf.size() <= kMaxBuffers, name(), ": more than ", kMaxBuffers, " state buffers per parameter");
    const std::size_t slot = static_cast<std::size_t>(&s - slots_.data());
    if (!p.sparse) {
      require(p.grad != nullptr, name(), ": parameter '", p.name, "' has no gradient buffer");
      for (Index b = 0; b < p.numel(); b += kDenseChunk)
        work.push_back({&p, slot, static_cast<std::size_t>(b), static_cast<std::size_t>(std::min(p.numel(), b + kDenseChunk)),
                        created});
      elements += double(p.numel());
      continue;
    }
    const Index rows = p.shape[0];
    const auto& touched = p.sparse_grad.rows();
    for (const Index r : touched)
      if (r < 0 || r >= rows) fail(name(), ": parameter '", p.name, "': gradient row ", r, " outside [0, ", rows, ")");
    for (std::size_t b = 0; b < touched.size(); b += kRowsPerChunk)
      work.push_back({&p, slot, b, std::min(touched.size(), b + kRowsPerChunk), false});
    elements += double(touched.size()) * double(p.sparse_grad.width());
  }
  auto run = [this](const WorkChunk& c) {
    Parameter<float>& p = *c.param;
    Slot& slot = slots_[c.slot];
    const std::size_t nb = slot.buf.size();
    float* local[kMaxBuffers];
    if (!p.sparse) {
      const Index lo = static_cast<Index>(c.begin), n = static_cast<Index>(c.end - c.begin);
      for (std::size_t i = 0; i < nb; ++i) local[i] = slot.buf[i].data() + lo;
      update(p.value + lo, local, p.grad + lo, n, false, c.fresh);
      return;
    }
    const Index width = p.sparse_grad.width();
    const auto& touched = p.sparse_grad.rows();
    const float* gv = p.sparse_grad.values();
    for (std::size_t t = c.begin; t < c.end; ++t) {
      const Index r = touched[t];
      for (std::size_t i = 0; i < nb; ++i) local[i] = slot.buf[i].data() + r * width;
      update(p.value + r * width, local, gv + static_cast<Index>(t) * width, width, true, false);
    }
  };
  // Below ~64k elements a parallel region costs more than it saves.
  if (num_threads() > 1 && !omp_in_parallel() && work.size() > 1 && elements >= 65536.0) {
    apply_thread_setting();
    const auto n = static_cast<std::ptrdiff_t>(work.size());
#pragma omp parallel for schedule(dynamic, 1)
    for (std::ptrdiff_t c = 0; c < n; ++c) run(work[static_cast<std::size_t>(c)]);
  } else {
    for (const WorkChunk& c : work) run(c);
  }
  arena.mark_weights_changed();  // this arena's packed serving copies are stale (no other arena's)
}

namespace {
constexpr double kTwo24 = 16777216.0;

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }
}  // namespace

OptimizerState Optimizer::state() const {
  OptimizerState out;
  const auto names = buffer_names();
  Tensor st(Shape{2});
  st[0] = static_cast<float>(std::floor(double(step_) / kTwo24));
  st[1] = static_cast<float>(step_ - static_cast<std::int64_t>(st[0]) * static_cast<std::int64_t>(kTwo24));
  out.emplace_back(std::string(name()) + ".step", std::move(st));
  for (const Slot& s : slots_)
    for (std::size_t i = 0; i < names.size(); ++i)
      out.emplace_back(std::string(name()) + "." + names[i] + "." + s.param, s.buf[i]);
  return out;
}

void Optimizer::load_state(const OptimizerState& state, const ParameterArena& arena) {
  const std::string prefix = std::string(name()) + ".";
  const auto names = buffer_names();
  std::int64_t step = -1;
  // Collect buffers per parameter, in arena order.
  std::unordered_map<std::string, std::vector<const Tensor*>> found;
  std::unordered_set<std::string> seen;
  for (const auto& [key, t] : state) {
    if (!seen.insert(key).second) fail(name(), " state: duplicate entry '", key, "'");
    if (!starts_with(key, prefix)) fail(name(), " state: entry '", key, "' does not belong to this optimiser (expected prefix '", prefix, "')");
    const std::string rest = key.substr(prefix.size());
    if (rest == "step") {
      bool ok = (t.numel() == 1 || t.numel() == 2);
      for (Index i = 0; ok && i < t.numel(); ++i) ok = std::isfinite(t[i]) && t[i] >= 0 && std::floor(t[i]) == t[i];
      if (!ok) fail(name(), " state: '", key, "' must hold 1 or 2 non-negative integers, got shape ", t.shape());
      if (t.numel() == 1) step = static_cast<std::int64_t>(t[0]);
      else {
        if (t[1] >= kTwo24) fail(name(), " state: '", key, "' low part ", t[1], " >= 2^24");
        step = static_cast<std::int64_t>(t[0]) * static_cast<std::int64_t>(kTwo24) + static_cast<std::int64_t>(t[1]);
      }
      continue;
    }
    std::size_t b = names.size();
    for (std::size_t i = 0; i < names.size(); ++i)
      if (starts_with(rest, names[i] + ".")) {
        b = i;
        break;
      }
    if (b == names.size()) {
      std::string list;
      for (auto& n : names) list += (list.empty() ? "" : ", ") + n;
      fail(name(), " state: entry '", key, "' names no buffer of this optimiser (buffers: ", list.empty() ? "none" : list, ")");
    }
    const std::string param = rest.substr(names[b].size() + 1);
    const Parameter<float>* p = arena.find(param);
    if (!p) fail(name(), " state: entry '", key, "' refers to unknown parameter '", param, "'");
    if (!p->trainable) fail(name(), " state: entry '", key, "' refers to non-trainable parameter '", param, "'");
    if (!(t.shape() == p->shape))
      fail(name(), " state: entry '", key, "' has shape ", t.shape(), ", parameter '", param, "' has shape ", p->shape);
    for (Index i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t[i])) fail(name(), " state: entry '", key, "' element ", i, " is ", t[i]);
    auto& v = found[param];
    v.resize(names.size(), nullptr);
    v[b] = &t;
  }
  if (step < 0) fail(name(), " state: missing entry '", prefix, "step'");
  std::vector<Slot> slots;
  std::unordered_map<std::string, std::size_t> index;
  for (const Parameter<float>& p : arena.parameters()) {
    if (!p.trainable) continue;
    auto it = found.find(p.name);
    if (it == found.end()) {
      if (step > 0 && !names.empty())
        fail(name(), " state: no state for trainable parameter '", p.name, "' (expected '", prefix, names[0], ".",
             p.name, "' at step ", step, ")");
      if (names.empty() && step > 0) {  // stateless optimiser: keep a slot so shapes are checked
        index.emplace(p.name, slots.size());
        slots.push_back({p.name, p.shape, {}});
      }
      continue;
    }
    Slot s{p.name, p.shape, {}};
    for (std::size_t b = 0; b < names.size(); ++b) {
      if (!it->second[b]) fail(name(), " state: missing entry '", prefix, names[b], ".", p.name, "'");
      s.buf.push_back(*it->second[b]);
    }
    index.emplace(p.name, slots.size());
    slots.push_back(std::move(s));
  }
  slots_ = std::move(slots);
  index_ = std::move(index);
  step_ = step;
}

// ---------------------------------------------------------------------------------------
// The optimisers.

namespace {
void check_lr(const char* opt, double lr) {
  if (!(std::isfinite(lr) && lr >= 0)) fail(opt, ": lr must be finite and >= 0, got ", lr);
}
void check_nonneg(const char* opt, const char* field, double v) {
  if (!(std::isfinite(v) && v >= 0)) fail(opt, ": ", field, " must be finite and >= 0, got ", v);
}
void check_beta(const char* opt, const char* field, double v) {
  if (!(v >= 0 && v < 1)) fail(opt, ": ", field, " must be in [0, 1), got ", v);
}
}  // namespace

Sgd::Sgd(SgdOptions opt) : opt_(opt) {
  check_lr("sgd", opt.lr);
  check_nonneg("sgd", "momentum", opt.momentum);
  check_nonneg("sgd", "weight_decay", opt.weight_decay);
  if (!(opt.dampening >= 0 && opt.dampening <= 1)) fail("sgd: dampening must be in [0, 1], got ", opt.dampening);
  if (opt.nesterov && (opt.momentum <= 0 || opt.dampening != 0))
    fail("sgd: nesterov requires momentum > 0 and dampening = 0 (momentum ", opt.momentum, ", dampening ",
         opt.dampening, ")");
}
void Sgd::set_lr(double lr) {
  check_lr("sgd", lr);
  opt_.lr = lr;
}
std::vector<std::string> Sgd::buffer_names() const {
  if (opt_.momentum != 0) return {"momentum_buffer"};
  return {};
}
void Sgd::update(float* w, float* const* buf, const float* g, Index n, bool row, bool fresh) {
  SgdRowParams p{static_cast<float>(opt_.lr), static_cast<float>(opt_.momentum), static_cast<float>(opt_.dampening),
                 static_cast<float>(opt_.weight_decay), opt_.nesterov, !row && fresh};
  sgd_update_row(w, opt_.momentum != 0 ? buf[0] : nullptr, g, n, p);
}

namespace {
void check_adam(const char* opt, double lr, double b1, double b2, double eps, double wd) {
  check_lr(opt, lr);
  check_beta(opt, "beta1", b1);
  check_beta(opt, "beta2", b2);
  check_nonneg(opt, "eps", eps);
  check_nonneg(opt, "weight_decay", wd);
}
}  // namespace

Adam::Adam(AdamOptions opt, bool decoupled) : opt_(opt), decoupled_(decoupled) {
  check_adam(decoupled ? "adamw" : "adam", opt.lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
}
void Adam::set_lr(double lr) {
  check_lr(name(), lr);
  opt_.lr = lr;
}
void Adam::begin_step() {
  const double t = static_cast<double>(step_);
  rp_ = AdamRowParams{static_cast<float>(opt_.lr),
                      static_cast<float>(opt_.beta1),
                      static_cast<float>(opt_.beta2),
                      static_cast<float>(opt_.eps),
                      static_cast<float>(opt_.weight_decay),
                      1.0 - std::pow(opt_.beta1, t),
                      1.0 - std::pow(opt_.beta2, t),
                      decoupled_};
}
void Adam::update(float* w, float* const* buf, const float* g, Index n, bool, bool) {
  adam_update_row(w, buf[0], buf[1], g, n, rp_);
}

Adagrad::Adagrad(AdagradOptions opt) : opt_(opt) {
  check_lr("adagrad", opt.lr);
  check_nonneg("adagrad", "lr_decay", opt.lr_decay);
  check_nonneg("adagrad", "weight_decay", opt.weight_decay);
  check_nonneg("adagrad", "initial_accumulator_value", opt.initial_accumulator_value);
  check_nonneg("adagrad", "eps", opt.eps);
}
void Adagrad::set_lr(double lr) {
  check_lr("adagrad", lr);
  opt_.lr = lr;
}
void Adagrad::begin_step() {
  const double clr = opt_.lr / (1.0 + static_cast<double>(step_ - 1) * opt_.lr_decay);
  rp_ = AdagradRowParams{static_cast<float>(clr), static_cast<float>(opt_.weight_decay), static_cast<float>(opt_.eps)};
}
void Adagrad::update(float* w, float* const* buf, const float* g, Index n, bool, bool) {
  adagrad_update_row(w, buf[0], g, n, rp_);
}

Ftrl::Ftrl(FtrlOptions opt) : opt_(opt) {
  if (!(std::isfinite(opt.alpha) && opt.alpha > 0)) fail("ftrl: alpha must be finite and > 0, got ", opt.alpha);
  check_nonneg("ftrl", "beta", opt.beta);
  check_nonneg("ftrl", "l1", opt.l1);
  check_nonneg("ftrl", "l2", opt.l2);
  check_nonneg("ftrl", "initial_accumulator_value", opt.initial_accumulator_value);
  if (opt.beta == 0 && opt.l2 == 0 && opt.initial_accumulator_value == 0)
    fail("ftrl: beta, l2 and initial_accumulator_value are all 0: the first update would divide by zero");
}
void Ftrl::set_lr(double lr) {
  if (!(std::isfinite(lr) && lr > 0)) fail("ftrl: alpha must be finite and > 0, got ", lr);
  opt_.alpha = lr;
}
void Ftrl::update(float* w, float* const* buf, const float* g, Index n, bool, bool) {
  ftrl_update_row(w, buf[0], buf[1], g, n, FtrlRowParams{opt_.alpha, opt_.beta, opt_.l1, opt_.l2});
}

// ---------------------------------------------------------------------------------------

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& j, const std::string& path) {
  using io::get_optional;
  const std::string type = io::get_required<std::string>(j, "type", path, "a string: sgd, adam, adamw, adagrad or ftrl");
  auto num = [&](const char* key, double fallback) { return get_optional<double>(j, key, path, "a number", fallback); };
  // Option-struct validation names the optimiser and field; prefix it with the config path.
  auto build = [&](auto make) -> std::unique_ptr<Optimizer> {
    try {
      return make();
    } catch (const Error& e) {
      fail(path, ": ", e.what());
    }
  };
  auto betas = [&](double& b1, double& b2) {
    if (j.contains("betas")) {
      if (j.contains("beta1") || j.contains("beta2")) fail(path, ".betas: give either betas or beta1/beta2, not both");
      const auto& b = j["betas"];
      if (!b.is_array() || b.size() != 2 || !b[0].is_number() || !b[1].is_number())
        fail(path, ".betas: expected [beta1, beta2], got ", b.dump());
      b1 = b[0].get<double>();
      b2 = b[1].get<double>();
    } else {
      b1 = num("beta1", b1);
      b2 = num("beta2", b2);
    }
  };
  if (type == "sgd") {
    io::reject_unknown_keys(j, {"type", "lr", "momentum", "dampening", "weight_decay", "nesterov"}, path);
    SgdOptions o;
    o.lr = num("lr", o.lr);
    o.momentum = num("momentum", o.momentum);
    o.dampening = num("dampening", o.dampening);
    o.weight_decay = num("weight_decay", o.weight_decay);
    o.nesterov = get_optional<bool>(j, "nesterov", path, "a boolean", o.nesterov);
    return build([&] { return std::make_unique<Sgd>(o); });
  }
  if (type == "adam") {
    io::reject_unknown_keys(j, {"type", "lr", "betas", "beta1", "beta2", "eps", "weight_decay"}, path);
    AdamOptions o;
    o.lr = num("lr", o.lr);
    betas(o.beta1, o.beta2);
    o.eps = num("eps", o.eps);
    o.weight_decay = num("weight_decay", o.weight_decay);
    return build([&] { return std::make_unique<Adam>(o); });
  }
  if (type == "adamw") {
    io::reject_unknown_keys(j, {"type", "lr", "betas", "beta1", "beta2", "eps", "weight_decay"}, path);
    AdamWOptions o;
    o.lr = num("lr", o.lr);
    betas(o.beta1, o.beta2);
    o.eps = num("eps", o.eps);
    o.weight_decay = num("weight_decay", o.weight_decay);
    return build([&] { return std::make_unique<AdamW>(o); });
  }
  if (type == "adagrad") {
    io::reject_unknown_keys(j, {"type", "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps"}, path);
    AdagradOptions o;
    o.lr = num("lr", o.lr);
    o.lr_decay = num("lr_decay", o.lr_decay);
    o.weight_decay = num("weight_decay", o.weight_decay);
    o.initial_accumulator_value = num("initial_accumulator_value", o.initial_accumulator_value);
    o.eps = num("eps", o.eps);
    return build([&] { return std::make_unique<Adagrad>(o); });
  }
  if (type == "ftrl") {
    io::reject_unknown_keys(j, {"type", "alpha", "lr", "beta", "l1", "l2", "initial_accumulator_value"}, path);
    FtrlOptions o;
    if (j.contains("alpha") && j.contains("lr")) fail(path, ".lr: give either alpha or lr (its alias), not both");
    o.alpha = num("alpha", num("lr", o.alpha));
    o.beta = num("beta", o.beta);
    o.l1 = num("l1", o.l1);
    o.l2 = num("l2", o.l2);
    o.initial_accumulator_value = num("initial_accumulator_value", o.initial_accumulator_value);
    return build([&] { return std::make_unique<Ftrl>(o); });
  }
  fail(path, ".type: unknown optimiser '", type, "' (expected one of: sgd, adam, adamw, adagrad, ftrl)");
}

}  // namespace mtrank::train
