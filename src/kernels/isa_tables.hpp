// Internal: which ISA variants this build compiled (set by CMake per compiler support).
#pragma once
#ifndef MTRANK_HAVE_AVX2
#define MTRANK_HAVE_AVX2 0
#endif
#ifndef MTRANK_HAVE_AVX512
#define MTRANK_HAVE_AVX512 0
#endif

#include "mtrank/core/cpu.hpp"

namespace mtrank::kernels {
inline bool operator>=(Isa a, Isa b) { return static_cast<int>(a) >= static_cast<int>(b); }
}  // namespace mtrank::kernels
