#include "mtrank/kernels/activation.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const ActivationKernels kActivationRef, kActivationAvx2, kActivationAvx512;

const ActivationKernels& activation_kernels(Isa isa) {
  return pick_table(isa, kActivationRef, MTRANK_AVX2_TABLE(kActivationAvx2), MTRANK_AVX512_TABLE(kActivationAvx512));
}

const ActivationKernels& activation_kernels() {
  static const ActivationKernels& table = activation_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
