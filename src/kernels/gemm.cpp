#include "mtrank/kernels/gemm.hpp"

#include <oneapi/dnnl/dnnl.h>

#include <Eigen/Core>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/threading.hpp"

namespace mtrank::kernels {
namespace {
// Caps oneDNN's JIT ISA at ours, once, so MTRANK_ISA=avx2 also exercises oneDNN's AVX2 code.
bool cap_onednn_isa() {
  switch (active_isa()) {
    case Isa::ref: dnnl_set_max_cpu_isa(dnnl_cpu_isa_sse41); break;
    case Isa::avx2: dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2); break;
    case Isa::avx512: break;
  }
  return true;
}
}  // namespace

void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, float alpha, const float* A, Index lda,
          const float* B, Index ldb, float beta, float* C, Index ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {
    for (Index i = 0; i < M; ++i)
      for (Index j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.f ? 0.f : beta * C[i * ldc + j];
    return;
  }
  static const bool capped = cap_onednn_isa();
  (void)capped;
  apply_thread_setting();
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                                beta, C, ldc);
  if (st != dnnl_success) fail("gemm: oneDNN sgemm failed with status ", static_cast<int>(st));
}

void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, double alpha, const double* A,
          Index lda, const double* B, Index ldb, double beta, double* C, Index ldc) {
  using RowMat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Map = Eigen::Map<const RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
  using MapOut = Eigen::Map<RowMat, Eigen::Unaligned, Eigen::OuterStride<>>;
  if (M == 0 || N == 0) return;
  MapOut c(C, M, N, Eigen::OuterStride<>(ldc));
  if (beta == 0.0) c.setZero(); else c *= beta;
  if (K == 0) return;
  Map a(A, trans_a ? K : M, trans_a ? M : K, Eigen::OuterStride<>(lda));
  Map b(B, trans_b ? N : K, trans_b ? K : N, Eigen::OuterStride<>(ldb));
  if (!trans_a && !trans_b) c.noalias() += alpha * a * b;
  else if (trans_a && !trans_b) c.noalias() += alpha * a.transpose() * b;
  else if (!trans_a && trans_b) c.noalias() += alpha * a * b.transpose();
  else c.noalias() += alpha * a.transpose() * b.transpose();
}

}  // namespace mtrank::kernels
