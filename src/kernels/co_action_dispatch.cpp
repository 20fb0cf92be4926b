#include "mtrank/kernels/co_action.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const CoActionKernels kCoActionRef;
#if MTRANK_HAVE_AVX2
extern const CoActionKernels kCoActionAvx2;
#endif
#if MTRANK_HAVE_AVX512
extern const CoActionKernels kCoActionAvx512;
#endif

const CoActionKernels& co_action_kernels(Isa isa) {
#if MTRANK_HAVE_AVX512
  if (isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return kCoActionAvx512;
#endif
#if MTRANK_HAVE_AVX2
  if (isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return kCoActionAvx2;
#endif
  (void)isa;
  return kCoActionRef;
}

const CoActionKernels& co_action_kernels() {
  static const CoActionKernels& table = co_action_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
