#include "mtrank/kernels/optimizer_rows.hpp"
#include "kernels/isa_tables.hpp"

namespace mtrank::kernels {

extern const OptimizerRowKernels kOptimizerRowsRef;
#if MTRANK_HAVE_AVX2
extern const OptimizerRowKernels kOptimizerRowsAvx2;
#endif
#if MTRANK_HAVE_AVX512
extern const OptimizerRowKernels kOptimizerRowsAvx512;
#endif

const OptimizerRowKernels& optimizer_row_kernels(Isa isa) {
#if MTRANK_HAVE_AVX512
  if (isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return kOptimizerRowsAvx512;
#endif
#if MTRANK_HAVE_AVX2
  if (isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return kOptimizerRowsAvx2;
#endif
  (void)isa;
  return kOptimizerRowsRef;
}

const OptimizerRowKernels& optimizer_row_kernels() {
  static const OptimizerRowKernels& table = optimizer_row_kernels(active_isa());
  return table;
}

}  // namespace mtrank::kernels
