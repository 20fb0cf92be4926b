#include "mtrank/kernels/embedding_bag.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const EmbeddingBagKernels kEmbeddingBagRef;
#if MTRANK_HAVE_AVX2
extern const EmbeddingBagKernels kEmbeddingBagAvx2;
#endif
#if MTRANK_HAVE_AVX512
extern const EmbeddingBagKernels kEmbeddingBagAvx512;
#endif

const EmbeddingBagKernels& embedding_bag_kernels(Isa isa) {
#if MTRANK_HAVE_AVX512
  if (isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return kEmbeddingBagAvx512;
#endif
#if MTRANK_HAVE_AVX2
  if (isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return kEmbeddingBagAvx2;
#endif
  (void)isa;
  return kEmbeddingBagRef;
}

const EmbeddingBagKernels& embedding_bag_kernels() {
  static const EmbeddingBagKernels& table = embedding_bag_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
