#include "mtrank/kernels/din_attention.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const DinAttentionKernels kDinAttentionRef, kDinAttentionAvx2, kDinAttentionAvx512;

const DinAttentionKernels& din_attention_kernels(Isa isa) {
  return pick_table(isa, kDinAttentionRef, MTRANK_AVX2_TABLE(kDinAttentionAvx2), MTRANK_AVX512_TABLE(kDinAttentionAvx512));
}

const DinAttentionKernels& din_attention_kernels() {
  static const DinAttentionKernels& table = din_attention_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
