#include "mtrank/kernels/optimizer_rows.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const OptimizerRowKernels kOptimizerRowsRef, kOptimizerRowsAvx2, kOptimizerRowsAvx512;

const OptimizerRowKernels& optimizer_row_kernels(Isa isa) {
  return pick_table(isa, kOptimizerRowsRef, MTRANK_AVX2_TABLE(kOptimizerRowsAvx2), MTRANK_AVX512_TABLE(kOptimizerRowsAvx512));
}

const OptimizerRowKernels& optimizer_row_kernels() {
  static const OptimizerRowKernels& table = optimizer_row_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
