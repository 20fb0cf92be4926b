// avx512 co-action micro-MLP kernels; meaning in include/mtrank/kernels/co_action.hpp, bodies in
// src/kernels/simd/co_action_simd.inl.
#include "kernels/avx512/simd_ops_avx512.hpp"
#include "mtrank/kernels/co_action.hpp"

namespace mtrank::kernels {
namespace {
using avx512_detail::Ops;
#include "kernels/simd/co_action_simd.inl"
}  // namespace

extern const CoActionKernels kCoActionAvx512;
const CoActionKernels kCoActionAvx512 = {Isa::avx512, co_action_forward_simd, co_action_backward_simd};

}  // namespace mtrank::kernels
