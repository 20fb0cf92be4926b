// Shared helpers for the kernel benchmarks: the ISA argument and a skip for missing ISAs.
#pragma once
#include <benchmark/benchmark.h>

#include "mtrank/core/cpu.hpp"

namespace mtrank::bench {

/// The ISA from argument `arg` of the benchmark; returns false (and marks the run skipped) when
/// the machine cannot run it.
inline bool isa_arg(benchmark::State& state, int arg, Isa& isa) {
  isa = static_cast<Isa>(state.range(arg));
  state.SetLabel(isa_name(isa));
  if (static_cast<int>(isa) > static_cast<int>(detected_isa())) {
    state.SkipWithError("ISA not available on this machine");
    return false;
  }
  return true;
}

}  // namespace mtrank::bench
