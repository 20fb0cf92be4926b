#include <cstdlib>
#include <cstring>
#include <new>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/tensor.hpp"

#include <atomic>
#include <unistd.h>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mtrank::detail {
namespace {
constexpr std::size_t kHugePage = std::size_t(2) << 20;

bool huge_pages_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("MTRANK_HUGE_PAGES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return enabled;
}
}  // namespace

void* huge_page_alloc(std::size_t bytes) {
  const std::size_t align = huge_pages_enabled() ? kHugePage : kAlignment;
  const std::size_t rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  // Advice only: without THP support (or with it off) the pages stay 4 KiB and nothing fails.
  if (huge_pages_enabled()) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

}  // namespace mtrank::detail

namespace mtrank {
namespace {
std::atomic<std::uint64_t> g_parameter_budget{0};  // 0 = the default

std::uint64_t default_parameter_budget() {
  static const std::uint64_t bytes = [] {
    if (const char* v = std::getenv("MTRANK_PARAMETER_BUDGET_BYTES")) {
      char* end = nullptr;
      const unsigned long long b = std::strtoull(v, &end, 10);
      if (end != v && *end == '\0' && b > 0) return static_cast<std::uint64_t>(b);
    }
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0) return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
    return std::uint64_t{64} << 30;
  }();
  return bytes;
}
}  // namespace

std::uint64_t parameter_memory_budget() {
  const std::uint64_t b = g_parameter_budget.load(std::memory_order_relaxed);
  return b ? b : default_parameter_budget();
}

void set_parameter_memory_budget(std::uint64_t bytes) { g_parameter_budget.store(bytes, std::memory_order_relaxed); }

}  // namespace mtrank
