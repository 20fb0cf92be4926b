#include "mtrank/core/threading.hpp"

#include <omp.h>

#include <atomic>

#include "mtrank/core/error.hpp"

namespace mtrank {
namespace {
std::atomic<int> g_threads{1};
thread_local int t_applied = -1;
}  // namespace

void set_num_threads(int n) {
  require(n >= 1, "set_num_threads: expected n >= 1, got ", n);
  g_threads.store(n);
  apply_thread_setting();
}

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

void apply_thread_setting() {
  const int n = num_threads();
  if (t_applied != n) {
    omp_set_num_threads(n);
    t_applied = n;
  }
}

}  // namespace mtrank
