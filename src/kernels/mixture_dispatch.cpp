#include "mtrank/kernels/mixture.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const MixtureKernels kMixtureRef;
#if MTRANK_HAVE_AVX2
extern const MixtureKernels kMixtureAvx2;
#endif
#if MTRANK_HAVE_AVX512
extern const MixtureKernels kMixtureAvx512;
#endif

const MixtureKernels& mixture_kernels(Isa isa) {
#if MTRANK_HAVE_AVX512
  if (isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return kMixtureAvx512;
#endif
#if MTRANK_HAVE_AVX2
  if (isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return kMixtureAvx2;
#endif
  (void)isa;
  return kMixtureRef;
}

const MixtureKernels& mixture_kernels() {
  static const MixtureKernels& table = mixture_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
