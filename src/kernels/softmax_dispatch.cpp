#include "mtrank/kernels/softmax.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const SoftmaxKernels kSoftmaxRef;
#if MTRANK_HAVE_AVX2
extern const SoftmaxKernels kSoftmaxAvx2;
#endif
#if MTRANK_HAVE_AVX512
extern const SoftmaxKernels kSoftmaxAvx512;
#endif

const SoftmaxKernels& softmax_kernels(Isa isa) {
#if MTRANK_HAVE_AVX512
  if (isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return kSoftmaxAvx512;
#endif
#if MTRANK_HAVE_AVX2
  if (isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return kSoftmaxAvx2;
#endif
  (void)isa;
  return kSoftmaxRef;
}

const SoftmaxKernels& softmax_kernels() {
  static const SoftmaxKernels& table = softmax_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
