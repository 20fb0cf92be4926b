// Embedding transform layer (seed): per domain d a learned affine map e' = A_d e + c_d that
// moves a shared embedding into domain d's space; each row is routed by its domain id.
// Widths may differ (in != out).
//
// Parameters: weight [D, out, in] (A_d = weight[d], PyTorch Linear layout per domain),
//             bias [D, out] (optional).
// Initialisation: A_d = I (the leading min(in, out) diagonal), c_d = 0, so an untrained layer
// passes the shared embedding through; set identity_init = false for PyTorch Linear's uniform.
#pragma once
#include <span>
#include <string>
#include <string_view>

#include "mtrank/blocks/backbone.hpp"

namespace mtrank::blocks {

struct EmbeddingTransformOptions {
  Index num_domains = 0;
  Index in = 0;
  Index out = 0;
  bool bias = true;
  bool identity_init = true;
  std::string domain_field = "domain_id";  // names the id column in error messages
};

template <class T = float>
class EmbeddingTransform {
 public:
  using Scalar = T;
  struct Workspace {
    MatrixView<const T> x;
    std::vector<Index> domain;
    TensorT<T> y, dx;
  };

  EmbeddingTransform() = default;
  EmbeddingTransform(ParameterArenaT<T>& arena, std::string_view prefix, EmbeddingTransformOptions opt)
      : opt_(std::move(opt)), name_(prefix) {
    require(opt_.num_domains > 0, "embedding transform '", prefix, "': num_domains must be > 0");
    require(opt_.in > 0 && opt_.out > 0, "embedding transform '", prefix, "': in and out must be > 0, got in=",
            opt_.in, " out=", opt_.out);
    const Init init = opt_.identity_init ? Init::zeros() : Init::linear_default(opt_.in);
    weight_ = &arena.add(join_name(prefix, "weight"), Shape{opt_.num_domains, opt_.out, opt_.in}, {.init = init});
    if (opt_.identity_init)
      for (Index d = 0; d < opt_.num_domains; ++d)
        for (Index i = 0; i < std::min(opt_.in, opt_.out); ++i) weight_->value[(d * opt_.out + i) * opt_.in + i] = T(1);
    if (opt_.bias)
      bias_ = &arena.add(join_name(prefix, "bias"), Shape{opt_.num_domains, opt_.out}, {.init = opt_.identity_init ? Init::zeros() : init});
  }

  /// x [B, in], domain[b] in [0, num_domains) -> y [B, out].
  MatrixView<const T> forward(MatrixView<const T> x, std::span<const Index> domain, Workspace& ws,
                              const Context& = {}) const {
    require(x.cols == opt_.in, "embedding transform '", name_, "': input has ", x.cols, " columns, expected ", opt_.in);
    require(static_cast<Index>(domain.size()) == x.rows, "embedding transform '", name_, "': ", opt_.domain_field,
            " has ", domain.size(), " entries for ", x.rows, " rows");
    for (std::size_t b = 0; b < domain.size(); ++b)
      if (domain[b] < 0 || domain[b] >= opt_.num_domains)
        fail("embedding transform '", name_, "': ", opt_.domain_field, "[", b, "] = ", domain[b],
             " out of range [0, ", opt_.num_domains, ")");
    ws.x = x;
    ws.domain.assign(domain.begin(), domain.end());
    MatrixView<T> y = ensure(ws.y, x.rows, opt_.out);
    for (Index b = 0; b < x.rows; ++b) {
      const Index d = domain[static_cast<std::size_t>(b)];
      const T* A = weight_->value + d * opt_.out * opt_.in;
      const T* xb = x.row(b);
      for (Index o = 0; o < opt_.out; ++o) {
        T acc = bias_ ? bias_->value[d * opt_.out + o] : T(0);
        const T* a = A + o * opt_.in;
        for (Index i = 0; i < opt_.in; ++i) acc += a[i] * xb[i];
        y(b, o) = acc;
      }
    }
    return y;
  }

  MatrixView<const T> backward(MatrixView<const T> dy, Workspace& ws, bool need_dx = true) const {
    require_shape(dy, ws.x.rows, opt_.out, "embedding transform backward dy");
    MatrixView<T> dx;
    if (need_dx) {
      dx = ensure(ws.dx, dy.rows, opt_.in);
      ws.dx.zero();
    }
    for (Index b = 0; b < dy.rows; ++b) {
      const Index d = ws.domain[static_cast<std::size_t>(b)];
      const T* A = weight_->value + d * opt_.out * opt_.in;
      T* dA = weight_->grad + d * opt_.out * opt_.in;
      const T* xb = ws.x.row(b);
      for (Index o = 0; o < opt_.out; ++o) {
        const T g = dy(b, o);
        if (bias_) bias_->grad[d * opt_.out + o] += g;
        for (Index i = 0; i < opt_.in; ++i) dA[o * opt_.in + i] += g * xb[i];
        if (need_dx)
          for (Index i = 0; i < opt_.in; ++i) dx(b, i) += g * A[o * opt_.in + i];
      }
    }
    return need_dx ? MatrixView<const T>(dx) : MatrixView<const T>{};
  }

  Index in_features() const { return opt_.in; }
  Index out_features() const { return opt_.out; }
  Index num_domains() const { return opt_.num_domains; }
  const EmbeddingTransformOptions& options() const { return opt_; }

 private:
  EmbeddingTransformOptions opt_;
  std::string name_;
  Parameter<T>* weight_ = nullptr;
  Parameter<T>* bias_ = nullptr;
};

extern template class EmbeddingTransform<float>;
extern template class EmbeddingTransform<double>;

}  // namespace mtrank::blocks
