// Cached oneDNN matmul primitives (internal): C[M, N] = act(A[M, K] B[K, N] + bias[N]) (+ C when
// accumulating), every operand given by strides so that transposed views need no copy.
//
// Cache design: one small map per thread (thread_local), keyed by everything the primitive
// depends on (shape, strides, data type, activation, bias, accumulation, intra-op thread count).
// Why per thread rather than one map behind a mutex: an entry also holds the dnnl::memory objects
// whose data handles are re-pointed on every call, and those are not safe to share between
// threads; the hot path takes no lock; and a miss in a second thread is cheap because oneDNN's
// own global primitive cache (thread-safe, LRU) returns the already JIT-compiled kernel.
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <cstdint>

#include "mtrank/core/tensor.hpp"
#include "mtrank/kernels/linear_fused.hpp"

namespace mtrank::onednn {

enum class MatmulType : int { f32 = 0, bf16 = 1 };  // bf16: A and B bf16, f32 accumulation, C f32

struct MatmulKey {
  Index M = 0, K = 0, N = 0;
  Index sa0 = 0, sa1 = 0;  // A element (m, k) at m * sa0 + k * sa1
  Index sb0 = 0, sb1 = 0;  // B element (k, n) at k * sb0 + n * sb1
  Index ldc = 0;           // C element (m, n) at m * ldc + n
  int act = 0;             // kernels::FusedActivation
  int type = 0;            // MatmulType
  bool bias = false;
  bool accumulate = false;  // C += ... (sum post-op) instead of C = ...
  bool b_any = false;       // B in the primitive's preferred (blocked) layout; sb0/sb1 ignored
  int threads = 1;
  bool operator==(const MatmulKey&) const = default;
};

struct MatmulEntry;
/// The calling thread's cached primitive for `key` (created on a miss).
MatmulEntry& lookup_matmul(const MatmulKey& key);
/// The B layout the primitive expects (for b_any: the blocked layout to reorder weights into).
const dnnl::memory::desc& matmul_b_desc(const MatmulEntry& e);
void run_matmul(MatmulEntry& e, const void* a, const void* b, const float* bias, float* c);
inline void run_matmul(const MatmulKey& key, const void* a, const void* b, const float* bias, float* c) {
  run_matmul(lookup_matmul(key), a, b, bias, c);
}

}  // namespace mtrank::onednn
