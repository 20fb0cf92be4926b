#include "mtrank/kernels/linear_fused.hpp"

#include <algorithm>
#include <cstring>

#include "mtrank/core/error.hpp"
#include "mtrank/core/threading.hpp"
#include "mtrank/kernels/activation.hpp"
#include "mtrank/kernels/gemm.hpp"
#include "onednn/matmul_cache.hpp"

namespace mtrank::kernels {

const char* fused_activation_name(FusedActivation act) {
  switch (act) {
    case FusedActivation::identity: return "identity";
    case FusedActivation::relu: return "relu";
    case FusedActivation::sigmoid: return "sigmoid";
    case FusedActivation::tanh: return "tanh";
    case FusedActivation::gelu_erf: return "gelu_erf";
  }
  return "?";
}

const char* linear_impl_name(LinearImpl impl) {
  switch (impl) {
    case LinearImpl::automatic: return "automatic";
    case LinearImpl::onednn_matmul: return "onednn_matmul";
    case LinearImpl::sgemm_epilogue: return "sgemm_epilogue";
  }
  return "?";
}

namespace {

void check_args(const char* what, Index M, Index K, Index N, Index ldx, Index ldy) {
  if (M < 0 || K <= 0 || N <= 0) fail(what, ": expected M >= 0, K > 0, N > 0, got M=", M, " K=", K, " N=", N);
  if (ldx < K) fail(what, ": ldx ", ldx, " < K ", K);
  if (ldy < N) fail(what, ": ldy ", ldy, " < N ", N);
}

// y = act(y + b) over one row of n values, in place (the row is in L1 right after the GEMM).
void epilogue_row(float* y, const float* b, Index n, FusedActivation act) {
  if (b)
    for (Index j = 0; j < n; ++j) y[j] += b[j];
  apply_fused_activation(act, y, n);
}

}  // namespace

void apply_fused_activation(FusedActivation act, float* y, Index n) {
  const ActivationKernels& k = activation_kernels();
  switch (act) {
    case FusedActivation::identity: return;
    case FusedActivation::relu: k.relu_fwd(y, y, n); return;
    case FusedActivation::sigmoid: k.sigmoid_fwd(y, y, n); return;
    case FusedActivation::tanh: k.tanh_fwd(y, y, n); return;
    case FusedActivation::gelu_erf: k.gelu_fwd(y, y, n); return;
  }
}

LinearImpl choose_linear_impl(Index M, Index K, Index N) {
  // Measured with bench/bench_linear.cpp (docs/onednn.md, "decision table"): the oneDNN matmul
  // primitive's small-M kernels are slow (M = 1, 512 -> 256: 19 us vs 7.4 us for sgemm's GEMV);
  // from M = 32 it is 5-20% faster than sgemm + epilogue. But dnnl_primitive_execute (oneDNN
  // 2.6) allocates on the heap on every call (its exec_args_t is a std::unordered_map), which
  // breaks the steady-state no-allocation guarantee of serving (tests/serve/test_no_alloc.cpp),
  // and sgemm does not. So every shape goes through sgemm + epilogue; onednn_matmul stays
  // available explicitly (and is what bf16 inference uses).
  (void)M, (void)K, (void)N;
  return LinearImpl::sgemm_epilogue;
}

void f32_linear_fused(Index M, Index K, Index N, const float* x, Index ldx, const float* w, const float* b,
                      FusedActivation act, float* y, Index ldy, LinearImpl impl) {
  check_args("f32_linear_fused", M, K, N, ldx, ldy);
  if (M == 0) return;
  if (impl == LinearImpl::automatic) impl = choose_linear_impl(M, K, N);
  if (impl == LinearImpl::onednn_matmul) {
    onednn::MatmulKey key{.M = M, .K = K, .N = N, .sa0 = ldx, .sa1 = 1, .sb0 = 1, .sb1 = K, .ldc = ldy,
                          .act = static_cast<int>(act), .type = int(onednn::MatmulType::f32),
                          .bias = b != nullptr, .accumulate = false, .threads = num_threads()};
    onednn::run_matmul(key, x, w, b, y);
    return;
  }
  gemm(false, true, M, N, K, 1.f, x, ldx, w, K, 0.f, y, ldy);
  for (Index r = 0; r < M; ++r) epilogue_row(y + r * ldy, b, N, act);
}

void f32_linear_fused_ref(Index M, Index K, Index N, const float* x, Index ldx, const float* w, const float* b,
                          FusedActivation act, float* y, Index ldy) {
  check_args("f32_linear_fused_ref", M, K, N, ldx, ldy);
  gemm_ref<float>(false, true, M, N, K, 1.f, x, ldx, w, K, 0.f, y, ldy);
  for (Index r = 0; r < M; ++r) {
    float* yr = y + r * ldy;
    if (b)
      for (Index j = 0; j < N; ++j) yr[j] += b[j];
    switch (act) {
      case FusedActivation::identity: break;
      case FusedActivation::relu: relu_fwd_ref(yr, yr, N); break;
      case FusedActivation::sigmoid: sigmoid_fwd_ref(yr, yr, N); break;
      case FusedActivation::tanh: tanh_fwd_ref(yr, yr, N); break;
      case FusedActivation::gelu_erf: gelu_fwd_ref(yr, yr, N); break;
    }
  }
}

void f32_linear_backward(Index M, Index K, Index N, const float* dy, Index lddy, const float* x, Index ldx,
                         const float* w, float* dw, float* db, float* dx, Index lddx, LinearImpl impl,
                         Index dx_cols) {
  check_args("f32_linear_backward", M, K, N, ldx, lddy);
  if (dx && lddx < K) fail("f32_linear_backward: lddx ", lddx, " < K ", K);
  if (dx_cols < 0) dx_cols = K;
  if (dx_cols > K) fail("f32_linear_backward: dx_cols ", dx_cols, " > K ", K);
  if (M == 0) {
    return;
  }
  const bool dnn = impl == LinearImpl::onednn_matmul;
  if (dw) {
    if (dnn) {
      // dW [N, K] += dy^T [N, M] x [M, K]
      onednn::MatmulKey key{.M = N, .K = M, .N = K, .sa0 = 1, .sa1 = lddy, .sb0 = ldx, .sb1 = 1, .ldc = K,
                            .act = 0, .type = int(onednn::MatmulType::f32), .bias = false, .accumulate = true,
                            .threads = num_threads()};
      onednn::run_matmul(key, dy, x, nullptr, dw);
    } else {
      gemm(true, false, N, K, M, 1.f, dy, lddy, x, ldx, 1.f, dw, K);
    }
  }
  if (db) {
    for (Index r = 0; r < M; ++r) {
      const float* d = dy + r * lddy;
      for (Index j = 0; j < N; ++j) db[j] += d[j];
    }
  }
  if (dx && dx_cols > 0) {
    if (dnn) {
      // dx [M, dx_cols] = dy [M, N] W [N, :dx_cols]
      onednn::MatmulKey key{.M = M, .K = N, .N = dx_cols, .sa0 = lddy, .sa1 = 1, .sb0 = K, .sb1 = 1, .ldc = lddx,
                            .act = 0, .type = int(onednn::MatmulType::f32), .bias = false, .accumulate = false,
                            .threads = num_threads()};
      onednn::run_matmul(key, dy, w, nullptr, dx);
    } else {
      gemm(false, false, M, dx_cols, N, 1.f, dy, lddy, w, K, 0.f, dx, lddx);
    }
  }
}

}  // namespace mtrank::kernels
