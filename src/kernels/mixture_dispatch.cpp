#include "mtrank/kernels/mixture.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const MixtureKernels kMixtureRef, kMixtureAvx2, kMixtureAvx512;

const MixtureKernels& mixture_kernels(Isa isa) {
  return pick_table(isa, kMixtureRef, MTRANK_AVX2_TABLE(kMixtureAvx2), MTRANK_AVX512_TABLE(kMixtureAvx512));
}

const MixtureKernels& mixture_kernels() {
  static const MixtureKernels& table = mixture_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
