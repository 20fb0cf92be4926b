// Fused linear layer kernels (float): bias and activation applied to the GEMM output.
//
//   f32_linear_fused:    y[m, n] = act(sum_k x[m, k] * W[n, k] + b[n])        m < M, n < N
//                        x [M, K] row stride ldx, W [N, K] contiguous (PyTorch layout, no copy),
//                        b [N] or nullptr (= 0), y [M, N] row stride ldy (may be a column block).
//   f32_linear_backward: dW[n, k] += sum_m dy[m, n] * x[m, k]     (accumulates; skipped if dw null)
//                        db[n]    += sum_m dy[m, n]               (accumulates; skipped if db null)
//                        dx[m, k]  = sum_n dy[m, n] * W[n, k]     (overwrites; skipped if dx null)
//
//   act: identity, relu (max(v, 0)), sigmoid, tanh, gelu_erf (v * Phi(v), exact erf form as torch).
//
// Implementations (LinearImpl; `automatic` = choose_linear_impl, from the measurements in
// docs/onednn.md: sgemm_epilogue for every shape, because oneDNN 2.6's primitive execution
// allocates on the heap per call, which serving must not do):
//   onednn_matmul   oneDNN matmul primitive, bias + activation fused as post-ops (eltwise), weights
//                   read in place through a transposed memory descriptor. Primitives are cached per
//                   thread (see docs/onednn.md for why); oneDNN's own global primitive cache shares
//                   the JIT code between threads.
//   sgemm_epilogue  oneDNN sgemm (kernels::gemm) and one pass of bias + activation per output row
//                   while it is in L1 (the activation kernels of kernels/activation.hpp).
// All paths run with mtrank::num_threads() intra-op threads and give bit-identical results for the
// same thread count and ISA. MTRANK_ISA caps oneDNN's JIT ISA as well (see kernels/gemm.hpp).
#pragma once
#include <cstddef>

#include "mtrank/core/tensor.hpp"

namespace mtrank::kernels {

enum class FusedActivation { identity, relu, sigmoid, tanh, gelu_erf };
enum class LinearImpl { automatic, onednn_matmul, sgemm_epilogue };

const char* fused_activation_name(FusedActivation act);
/// y = act(y) in place over n values with the active activation kernels.
void apply_fused_activation(FusedActivation act, float* y, Index n);
const char* linear_impl_name(LinearImpl impl);

void f32_linear_fused(Index M, Index K, Index N, const float* x, Index ldx, const float* w, const float* b,
                      FusedActivation act, float* y, Index ldy, LinearImpl impl = LinearImpl::automatic);

/// Scalar oracle: double accumulation (gemm_ref) followed by the _ref activations.
void f32_linear_fused_ref(Index M, Index K, Index N, const float* x, Index ldx, const float* w, const float* b,
                          FusedActivation act, float* y, Index ldy);

/// `impl` = automatic / sgemm_epilogue use kernels::gemm; onednn_matmul uses cached matmul
/// primitives (dW accumulation through a sum post-op). dx_cols in [0, K] (-1 = K): only the
/// first dx_cols columns of dx are computed (inputs beyond are constants: the first layer of a
/// network whose trailing input columns are raw dense features); the rest of dx is not written.
void f32_linear_backward(Index M, Index K, Index N, const float* dy, Index lddy, const float* x, Index ldx,
                         const float* w, float* dw, float* db, float* dx, Index lddx,
                         LinearImpl impl = LinearImpl::automatic, Index dx_cols = -1);

/// The implementation `automatic` uses for a forward of this shape on the active ISA.
LinearImpl choose_linear_impl(Index M, Index K, Index N);

/// Per-thread oneDNN primitive cache of the calling thread.
struct LinearCacheStats {
  std::size_t entries = 0;  // primitives held by this thread
  std::size_t hits = 0, misses = 0;
};
LinearCacheStats linear_cache_stats();
/// Drops the calling thread's primitives (and resets its stats).
void clear_linear_cache();
/// At most this many primitives per thread; when full the cache is cleared (variable batch sizes
/// in a service could otherwise grow it without bound).
inline constexpr std::size_t kLinearCacheCapacity = 256;

}  // namespace mtrank::kernels
