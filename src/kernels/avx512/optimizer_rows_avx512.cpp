// avx512 optimiser-row kernels; meaning in include/mtrank/kernels/optimizer_rows.hpp, bodies in
// src/kernels/simd/optimizer_rows_simd.inl (bit-identical to the reference: no contraction).
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")  // whole TU, the Ops helpers included

#include "kernels/avx512/simd_ops_avx512.hpp"
#include "mtrank/kernels/optimizer_rows.hpp"

namespace mtrank::kernels {
namespace {
using avx512_detail::Ops;
#include "kernels/simd/optimizer_rows_simd.inl"
}  // namespace

extern const OptimizerRowKernels kOptimizerRowsAvx512;
const OptimizerRowKernels kOptimizerRowsAvx512 = {Isa::avx512, sgd_row_simd, adam_row_simd, adagrad_row_simd, ftrl_row_simd};

}  // namespace mtrank::kernels

#pragma GCC pop_options
