// Intra-op threads are an explicit setting. The default is 1: services run requests in
// parallel on their own threads. Results are bit-identical for the same thread count.
#pragma once

namespace mtrank {

/// Sets the number of intra-op threads used by GEMMs and parallel kernels (>= 1).
void set_num_threads(int n);
int num_threads();
/// Applies the setting to the calling thread's OpenMP state (cheap when unchanged).
/// Kernels call this before entering OpenMP or oneDNN code.
void apply_thread_setting();

}  // namespace mtrank
