// Dense matrix multiply on raw row-major pointers.
//
//   C[M, N] = alpha * op(A) * op(B) + beta * C
//   op(A) = A [M, K] (lda >= K) or, with trans_a, A^T where A is [K, M] (lda >= M)
//   op(B) = B [K, N] (ldb >= N) or, with trans_b, B^T where B is [N, K] (ldb >= K)
//
// float goes through oneDNN's sgemm (JIT AVX-512/AVX2 kernels, its own ISA dispatch, capped
// by MTRANK_ISA as well); double (used by gradient checks) through Eigen.
#pragma once
#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, float alpha, const float* A, Index lda,
          const float* B, Index ldb, float beta, float* C, Index ldc);
void gemm(bool trans_a, bool trans_b, Index M, Index N, Index K, double alpha, const double* A,
          Index lda, const double* B, Index ldb, double beta, double* C, Index ldc);

/// Scalar triple loop, the test oracle for gemm().
template <class T>
void gemm_ref(bool trans_a, bool trans_b, Index M, Index N, Index K, T alpha, const T* A, Index lda,
              const T* B, Index ldb, T beta, T* C, Index ldc) {
  for (Index i = 0; i < M; ++i)
    for (Index j = 0; j < N; ++j) {
      double acc = 0;
      for (Index k = 0; k < K; ++k) {
        double a = trans_a ? A[k * lda + i] : A[i * lda + k];
        double b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      T& c = C[i * ldc + j];
      c = static_cast<T>(alpha * acc + (beta == T(0) ? 0.0 : beta * double(c)));
    }
}

/// Matrix form: C = alpha * op(A) op(B) + beta * C with shapes checked.
template <class T>
void matmul(MatrixView<const T> A, bool trans_a, MatrixView<const T> B, bool trans_b, MatrixView<T> C,
            T alpha = T(1), T beta = T(0)) {
  const Index M = trans_a ? A.cols : A.rows, K = trans_a ? A.rows : A.cols;
  const Index KB = trans_b ? B.cols : B.rows, N = trans_b ? B.rows : B.cols;
  if (K != KB || C.rows != M || C.cols != N)
    fail("matmul: op(A) [", M, ", ", K, "] x op(B) [", KB, ", ", N, "] -> C [", C.rows, ", ", C.cols,
         "]: inner or output dimensions disagree");
  gemm(trans_a, trans_b, M, N, K, alpha, A.data, A.stride, B.data, B.stride, beta, C.data, C.stride);
}

}  // namespace mtrank::kernels
