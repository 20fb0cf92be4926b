#include "mtrank/kernels/bf16.hpp"

#include <mutex>
#include <shared_mutex>
#include <vector>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/error.hpp"
#include "mtrank/core/threading.hpp"
#include "onednn/matmul_cache.hpp"
#include "onednn/onednn_common.hpp"

namespace mtrank::kernels {

bool bf16_available() { return cpu_features().avx512_bf16 && active_isa() >= Isa::avx512; }

#if MTRANK_HAVE_AVX512
void f32_to_bf16_avx512bf16(const float* src, std::uint16_t* dst, Index n);  // src/kernels/avx512
#endif

void f32_to_bf16(const float* src, std::uint16_t* dst, Index n) {
#if MTRANK_HAVE_AVX512
  if (bf16_available()) return f32_to_bf16_avx512bf16(src, dst, n);
#endif
  for (Index i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

namespace {
void f32_to_bf16_rows(const float* x, Index ldx, std::uint16_t* xb, Index M, Index K) {
  if (ldx == K) return f32_to_bf16(x, xb, M * K);
  for (Index r = 0; r < M; ++r) f32_to_bf16(x + r * ldx, xb + r * K, K);
}
}  // namespace

struct Bf16Weights::Impl {
  struct Copy {
    dnnl::memory::desc desc;
    dnnl::memory mem;  // owns the converted bytes
  };
  mutable std::shared_mutex mutex;
  const float* src = nullptr;
  Index K = 0, N = 0;
  std::vector<Copy> copies;

  // A handle (shared ownership of the bytes), or an empty one on a miss.
  dnnl::memory find(const float* w, Index k, Index n, const dnnl::memory::desc& d) const {
    if (src != w || K != k || N != n) return {};
    for (const Copy& c : copies)
      if (c.desc == d) return c.mem;
    return {};
  }
};

Bf16Weights::Impl& bf16_impl(Bf16Weights& w) { return *w.impl_; }

Bf16Weights::Bf16Weights() : impl_(std::make_unique<Impl>()) {}
Bf16Weights::~Bf16Weights() = default;
std::size_t Bf16Weights::copies() const {
  std::shared_lock lock(impl_->mutex);
  return impl_->copies.size();
}
void Bf16Weights::invalidate() {
  std::unique_lock lock(impl_->mutex);
  impl_->copies.clear();  // calls running on a copy hold their own handle
}

namespace {
// The bf16 copy of W [N, K] (read as B [K, N] = W^T) in layout `d`, converting on a miss. The
// caller holds the returned handle for the whole matmul.
dnnl::memory weights_for(Bf16Weights::Impl& im, const float* w, Index K, Index N, const dnnl::memory::desc& d) {
  {
    std::shared_lock lock(im.mutex);
    if (dnnl::memory p = im.find(w, K, N, d)) return p;
  }
  std::unique_lock lock(im.mutex);
  if (dnnl::memory p = im.find(w, K, N, d)) return p;
  if (im.src != w || im.K != K || im.N != N) {
    im.copies.clear();
    im.src = w, im.K = K, im.N = N;
  }
  const dnnl::engine& eng = onednn::engine();
  using md = dnnl::memory::desc;
  dnnl::memory src(md({K, N}, dnnl::memory::data_type::f32, dnnl::memory::dims{1, K}), eng, const_cast<float*>(w));
  dnnl::memory dst(d, eng);  // oneDNN-allocated, owned by the copy
  dnnl::reorder(src, dst).execute(onednn::thread_stream(), src, dst);  // f32 -> bf16 (round to nearest even)
  onednn::thread_stream().wait();
  im.copies.push_back({d, dst});
  return dst;
}
}  // namespace

void bf16_linear_fused(Index M, Index K, Index N, const float* x, Index ldx, const float* w, Bf16Weights& wb,
                       const float* b, FusedActivation act, float* y, Index ldy) {
  if (M < 0 || K <= 0 || N <= 0) fail("bf16_linear_fused: expected M >= 0, K > 0, N > 0, got M=", M, " K=", K, " N=", N);
  if (ldx < K || ldy < N) fail("bf16_linear_fused: ldx ", ldx, " < K ", K, " or ldy ", ldy, " < N ", N);
  require(bf16_available(), "bf16_linear_fused: this CPU lacks AVX512_BF16 (or MTRANK_ISA caps below avx512)");
  if (M == 0) return;
  onednn::MatmulKey key{.M = M, .K = K, .N = N, .sa0 = K, .sa1 = 1, .sb0 = 0, .sb1 = 0, .ldc = ldy,
                        .act = static_cast<int>(act), .type = int(onednn::MatmulType::bf16),
                        .bias = b != nullptr, .accumulate = false, .b_any = true, .threads = num_threads()};
  onednn::MatmulEntry& e = onednn::lookup_matmul(key);
  const dnnl::memory wconv = weights_for(bf16_impl(wb), w, K, N, onednn::matmul_b_desc(e));
  thread_local onednn::ScratchBuffer xbuf;
  auto* xb = static_cast<std::uint16_t*>(xbuf.get(sizeof(std::uint16_t) * static_cast<std::size_t>(M * K)));
  f32_to_bf16_rows(x, ldx, xb, M, K);
  onednn::run_matmul(e, xb, wconv.get_data_handle(), b, y);
}

}  // namespace mtrank::kernels
