// avx512 fused DIN attention kernels; meaning in include/mtrank/kernels/din_attention.hpp, bodies
// in src/kernels/simd/din_attention_simd.inl.
#include "kernels/avx512/simd_ops_avx512.hpp"
#include "mtrank/kernels/din_attention.hpp"

namespace mtrank::kernels {
namespace {
using avx512_detail::Ops;
#include "kernels/simd/din_attention_simd.inl"
}  // namespace

extern const DinAttentionKernels kDinAttentionAvx512;
const DinAttentionKernels kDinAttentionAvx512 = {Isa::avx512, din_forward_simd, din_backward_simd};

}  // namespace mtrank::kernels
