#include "mtrank/train/pcgrad.hpp"

#include <algorithm>
#include <cmath>

#include "mtrank/core/error.hpp"

namespace mtrank::train {
namespace {

template <class T>
double dot(const T* a, const T* b, Index n) {
  double s = 0;
  for (Index i = 0; i < n; ++i) s += double(a[i]) * double(b[i]);
  return s;
}

template <class T>
void check_args(MatrixView<const T> g, std::span<T> out) {
  if (static_cast<Index>(out.size()) != g.cols)
    fail("pcgrad: output has ", out.size(), " entries, expected ", g.cols, " (the gradient length)");
  if (g.rows < 1) fail("pcgrad: need at least one task gradient");
  const T* ob = out.data();
  const T* oe = ob + out.size();
  const T* gb = g.data;
  const T* ge = g.data + (g.rows - 1) * g.stride + g.cols;
  if (!out.empty() && ob < ge && gb < oe) fail("pcgrad: output aliases the task gradients");
  for (Index i = 0; i < g.rows; ++i)
    for (Index p = 0; p < g.cols; ++p)
      if (!std::isfinite(g(i, p))) fail("pcgrad: gradient of task ", i, " element ", p, " is ", double(g(i, p)));
}

/// Projects task i against tasks in `order` and adds g_i^PC to out.
template <class T>
void project_and_add(MatrixView<const T> g, Index i, const Index* order, Index n_order, const std::vector<double>& sq,
                     std::vector<T>& gi, std::span<T> out, PcGradStats& st) {
  const Index P = g.cols;
  std::copy(g.row(i), g.row(i) + P, gi.begin());
  for (Index t = 0; t < n_order; ++t) {
    const Index j = order[t];
    ++st.pairs;
    const double d = dot(gi.data(), g.row(j), P);
    if (d < 0 && sq[j] > 0) {
      const double c = d / sq[j];
      const T* gj = g.row(j);
      for (Index p = 0; p < P; ++p) gi[p] = static_cast<T>(gi[p] - c * gj[p]);
      ++st.conflicts;
    }
  }
  for (Index p = 0; p < P; ++p) out[p] += gi[p];
}

}  // namespace

template <class T>
PcGradStats pcgrad(MatrixView<const T> g, std::span<T> out, Rng& rng, PcGradWorkspace<T>& ws) {
  check_args(g, out);
  const Index K = g.rows, P = g.cols;
  ws.gi.resize(static_cast<std::size_t>(P));
  ws.sq_norm.resize(static_cast<std::size_t>(K));
  ws.order.resize(static_cast<std::size_t>(K));
  for (Index j = 0; j < K; ++j) ws.sq_norm[j] = dot(g.row(j), g.row(j), P);
  std::fill(out.begin(), out.end(), T(0));
  PcGradStats st;
  for (Index i = 0; i < K; ++i) {
    Index n = 0;
    for (Index j = 0; j < K; ++j)
      if (j != i) ws.order[n++] = j;
    for (Index t = n - 1; t > 0; --t) {  // Fisher–Yates
      const Index r = static_cast<Index>(rng.below(static_cast<std::uint64_t>(t + 1)));
      std::swap(ws.order[t], ws.order[r]);
    }
    project_and_add(g, i, ws.order.data(), n, ws.sq_norm, ws.gi, out, st);
  }
  return st;
}

template <class T>
PcGradStats pcgrad_ordered(MatrixView<const T> g, std::span<T> out, const std::vector<std::vector<Index>>& orders) {
  check_args(g, out);
  const Index K = g.rows, P = g.cols;
  if (static_cast<Index>(orders.size()) != K) fail("pcgrad: ", orders.size(), " orders for ", K, " tasks");
  for (Index i = 0; i < K; ++i) {
    std::vector<bool> seen(static_cast<std::size_t>(K), false);
    if (static_cast<Index>(orders[i].size()) != K - 1)
      fail("pcgrad: order of task ", i, " has ", orders[i].size(), " entries, expected ", K - 1);
    for (Index j : orders[i]) {
      if (j < 0 || j >= K || j == i || seen[j])
        fail("pcgrad: order of task ", i, " must be a permutation of the other tasks (bad entry ", j, ")");
      seen[j] = true;
    }
  }
  std::vector<double> sq(static_cast<std::size_t>(K));
  for (Index j = 0; j < K; ++j) sq[j] = dot(g.row(j), g.row(j), P);
  std::vector<T> gi(static_cast<std::size_t>(P));
  std::fill(out.begin(), out.end(), T(0));
  PcGradStats st;
  for (Index i = 0; i < K; ++i) project_and_add(g, i, orders[i].data(), K - 1, sq, gi, out, st);
  return st;
}

template PcGradStats pcgrad<float>(MatrixView<const float>, std::span<float>, Rng&, PcGradWorkspace<float>&);
template PcGradStats pcgrad<double>(MatrixView<const double>, std::span<double>, Rng&, PcGradWorkspace<double>&);
template PcGradStats pcgrad_ordered<float>(MatrixView<const float>, std::span<float>,
                                           const std::vector<std::vector<Index>>&);
template PcGradStats pcgrad_ordered<double>(MatrixView<const double>, std::span<double>,
                                            const std::vector<std::vector<Index>>&);

}  // namespace mtrank::train
