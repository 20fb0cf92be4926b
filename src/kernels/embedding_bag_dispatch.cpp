#include "mtrank/kernels/embedding_bag.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const EmbeddingBagKernels kEmbeddingBagRef, kEmbeddingBagAvx2, kEmbeddingBagAvx512;

const EmbeddingBagKernels& embedding_bag_kernels(Isa isa) {
  return pick_table(isa, kEmbeddingBagRef, MTRANK_AVX2_TABLE(kEmbeddingBagAvx2), MTRANK_AVX512_TABLE(kEmbeddingBagAvx512));
}

const EmbeddingBagKernels& embedding_bag_kernels() {
  static const EmbeddingBagKernels& table = embedding_bag_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
