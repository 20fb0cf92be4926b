#include "onednn/onednn_common.hpp"

#include <cstdlib>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/error.hpp"

namespace mtrank::onednn {
namespace {
// dnnl_set_max_cpu_isa only takes effect before the first JIT kernel is generated; kernels/gemm.cpp
// applies the same cap before its first sgemm. Whichever runs first wins, and both use the same
// mapping, so the later call's "already set" status is expected and ignored.
void cap_isa_once() {
  static const bool done = [] {
    switch (active_isa()) {
      case Isa::ref: dnnl_set_max_cpu_isa(dnnl_cpu_isa_sse41); break;
      case Isa::avx2: dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2); break;
      case Isa::avx512: break;
    }
    return true;
  }();
  (void)done;
}
}  // namespace

const dnnl::engine& engine() {
  static const dnnl::engine eng = [] {
    cap_isa_once();
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return eng;
}

dnnl::stream& thread_stream() {
  thread_local dnnl::stream s(engine());
  return s;
}

void ScratchBuffer::Free::operator()(void* p) const { std::free(p); }

void* ScratchBuffer::get(std::size_t bytes) {
  if (bytes == 0) bytes = 64;
  if (bytes > size_) {
    const std::size_t rounded = (bytes + 4095) / 4096 * 4096;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) fail("oneDNN scratch buffer: cannot allocate ", rounded, " bytes");
    data_.reset(p);
    size_ = rounded;
  }
  return data_.get();
}

void execute(const dnnl::primitive& prim, const dnnl_exec_arg_t* args, int nargs) {
  dnnl::stream& s = thread_stream();
  dnnl_status_t st = dnnl_primitive_execute(prim.get(), s.get(), nargs, args);
  if (st != dnnl_success) fail("oneDNN: primitive execution failed with status ", static_cast<int>(st));
  st = dnnl_stream_wait(s.get());
  if (st != dnnl_success) fail("oneDNN: stream wait failed with status ", static_cast<int>(st));
}

}  // namespace mtrank::onednn
