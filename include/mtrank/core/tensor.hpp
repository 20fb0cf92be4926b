// Tensors: one owning type (TensorT) and cheap non-owning views (MatrixView, TensorView).
// Storage is contiguous row-major and 64-byte aligned; resize() reuses capacity so that
// workspaces stop allocating once they have seen the largest batch.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <ostream>
#include <string>
#include <type_traits>

#include "mtrank/core/error.hpp"

namespace mtrank {

using Index = std::int64_t;
inline constexpr std::size_t kAlignment = 64;

/// A shape of rank 0..kMaxRank (rank 0 = scalar with one element).
class Shape {
 public:
  static constexpr int kMaxRank = 6;
  Shape() = default;
  Shape(std::initializer_list<Index> dims) {
    require(dims.size() <= kMaxRank, "Shape: rank ", dims.size(), " > ", kMaxRank);
    for (Index d : dims) push_back(d);
  }
  template <class It>
  static Shape from_range(It first, It last) {
    Shape s;
    for (; first != last; ++first) s.push_back(static_cast<Index>(*first));
    return s;
  }
  void push_back(Index d) {
    require(rank_ < kMaxRank, "Shape: rank > ", kMaxRank);
    require(d >= 0, "Shape: negative dimension ", d);
    dims_[rank_++] = d;
  }
  int rank() const { return rank_; }
  Index operator[](int i) const { return dims_[i]; }
  Index& operator[](int i) { return dims_[i]; }
  /// The element count; throws mtrank::Error when it does not fit in an Index (sizes derived
  /// from configs and files must never wrap: a wrapped count allocates too little).
  Index numel() const {
    Index n = 1;
    for (int i = 0; i < rank_; ++i)
      if (__builtin_mul_overflow(n, dims_[i], &n)) fail("Shape ", str(), ": element count overflows 64 bits");
    return n;
  }
  const Index* begin() const { return dims_.data(); }
  const Index* end() const { return dims_.data() + rank_; }
  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }
  std::string str() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) s += (i ? ", " : "") + std::to_string(dims_[i]);
    return s + "]";
  }
  friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.str(); }

 private:
  std::array<Index, kMaxRank> dims_{};
  int rank_ = 0;
};

/// Non-owning 2-D row-major view with a row stride (leading dimension).
template <class T>
struct MatrixView {
  T* data = nullptr;
  Index rows = 0;
  Index cols = 0;
  Index stride = 0;  // elements between consecutive rows; == cols when contiguous

  MatrixView() = default;
  MatrixView(T* d, Index r, Index c) : data(d), rows(r), cols(c), stride(c) {}
  MatrixView(T* d, Index r, Index c, Index s) : data(d), rows(r), cols(c), stride(s) {}
  // A view of T converts to a view of const T.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  MatrixView(const MatrixView<U>& o) : data(o.data), rows(o.rows), cols(o.cols), stride(o.stride) {}

  T& operator()(Index r, Index c) const { return data[r * stride + c]; }
  T* row(Index r) const { return data + r * stride; }
  Index size() const { return rows * cols; }
  bool empty() const { return rows == 0 || cols == 0; }
  bool contiguous() const { return stride == cols || rows <= 1; }
  /// Columns [c0, c0 + n) of every row.
  MatrixView col_block(Index c0, Index n) const { return {data + c0, rows, n, stride}; }
  /// Rows [r0, r0 + n).
  MatrixView row_block(Index r0, Index n) const { return {data + r0 * stride, n, cols, stride}; }
};

template <class T>
using ConstMatrixView = MatrixView<const T>;

/// Non-owning contiguous N-d view.
template <class T>
struct TensorView {
  T* data = nullptr;
  Shape shape;
  Index numel() const { return shape.numel(); }
  /// Flattens all leading dimensions into rows: [a, b, c] -> [a*b, c].
  MatrixView<T> matrix() const {
    if (shape.rank() == 0) return {data, 1, 1};
    Index cols = shape[shape.rank() - 1];
    Index rows = cols == 0 ? 0 : shape.numel() / cols;
    return {data, rows, cols};
  }
};

namespace detail {
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
/// Buffers of at least this size go to huge_page_alloc (src/core/memory.cpp).
inline constexpr std::size_t kHugePageThreshold = std::size_t(4) << 20;
/// 2 MiB-aligned allocation advised for transparent huge pages (Linux madvise mode), unless
/// MTRANK_HUGE_PAGES=0: embedding tables, optimiser state and large workspaces are read at
/// random rows, where 4 KiB pages make most accesses TLB misses. Freed with std::free.
void* huge_page_alloc(std::size_t bytes);
inline void* aligned_alloc_bytes(std::size_t bytes) {
  if (bytes >= kHugePageThreshold) return huge_page_alloc(bytes);
  std::size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded == 0) rounded = kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace detail

/// Owning, 64-byte-aligned, contiguous tensor. Copyable (deep copy) and movable.
template <class T>
class TensorT {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  using value_type = T;
  TensorT() = default;
  explicit TensorT(Shape s) { resize(s); }
  TensorT(Shape s, T fill_value) {
    resize(s);
    fill(fill_value);
  }
  TensorT(const TensorT& o) { *this = o; }
  TensorT& operator=(const TensorT& o) {
    if (this != &o) {
      resize(o.shape_);
      if (o.numel()) std::memcpy(data(), o.data(), sizeof(T) * o.numel());
    }
    return *this;
  }
  TensorT(TensorT&&) noexcept = default;
  TensorT& operator=(TensorT&&) noexcept = default;

  /// Changes the shape; keeps the buffer when it is large enough. Contents are unspecified
  /// after a growing resize.
  void resize(Shape s) {
    Index n = s.numel();
    if (n > capacity_) {
      if (static_cast<std::uint64_t>(n) > std::numeric_limits<std::size_t>::max() / sizeof(T))
        fail("tensor ", s.str(), ": ", n, " elements of ", sizeof(T), " bytes overflow the address space");
      buf_.reset(static_cast<T*>(detail::aligned_alloc_bytes(sizeof(T) * static_cast<std::size_t>(n))));
      capacity_ = n;
    }
    shape_ = s;
  }
  void resize(Index rows, Index cols) { resize(Shape{rows, cols}); }
  void fill(T v) { std::fill(data(), data() + numel(), v); }
  void zero() {
    if (numel()) std::memset(data(), 0, sizeof(T) * numel());
  }

  T* data() { return buf_.get(); }
  const T* data() const { return buf_.get(); }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  Index dim(int i) const { return shape_[i]; }
  Index numel() const { return shape_.numel(); }
  Index capacity() const { return capacity_; }
  T& operator[](Index i) { return buf_.get()[i]; }
  const T& operator[](Index i) const { return buf_.get()[i]; }

  TensorView<T> view() { return {data(), shape_}; }
  TensorView<const T> view() const { return {data(), shape_}; }
  MatrixView<T> matrix() { return view().matrix(); }
  MatrixView<const T> matrix() const { return view().matrix(); }
  T* begin() { return data(); }
  T* end() { return data() + numel(); }
  const T* begin() const { return data(); }
  const T* end() const { return data() + numel(); }

 private:
  std::unique_ptr<T, detail::AlignedFree> buf_;
  Index capacity_ = 0;
  Shape shape_{0};  // empty, not a scalar: a default tensor owns no element
};

using Tensor = TensorT<float>;
using Mat = MatrixView<float>;
using ConstMat = MatrixView<const float>;

/// Resizes `t` to [rows, cols] and returns its matrix view (workspace helper).
template <class T>
inline MatrixView<T> ensure(TensorT<T>& t, Index rows, Index cols) {
  t.resize(Shape{rows, cols});
  return t.matrix();
}

/// Copies a (possibly strided) matrix into another of the same size.
template <class T>
inline void copy(MatrixView<const T> src, MatrixView<T> dst) {
  require(src.rows == dst.rows && src.cols == dst.cols, "copy: shape [", src.rows, ", ", src.cols,
          "] != [", dst.rows, ", ", dst.cols, "]");
  for (Index r = 0; r < src.rows; ++r) std::memcpy(dst.row(r), src.row(r), sizeof(T) * src.cols);
}

/// Checks that a view has the expected shape; `what` names it in the message.
template <class T>
inline void require_shape(MatrixView<T> m, Index rows, Index cols, const char* what) {
  if (m.rows != rows || m.cols != cols)
    fail(what, ": expected shape [", rows, ", ", cols, "], got [", m.rows, ", ", m.cols, "]");
}

}  // namespace mtrank
