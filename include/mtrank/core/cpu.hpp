// CPU features (CPUID + XGETBV, so OS support is included) and the ISA cap.
// The active ISA is min(detected, MTRANK_ISA) where MTRANK_ISA is one of ref|avx2|avx512.
#pragma once
#include <string>
#include <vector>

namespace mtrank {

enum class Isa : int { ref = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
/// Parses "ref", "avx2", "avx512"; throws mtrank::Error naming MTRANK_ISA otherwise.
Isa parse_isa(const std::string& name);

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_vnni = false, avx512_bf16 = false;
};
const CpuFeatures& cpu_features();

/// Best ISA this machine and OS can run.
Isa detected_isa();
/// detected_isa() capped by the MTRANK_ISA environment variable (read once).
Isa active_isa();
/// Every ISA this machine can run, best last: tests loop over these.
std::vector<Isa> runnable_isas();

}  // namespace mtrank
