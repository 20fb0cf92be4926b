#include "mtrank/kernels/din_attention.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const DinAttentionKernels kDinAttentionRef;
#if MTRANK_HAVE_AVX2
extern const DinAttentionKernels kDinAttentionAvx2;
#endif
#if MTRANK_HAVE_AVX512
extern const DinAttentionKernels kDinAttentionAvx512;
#endif

const DinAttentionKernels& din_attention_kernels(Isa isa) {
#if MTRANK_HAVE_AVX512
  if (isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return kDinAttentionAvx512;
#endif
#if MTRANK_HAVE_AVX2
  if (isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return kDinAttentionAvx2;
#endif
  (void)isa;
  return kDinAttentionRef;
}

const DinAttentionKernels& din_attention_kernels() {
  static const DinAttentionKernels& table = din_attention_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
