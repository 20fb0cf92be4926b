#include "mtrank/kernels/co_action.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const CoActionKernels kCoActionRef, kCoActionAvx2, kCoActionAvx512;

const CoActionKernels& co_action_kernels(Isa isa) {
  return pick_table(isa, kCoActionRef, MTRANK_AVX2_TABLE(kCoActionAvx2), MTRANK_AVX512_TABLE(kCoActionAvx512));
}

const CoActionKernels& co_action_kernels() {
  static const CoActionKernels& table = co_action_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
