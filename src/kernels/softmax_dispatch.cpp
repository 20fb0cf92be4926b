#include "mtrank/kernels/softmax.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const SoftmaxKernels kSoftmaxRef, kSoftmaxAvx2, kSoftmaxAvx512;

const SoftmaxKernels& softmax_kernels(Isa isa) {
  return pick_table(isa, kSoftmaxRef, MTRANK_AVX2_TABLE(kSoftmaxAvx2), MTRANK_AVX512_TABLE(kSoftmaxAvx512));
}

const SoftmaxKernels& softmax_kernels() {
  static const SoftmaxKernels& table = softmax_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
