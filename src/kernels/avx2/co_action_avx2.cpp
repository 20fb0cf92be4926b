// avx2 co-action micro-MLP kernels; meaning in include/mtrank/kernels/co_action.hpp, bodies in
// src/kernels/simd/co_action_simd.inl.
#include "kernels/avx2/simd_ops_avx2.hpp"
#include "mtrank/kernels/co_action.hpp"

namespace mtrank::kernels {
namespace {
using avx2_detail::Ops;
#include "kernels/simd/co_action_simd.inl"
}  // namespace

extern const CoActionKernels kCoActionAvx2;
const CoActionKernels kCoActionAvx2 = {Isa::avx2, co_action_forward_simd, co_action_backward_simd};

}  // namespace mtrank::kernels
