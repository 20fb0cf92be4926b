// Intra-op threads are an explicit setting. The default is 1: services run requests in
// parallel on their own threads. Results are bit-identical for the same thread count.
//
// Idle OpenMP threads on a busy host (docs/architecture.md, "Threads and determinism"): libgomp
// reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, when it is loaded, which is before main() and
// before any constructor of a program linked against it; nothing can change them later in the
// process. Unset, idle threads spin up to 300 000 iterations at every barrier and between
// parallel regions. On a host where other processes compete for the cores, a spinning thread
// holds a core the thread it waits for needs: `mtrank train --threads 2` on a 2-core host with
// one busy process ran 10x slower than one thread. Passive waiting (sleep on a futex) removes
// the collapse. Programs therefore call use_passive_openmp_wait(argc, argv) first in main(); the
// mtrank tool, the ranking server, the examples and the test binaries do.
#pragma once

namespace mtrank {

/// Sets the number of intra-op threads used by GEMMs and parallel kernels (>= 1).
/// With n > 1 and neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT set (idle threads spin), prints a
/// one-time note on stderr saying how to wait passively.
void set_num_threads(int n);
int num_threads();
/// Applies the setting to the calling thread's OpenMP state (cheap when unchanged).
/// Kernels call this before entering OpenMP or oneDNN code.
void apply_thread_setting();

/// Makes passive waiting the default for this program: when neither OMP_WAIT_POLICY nor
/// GOMP_SPINCOUNT is set, sets OMP_WAIT_POLICY=passive and re-executes the program
/// (/proc/self/exe, same argv and environment, same process id) so that the OpenMP runtime
/// starts with it; the re-executed program finds the variable set and returns at once. Does
/// nothing when either variable is set (the user's choice, e.g. OMP_WAIT_POLICY=active on a
/// dedicated host) or MTRANK_OPENMP_REEXEC=0. Call it first in main(), before any other thread
/// starts and before anything is written. If exec fails, the program continues (spinning) and a
/// note goes to stderr.
void use_passive_openmp_wait(int argc, char** argv);

/// True when the OpenMP runtime of this process waits passively (OMP_WAIT_POLICY=passive, or
/// GOMP_SPINCOUNT=0), as read from the environment.
bool openmp_waits_passively();

}  // namespace mtrank
