// The parameter arena: every trainable tensor (and every buffer such as batch-norm running
// statistics) of a model lives here under a PyTorch state_dict name. Blocks keep raw
// pointers into the arena; storage never moves after add(), so those pointers stay valid.
// Optimisers and serialisation walk parameters() in insertion order.
//
// Weights version: each arena counts the changes of its values that writers announce
// (mark_weights_changed(): every optimiser step on the arena, every io::load_arena into it, and
// code editing values by hand). Copies derived from the weights for serving (the packed copies of
// nn::Linear, kernels/packed_linear.hpp) are keyed on it and reach it through their Parameter, so
// loading, training or editing one model never marks another model's copies stale.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mtrank/core/error.hpp"
#include "mtrank/core/init.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank {

/// Gradient of an embedding table as a set of touched rows. Only these rows are updated by
/// sparse optimisers; a dense [rows, width] gradient is never materialised.
template <class T>
class SparseRowGrad {
 public:
  void reset_shape(Index rows, Index width) {
    rows_ = rows;
    width_ = width;
    slot_.clear();
    touched_.clear();
    values_.clear();
  }
  /// Returns the gradient row for `row`, zero-filled on first touch since the last clear().
  T* row(Index row) {
    if (slot_.empty()) slot_.assign(static_cast<std::size_t>(rows_), -1);
    std::int32_t& s = slot_[static_cast<std::size_t>(row)];
    if (s < 0) {
      s = static_cast<std::int32_t>(touched_.size());
      touched_.push_back(row);
      values_.resize(values_.size() + static_cast<std::size_t>(width_), T(0));
    }
    return values_.data() + static_cast<std::size_t>(s) * width_;
  }
  void clear() {
    for (Index r : touched_) slot_[static_cast<std::size_t>(r)] = -1;
    touched_.clear();
    values_.clear();
  }
  /// Touched rows in first-touch order; values() holds their gradients in the same order.
  const std::vector<Index>& rows() const { return touched_; }
  const T* values() const { return values_.data(); }
  T* values() { return values_.data(); }
  Index width() const { return width_; }

 private:
  Index rows_ = 0, width_ = 0;
  std::vector<std::int32_t> slot_;
  std::vector<Index> touched_;
  std::vector<T> values_;
};

template <class T>
struct Parameter {
  std::string name;
  Shape shape;
  T* value = nullptr;
  T* grad = nullptr;     // dense gradient (nullptr for sparse-row parameters and buffers)
  bool trainable = true;  // false for buffers (running statistics)
  bool sparse = false;    // gradient kept in sparse_grad (embedding tables)
  SparseRowGrad<T> sparse_grad;
  // The weights version counter of the arena whose values these are (set by add(); nullptr for a
  // Parameter made outside an arena, whose version then never moves).
  const std::atomic<std::uint64_t>* version = nullptr;

  Index numel() const { return shape.numel(); }
  /// The owning arena's weights_version().
  std::uint64_t weights_version() const { return version ? version->load(std::memory_order_acquire) : 0; }
  MatrixView<T> value_matrix() const { return TensorView<T>{value, shape}.matrix(); }
  MatrixView<T> grad_matrix() const { return TensorView<T>{grad, shape}.matrix(); }
  void zero_grad() {
    if (grad) std::memset(grad, 0, sizeof(T) * static_cast<std::size_t>(numel()));
    if (sparse) sparse_grad.clear();
  }
};

struct ParameterSpec {
  Init init = Init::zeros();
  bool sparse = false;     // embedding tables: sparse row gradients
  bool trainable = true;   // false: a buffer (saved, never optimised)
};

/// The most bytes one arena's parameters (values and dense gradients) may take: a model whose
/// config asks for more is rejected at the parameter that crosses the line, before allocating
/// it, with the numbers. Default: the machine's physical memory, or $MTRANK_PARAMETER_BUDGET_BYTES.
std::uint64_t parameter_memory_budget();
/// Overrides the budget for arenas created from now on (0 restores the default).
void set_parameter_memory_budget(std::uint64_t bytes);

template <class T>
class ParameterArenaT {
 public:
  explicit ParameterArenaT(std::uint64_t seed = 42) : rng_(seed) {}
  ParameterArenaT(const ParameterArenaT&) = delete;
  ParameterArenaT& operator=(const ParameterArenaT&) = delete;

  /// Makes this (still empty) arena a gradient replica of `source`: every later add() takes the
  /// trainable values of the same-named parameter of `source` (same shape and kind, no copy, no
  /// initialisation) and allocates its own gradient. Buffers (non-trainable) get a private copy,
  /// refreshed by copy_buffers_from(). Data-parallel training runs one replica per thread.
  void share_values_from(const ParameterArenaT& source) {
    require(params_.empty(), "parameter arena: share_values_from() must come before the first add()");
    require(&source != this, "parameter arena: cannot share values with itself");
    source_ = &source;
  }
  /// The arena whose values this one shares (nullptr for an ordinary arena).
  const ParameterArenaT* value_source() const { return source_; }
  /// Copies every buffer (non-trainable parameter) value from the same-named one in `source`.
  void copy_buffers_from(const ParameterArenaT& source) {
    for (auto& p : params_) {
      if (p.trainable) continue;
      const Parameter<T>& s = source.at(p.name);
      std::memcpy(p.value, s.value, sizeof(T) * static_cast<std::size_t>(p.numel()));
    }
    mark_weights_changed();
  }

  /// The weights version: moves on every mark_weights_changed(). A gradient replica has none of its
  /// own: it reports (and moves) its value source's, whose values its trainable parameters are.
  std::uint64_t weights_version() const { return counter().load(std::memory_order_acquire); }
  /// Marks every copy derived from this arena's values stale (packed serving weights). Optimiser
  /// steps and io::load_arena call it; so must code that writes values by hand while the model
  /// may serve afterwards. Touches no other arena (except a replica's source, see above). Must not
  /// race with serving passes of this arena's model: their weights are changing.
  void mark_weights_changed() { counter().fetch_add(1, std::memory_order_acq_rel); }

  /// Every later add() must match these shapes (a checkpoint's header, compared before the
  /// model's storage is allocated): a parameter missing from them or of another shape throws
  /// naming both, before its memory is taken. Set by models::ExpectedShapes while a model is built.
  void expect_shapes(std::unordered_map<std::string, Shape> shapes, std::string source) {
    expected_ = std::move(shapes);
    expected_source_ = std::move(source);
    expecting_ = true;
  }
  /// Bytes of storage taken so far (values and dense gradients, as counted against the budget).
  std::uint64_t bytes() const { return bytes_; }

  /// Adds a named tensor, initialised from the arena's RNG (deterministic given the seed and
  /// the order of add() calls). Names must be unique.
  Parameter<T>& add(std::string name, Shape shape, ParameterSpec spec = {}) {
    require(!name.empty(), "parameter arena: empty parameter name");
    require(!index_.count(name), "parameter arena: duplicate parameter name '", name, "'");
    reserve(name, shape, spec);
    Parameter<T>& p = params_.emplace_back();
    p.name = std::move(name);
    p.shape = shape;
    p.trainable = spec.trainable;
    p.sparse = spec.sparse && spec.trainable;
    p.version = &counter();
    if (source_) {
      const Parameter<T>* src = source_->find(p.name);
      if (!src) fail("parameter arena: replica parameter '", p.name, "' has no counterpart in the source arena");
      require(src->shape == shape, "parameter arena: replica parameter '", p.name, "' has shape ", shape.str(),
              ", the source has ", src->shape.str());
      require(src->trainable == p.trainable && src->sparse == p.sparse, "parameter arena: replica parameter '",
              p.name, "' differs from the source in kind (trainable/sparse)");
      if (p.trainable) {
        p.value = src->value;
      } else {
        p.value = allocate(shape.numel());
        std::memcpy(p.value, src->value, sizeof(T) * static_cast<std::size_t>(shape.numel()));
      }
    } else {
      p.value = allocate(shape.numel());
      initialize(p.value, shape.numel(), spec.init, rng_);
    }
    if (p.trainable && !p.sparse) {
      p.grad = allocate(shape.numel());
      std::memset(p.grad, 0, sizeof(T) * static_cast<std::size_t>(shape.numel()));
    }
    if (p.sparse) p.sparse_grad.reset_shape(shape[0], shape.rank() > 1 ? shape.numel() / shape[0] : 1);
    index_.emplace(p.name, params_.size() - 1);
    return p;
  }

  std::deque<Parameter<T>>& parameters() { return params_; }
  const std::deque<Parameter<T>>& parameters() const { return params_; }
  Parameter<T>* find(std::string_view name) {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &params_[it->second];
  }
  const Parameter<T>* find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? nullptr : &params_[it->second];
  }
  Parameter<T>& at(std::string_view name) {
    Parameter<T>* p = find(name);
    if (!p) fail("parameter arena: no parameter named '", name, "'");
    return *p;
  }
  const Parameter<T>& at(std::string_view name) const {
    const Parameter<T>* p = find(name);
    if (!p) fail("parameter arena: no parameter named '", name, "'");
    return *p;
  }
  void zero_grad() {
    for (auto& p : params_) p.zero_grad();
  }
  /// Number of trainable scalars.
  Index num_trainable() const {
    Index n = 0;
    for (auto& p : params_)
      if (p.trainable) n += p.numel();
    return n;
  }
  Rng& rng() { return rng_; }

 private:
  // Checks, before any allocation, the shape against the expected one and the bytes against the budget.
  void reserve(const std::string& name, const Shape& shape, const ParameterSpec& spec) {
    if (expecting_) {
      auto it = expected_.find(name);
      if (it == expected_.end())
        fail(expected_source_, ": has no tensor '", name, "', which the config builds with shape ", shape.str());
      if (!(it->second == shape))
        fail(expected_source_, ": tensor '", name, "' has shape ", it->second.str(), " but the config builds ", shape.str());
    }
    Index n = 1;
    for (Index d : shape)
      if (__builtin_mul_overflow(n, d, &n)) fail("parameter arena: parameter '", name, "' ", shape.str(), ": element count overflows 64 bits");
    const bool shared = source_ && spec.trainable;
    const std::uint64_t copies = (shared ? 0 : 1) + (spec.trainable && !spec.sparse ? 1 : 0);
    std::uint64_t need = 0, total = 0;
    if (__builtin_mul_overflow(n, sizeof(T) * copies, &need) || __builtin_add_overflow(bytes_, need, &total))
      fail("parameter arena: parameter '", name, "' ", shape.str(), " needs more than 2^64 bytes");
    if (total > budget_)
      fail("parameter arena: parameter '", name, "' ", shape.str(), " needs ", need,
           " bytes; the model's parameters would take ", total, " bytes, over the memory budget of ", budget_,
           " bytes ($MTRANK_PARAMETER_BUDGET_BYTES or mtrank::set_parameter_memory_budget)");
    bytes_ = total;
  }

  std::atomic<std::uint64_t>& counter() const { return source_ ? source_->version_ : version_; }
  T* allocate(Index n) {
    // Round each tensor to 64 bytes so every parameter starts aligned.
    const Index per_line = static_cast<Index>(kAlignment / sizeof(T));
    n = (n + per_line - 1) / per_line * per_line;
    if (n == 0) n = per_line;
    if (chunks_.empty() || chunk_used_ + n > chunks_.back().numel()) {
      Index size = std::max<Index>(n, kChunkElements);
      chunks_.emplace_back(Shape{size});
      chunk_used_ = 0;
    }
    T* p = chunks_.back().data() + chunk_used_;
    chunk_used_ += n;
    return p;
  }
  static constexpr Index kChunkElements = Index(1) << 20;
  std::deque<Parameter<T>> params_;
  std::unordered_map<std::string, std::size_t> index_;
  std::deque<TensorT<T>> chunks_;
  Index chunk_used_ = 0;
  Rng rng_;
  const ParameterArenaT* source_ = nullptr;
  std::uint64_t bytes_ = 0, budget_ = parameter_memory_budget();
  bool expecting_ = false;
  std::unordered_map<std::string, Shape> expected_;
  std::string expected_source_;
  mutable std::atomic<std::uint64_t> version_{0};  // mutable: a replica moves its source's (counter())
};

using ParameterArena = ParameterArenaT<float>;

/// Joins a prefix and a name PyTorch-style: join("experts.0", "weight") == "experts.0.weight".
inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

}  // namespace mtrank
