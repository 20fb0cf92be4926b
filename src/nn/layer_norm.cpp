#include "mtrank/nn/layer_norm.hpp"

#include <cmath>

namespace mtrank::nn {

template <class T>
LayerNorm<T>::LayerNorm(ParameterArenaT<T>& arena, std::string_view prefix, LayerNormOptions opt)
    : opt_(opt), name_(prefix) {
  require(opt.width > 0, "LayerNorm '", prefix, "': width must be > 0, got ", opt.width);
  require(opt.eps > 0, "LayerNorm '", prefix, "': eps must be > 0");
  if (opt.elementwise_affine) {
    weight_ = &arena.add(join_name(prefix, "weight"), Shape{opt.width}, {.init = Init::constant(1.0)});
    bias_ = &arena.add(join_name(prefix, "bias"), Shape{opt.width}, {.init = Init::zeros()});
  }
}

template <class T>
MatrixView<const T> LayerNorm<T>::forward(MatrixView<const T> x, Workspace& ws, const Context&) const {
  const Index W = opt_.width;
  if (x.cols != W) fail("LayerNorm '", name_, "': input has ", x.cols, " columns, expected ", W);
  MatrixView<T> y = ensure(ws.y, x.rows, W);
  MatrixView<T> xh = ensure(ws.xhat, x.rows, W);
  ws.rstd.resize(Shape{x.rows});
  for (Index r = 0; r < x.rows; ++r) {
    const T* xr = x.row(r);
    double s = 0;
    for (Index j = 0; j < W; ++j) s += xr[j];
    const double mean = s / double(W);
    double ss = 0;
    for (Index j = 0; j < W; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
    const double rstd = 1.0 / std::sqrt(ss / double(W) + opt_.eps);
    ws.rstd[r] = T(rstd);
    T* hr = xh.row(r);
    T* yr = y.row(r);
    for (Index j = 0; j < W; ++j) {
      hr[j] = T((xr[j] - mean) * rstd);
      yr[j] = weight_ ? hr[j] * weight_->value[j] + bias_->value[j] : hr[j];
    }
  }
  return y;
}

template <class T>
MatrixView<const T> LayerNorm<T>::backward(MatrixView<const T> dy, Workspace& ws, bool need_dx) const {
  const Index W = opt_.width;
  const MatrixView<const T> xh = ws.xhat.matrix();
  require_shape(dy, xh.rows, W, "LayerNorm backward dy");
  MatrixView<T> dx = need_dx ? ensure(ws.dx, dy.rows, W) : MatrixView<T>{};
  for (Index r = 0; r < dy.rows; ++r) {
    const T* g = dy.row(r);
    const T* h = xh.row(r);
    if (weight_) {
      T* gw = weight_->grad;
      T* gb = bias_->grad;
      for (Index j = 0; j < W; ++j) {
        gw[j] += g[j] * h[j];
        gb[j] += g[j];
      }
    }
    if (!need_dx) continue;
    // dxhat = dy * w; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
    double m1 = 0, m2 = 0;
    for (Index j = 0; j < W; ++j) {
      const double dh = weight_ ? double(g[j]) * weight_->value[j] : double(g[j]);
      m1 += dh;
      m2 += dh * h[j];
    }
    m1 /= double(W);
    m2 /= double(W);
    const double rstd = ws.rstd[r];
    T* d = dx.row(r);
    for (Index j = 0; j < W; ++j) {
      const double dh = weight_ ? double(g[j]) * weight_->value[j] : double(g[j]);
      d[j] = T(rstd * (dh - m1 - h[j] * m2));
    }
  }
  if (!need_dx) return {};
  return dx;
}

template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace mtrank::nn
