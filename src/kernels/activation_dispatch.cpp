#include "mtrank/kernels/activation.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const ActivationKernels kActivationRef;
#if MTRANK_HAVE_AVX2
extern const ActivationKernels kActivationAvx2;
#endif
#if MTRANK_HAVE_AVX512
extern const ActivationKernels kActivationAvx512;
#endif

const ActivationKernels& activation_kernels(Isa isa) {
#if MTRANK_HAVE_AVX512
  if (isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return kActivationAvx512;
#endif
#if MTRANK_HAVE_AVX2
  if (isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return kActivationAvx2;
#endif
  (void)isa;
  return kActivationRef;
}

const ActivationKernels& activation_kernels() {
  static const ActivationKernels& table = activation_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
