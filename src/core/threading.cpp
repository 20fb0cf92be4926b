#include "mtrank/core/threading.hpp"

#include <omp.h>
#include <strings.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "mtrank/core/error.hpp"

namespace mtrank {
namespace {
std::atomic<int> g_threads{1};
std::atomic<bool> g_noted{false};
thread_local int t_applied = -1;

bool wait_policy_unset() { return !std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT"); }
}  // namespace

void set_num_threads(int n) {
  require(n >= 1, "set_num_threads: expected n >= 1, got ", n);
  g_threads.store(n);
  apply_thread_setting();
  if (n > 1 && wait_policy_unset() && !g_noted.exchange(true))
    std::fprintf(stderr,
                 "mtrank: note: OMP_WAIT_POLICY is not set, so idle OpenMP threads spin; on a loaded host that can "
                 "make %d threads slower than one. Call mtrank::use_passive_openmp_wait(argc, argv) first in main() "
                 "or set OMP_WAIT_POLICY=passive (docs/architecture.md, Threads).\n",
                 n);
}

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

void apply_thread_setting() {
  const int n = num_threads();
  if (t_applied != n) {
    omp_set_num_threads(n);
    t_applied = n;
  }
}

void use_passive_openmp_wait(int argc, char** argv) {
  if (!wait_policy_unset()) return;
  if (const char* e = std::getenv("MTRANK_OPENMP_REEXEC"); e && std::strcmp(e, "0") == 0) return;
  if (argc < 1 || !argv || !argv[0]) return;
  if (::setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  std::fflush(nullptr);
  ::execv("/proc/self/exe", argv);
  // Still here: exec failed. The runtime keeps spinning; do not leave a variable that says otherwise.
  const int err = errno;
  ::unsetenv("OMP_WAIT_POLICY");
  std::fprintf(stderr, "mtrank: note: could not re-execute with OMP_WAIT_POLICY=passive (%s); idle OpenMP threads spin\n",
               std::strerror(err));
}

bool openmp_waits_passively() {
  if (const char* p = std::getenv("OMP_WAIT_POLICY"); p && ::strcasecmp(p, "passive") == 0) {
    const char* s = std::getenv("GOMP_SPINCOUNT");
    return !s || std::strtoll(s, nullptr, 10) == 0;
  }
  if (const char* s = std::getenv("GOMP_SPINCOUNT"); s && *s) {
    char* end = nullptr;
    const long long v = std::strtoll(s, &end, 10);
    return end != s && v == 0;
  }
  return false;
}

}  // namespace mtrank
