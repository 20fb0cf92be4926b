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

/// The best table at or below `isa` that this build compiled (non-null) and this CPU runs.
template <class Table>
const Table& pick_table(Isa isa, const Table& ref, const Table* avx2, const Table* avx512) {
  if (avx512 && isa >= Isa::avx512 && detected_isa() >= Isa::avx512) return *avx512;
  if (avx2 && isa >= Isa::avx2 && detected_isa() >= Isa::avx2) return *avx2;
  return ref;
}
}  // namespace mtrank::kernels

// The address of an ISA table, or nullptr when this build has no such translation units (the
// extern declaration of a table that is never defined is then never odr-used).
#if MTRANK_HAVE_AVX2
#define MTRANK_AVX2_TABLE(table) (&(table))
#else
#define MTRANK_AVX2_TABLE(table) nullptr
#endif
#if MTRANK_HAVE_AVX512
#define MTRANK_AVX512_TABLE(table) (&(table))
#else
#define MTRANK_AVX512_TABLE(table) nullptr
#endif
