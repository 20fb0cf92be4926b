// Embedding-bag kernels: every ISA variant against a double-precision evaluation of the
// definition in include/mtrank/kernels/embedding_bag.hpp, for dims with every tail and bags of
// length 0, 1 and many, weighted and unweighted, sum and mean, strided output.
//
// Tolerance: |got - want| <= (len + 2) * 2^-23 * sum_j |w_j x_j| * scale + 1e-30 (the float
// summation bound; the reference itself must meet it too).
#include <algorithm>
#include <cmath>
#include <set>

#include "kernel_test_util.hpp"
#include "mtrank/kernels/embedding_bag.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::kernels;
using mtrank::testing::Guarded;
using mtrank::testing::kernel_dims;

namespace {

struct Problem {
  Index rows = 50, dim = 0, batch = 0;
  std::vector<float> table, weights;
  std::vector<Index> indices, offsets;
};

// Bag lengths 0, 1, many, with repeated rows inside and across bags.
Problem make_problem(Index dim, Rng& rng) {
  Problem p;
  p.dim = dim;
  p.table.resize(static_cast<std::size_t>(p.rows * dim));
  for (auto& v : p.table) v = static_cast<float>(rng.normal());
  const std::vector<Index> lens = {0, 1, 5, 0, 2, 17, 1, 40, 3, 0};
  p.batch = static_cast<Index>(lens.size());
  p.offsets.push_back(0);
  for (Index len : lens) {
    for (Index k = 0; k < len; ++k) p.indices.push_back(static_cast<Index>(rng.below(p.rows)));
    p.offsets.push_back(static_cast<Index>(p.indices.size()));
  }
  for (std::size_t j = 0; j < p.indices.size(); ++j) p.weights.push_back(static_cast<float>(rng.normal()));
  return p;
}

double scale_of(const Problem& p, Index b, PoolingMode mode) {
  const Index len = p.offsets[b + 1] - p.offsets[b];
  return mode == PoolingMode::mean && len > 0 ? 1.0 / double(len) : 1.0;
}

}  // namespace

TEST_CASE("embedding_bag forward: every ISA matches the definition") {
  Rng rng(21);
  for (Isa isa : runnable_isas()) {
    const EmbeddingBagKernels& k = embedding_bag_kernels(isa);
    REQUIRE(k.isa == isa);
    for (Index dim : kernel_dims()) {
      Problem p = make_problem(dim, rng);
      for (PoolingMode mode : {PoolingMode::sum, PoolingMode::mean})
        for (bool weighted : {false, true}) {
          INFO(isa_name(isa) << " dim=" << dim << " mode=" << int(mode) << " weighted=" << weighted);
          const Index ld = dim + 5;  // strided output: the gap must stay untouched
          Guarded out(p.batch * ld, 777.f);
          k.f32_embedding_bag(p.batch, dim, p.table.data(), p.indices.data(), p.offsets.data(),
                              weighted ? p.weights.data() : nullptr, mode, out.data(), ld);
          bool ok = true;
          for (Index b = 0; b < p.batch; ++b) {
            const Index len = p.offsets[b + 1] - p.offsets[b];
            const double s = scale_of(p, b, mode);
            for (Index c = 0; c < dim; ++c) {
              double want = 0, mag = 0;
              for (Index j = p.offsets[b]; j < p.offsets[b + 1]; ++j) {
                const double t = (weighted ? double(p.weights[j]) : 1.0) * p.table[p.indices[j] * dim + c];
                want += t;
                mag += std::abs(t);
              }
              want *= s;
              const double tol = double(len + 2) * 0x1p-23 * mag * s + 1e-30;
              if (std::abs(out[b * ld + c] - want) > tol) {
                ok = false;
                FAIL_CHECK("b=" << b << " c=" << c << " got " << out[b * ld + c] << " want " << want);
              }
              if (len == 0) CHECK(out[b * ld + c] == 0.0f);  // an empty bag gives exact zeros
            }
            for (Index c = dim; c < ld; ++c) ok = ok && out[b * ld + c] == 777.f;
          }
          CHECK(ok);
          CHECK(out.canary_intact());
        }
    }
  }
}

TEST_CASE("embedding_bag forward: batch 0 and 1, and a bag longer than the prefetch distance") {
  Rng rng(3);
  for (Isa isa : runnable_isas()) {
    const EmbeddingBagKernels& k = embedding_bag_kernels(isa);
    Problem p = make_problem(32, rng);
    Guarded out(32, 5.f);
    k.f32_embedding_bag(0, 32, p.table.data(), p.indices.data(), p.offsets.data(), nullptr, PoolingMode::sum,
                        out.data(), 32);
    CHECK(out[0] == 5.f);  // batch 0 writes nothing
    // One bag of 40 rows (offsets[7]..offsets[8]); the prefetcher must not read past the bag.
    std::vector<Index> idx(p.indices.begin() + p.offsets[7], p.indices.begin() + p.offsets[8]);
    std::vector<Index> off = {0, static_cast<Index>(idx.size())};
    std::vector<float> want(32);
    embedding_bag_ref<float>(1, 32, p.table.data(), idx.data(), off.data(), nullptr, PoolingMode::mean, want.data(), 32);
    k.f32_embedding_bag(1, 32, p.table.data(), idx.data(), off.data(), nullptr, PoolingMode::mean, out.data(), 32);
    for (Index c = 0; c < 32; ++c) CHECK(out[c] == Approx(want[c]).margin(1e-6));
  }
}

TEST_CASE("embedding_bag backward and per-sample weight gradient: every ISA matches the definition") {
  Rng rng(8);
  for (Isa isa : runnable_isas()) {
    const EmbeddingBagKernels& k = embedding_bag_kernels(isa);
    for (Index dim : kernel_dims()) {
      Problem p = make_problem(dim, rng);
      std::vector<float> dout(static_cast<std::size_t>(p.batch * dim));
      for (auto& v : dout) v = static_cast<float>(rng.normal());
      for (PoolingMode mode : {PoolingMode::sum, PoolingMode::mean})
        for (bool weighted : {false, true}) {
          INFO(isa_name(isa) << " dim=" << dim << " mode=" << int(mode) << " weighted=" << weighted);
          // Dense gradient [rows, dim] with random initial content (the kernel accumulates).
          std::vector<float> grad(p.table.size());
          for (auto& v : grad) v = static_cast<float>(rng.normal());
          std::vector<double> want(grad.begin(), grad.end()), mag(grad.size());
          for (std::size_t i = 0; i < grad.size(); ++i) mag[i] = std::abs(grad[i]);
          std::vector<float*> grad_rows(p.indices.size());
          for (std::size_t j = 0; j < p.indices.size(); ++j) grad_rows[j] = grad.data() + p.indices[j] * dim;
          const float* w = weighted ? p.weights.data() : nullptr;
          k.f32_embedding_bag_backward(p.batch, dim, dout.data(), dim, p.offsets.data(), w, mode, grad_rows.data());
          std::vector<float> dw(p.indices.size(), -1.f);
          k.f32_embedding_bag_weight_grad(p.batch, dim, dout.data(), dim, p.table.data(), p.indices.data(),
                                          p.offsets.data(), mode, dw.data());
          Index hits = 0;
          for (Index b = 0; b < p.batch; ++b) {
            const double s = scale_of(p, b, mode);
            for (Index j = p.offsets[b]; j < p.offsets[b + 1]; ++j) {
              const double sj = (weighted ? double(p.weights[j]) : 1.0) * s;
              double dwj = 0, dwm = 0;
              for (Index c = 0; c < dim; ++c) {
                const std::size_t gi = static_cast<std::size_t>(p.indices[j] * dim + c);
                want[gi] += sj * dout[b * dim + c];
                mag[gi] += std::abs(sj * dout[b * dim + c]);
                dwj += double(dout[b * dim + c]) * p.table[gi];
                dwm += std::abs(double(dout[b * dim + c]) * p.table[gi]);
              }
              const double tol = double(dim + 2) * 0x1p-23 * dwm * s + 1e-30;
              if (std::abs(dw[j] - s * dwj) > tol) FAIL_CHECK("dweights[" << j << "] " << dw[j] << " want " << s * dwj);
              ++hits;
            }
          }
          CHECK(hits == Index(p.indices.size()));
          bool ok = true;
          for (std::size_t i = 0; i < grad.size(); ++i)
            if (std::abs(grad[i] - want[i]) > 64 * 0x1p-23 * mag[i] + 1e-30) ok = false;
          CHECK(ok);
        }
    }
  }
}

TEST_CASE("embedding_bag_backward_sparse touches exactly the rows of the batch") {
  Rng rng(4);
  for (Isa isa : runnable_isas()) {
    Problem p = make_problem(17, rng);
    SparseRowGrad<float> g;
    g.reset_shape(p.rows, 17);
    std::vector<float> dout(static_cast<std::size_t>(p.batch * 17), 1.0f);
    std::vector<float*> scratch;
    embedding_bag_backward_sparse<float>(p.batch, 17, dout.data(), 17, p.indices.data(), p.offsets.data(), nullptr,
                                         PoolingMode::sum, g, scratch, &embedding_bag_kernels(isa));
    std::set<Index> want(p.indices.begin(), p.indices.end());
    std::set<Index> got(g.rows().begin(), g.rows().end());
    CHECK(got == want);
    CHECK(g.rows().size() == want.size());
    // Each gradient row holds (number of occurrences) in every column.
    for (std::size_t s = 0; s < g.rows().size(); ++s) {
      const auto occ = std::count(p.indices.begin(), p.indices.end(), g.rows()[s]);
      for (Index c = 0; c < 17; ++c) CHECK(g.values()[s * 17 + c] == float(occ));
    }
  }
}
