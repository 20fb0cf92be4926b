// Internal oneDNN glue shared by src/onednn/*.cpp (never included by public headers).
#pragma once
#include <oneapi/dnnl/dnnl.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mtrank::onednn {

/// The CPU engine, created once after oneDNN's ISA has been capped at active_isa()
/// (MTRANK_ISA=avx2 -> dnnl_cpu_isa_avx2, ref -> sse41; same mapping as kernels/gemm.cpp).
const dnnl::engine& engine();
/// The calling thread's in-order CPU stream.
dnnl::stream& thread_stream();

/// A 64-byte aligned per-thread byte buffer that only grows (scratchpads, converted inputs).
class ScratchBuffer {
 public:
  void* get(std::size_t bytes);

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> data_;
  std::size_t size_ = 0;
};

/// Executes `prim` with the given (arg, memory) pairs through the C API (no std::unordered_map
/// built on our side) and waits for the stream.
void execute(const dnnl::primitive& prim, const dnnl_exec_arg_t* args, int nargs);

}  // namespace mtrank::onednn
