// avx2 fused DIN attention kernels; meaning in include/mtrank/kernels/din_attention.hpp, bodies
// in src/kernels/simd/din_attention_simd.inl.
#include "kernels/avx2/simd_ops_avx2.hpp"
#include "mtrank/kernels/din_attention.hpp"

namespace mtrank::kernels {
namespace {
using avx2_detail::Ops;
#include "kernels/simd/din_attention_simd.inl"
}  // namespace

extern const DinAttentionKernels kDinAttentionAvx2;
const DinAttentionKernels kDinAttentionAvx2 = {Isa::avx2, din_forward_simd, din_backward_simd};

}  // namespace mtrank::kernels
