#include <cstdlib>
#include <cstring>
#include <new>

#include "mtrank/core/tensor.hpp"

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
