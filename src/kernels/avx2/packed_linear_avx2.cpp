// avx2 packed-weight linear kernels (f32 only); meaning in include/mtrank/kernels/packed_linear.hpp,
// body in src/kernels/simd/packed_linear_simd.inl with 8-column panels (6 x 2 tile: 12 ymm
// accumulators, 2 weight vectors, 1 broadcast of the 16 registers).
#include <array>
#include <type_traits>
#include <utility>

#include "kernels/avx2/simd_ops_avx2.hpp"
#include "mtrank/kernels/packed_linear.hpp"

namespace mtrank::kernels {
namespace {
using avx2_detail::Ops;
constexpr int kMaxRows = 6, kMainPanels = 2, kSmallRows = 3, kSmallPanels = 4;
#include "kernels/simd/packed_linear_simd.inl"
}  // namespace

extern const PackedLinearKernels kPackedLinearAvx2;
const PackedLinearKernels kPackedLinearAvx2 = {"avx2", 8, f32_packed_block, nullptr, int8_packed_block};

}  // namespace mtrank::kernels
