// Scalar reference of the packed-weight linear kernels (meaning: include/mtrank/kernels/
// packed_linear.hpp): the same packed layouts (16-column panels), read one element at a time, f32
// sums over k in increasing order. The bf16 block follows vdpbf16ps: per k pair, the odd product
// is added before the even one, each rounded to f32 (products of two bf16 values are exact in f32).
#include <cstdint>
#include <cstring>

#include "mtrank/kernels/packed_linear.hpp"

namespace mtrank::kernels {
namespace {

constexpr Index kPanel = 16;

float bf16_value(std::uint16_t h) {
  const std::uint32_t u = std::uint32_t(h) << 16;
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}

void f32_packed_block_ref(const PackedBlockArgs& a) {
  const auto* w = static_cast<const float*>(a.w);
  const Index n_end = a.p1 * kPanel < a.N ? a.p1 * kPanel : a.N;
  for (Index m = 0; m < a.M; ++m)
    for (Index n = a.p0 * kPanel; n < n_end; ++n) {
      const float* wp = w + (n / kPanel) * a.K * kPanel + n % kPanel;
      float acc = a.b ? a.b[n] : 0.0f;
      for (Index k = 0; k < a.K; ++k) acc += a.x[m * a.ldx + k] * wp[k * kPanel];
      a.y[m * a.ldy + n] = a.relu && !(acc > 0.0f) ? 0.0f : acc;
    }
}

// GCC 12 at -O3 vectorises the two in-order additions per pair below into a wrong result (seen
// with K = 7: one product counted twice); the reference must stay a plain scalar loop.
__attribute__((optimize("no-tree-vectorize"))) void bf16_packed_block_ref(const PackedBlockArgs& a) {
  const auto* w = static_cast<const std::uint16_t*>(a.w);
  const Index KP = (a.K + 1) / 2;
  const Index n_end = a.p1 * kPanel < a.N ? a.p1 * kPanel : a.N;
  for (Index m = 0; m < a.M; ++m)
    for (Index n = a.p0 * kPanel; n < n_end; ++n) {
      const std::uint16_t* wp = w + (n / kPanel) * KP * 2 * kPanel + (n % kPanel) * 2;
      const std::uint16_t* xr = a.xb + m * a.ldxb;
      float acc = a.b ? a.b[n] : 0.0f;
      for (Index kk = 0; kk < KP; ++kk) {
        acc += bf16_value(xr[2 * kk + 1]) * bf16_value(wp[kk * 2 * kPanel + 1]);
        acc += bf16_value(xr[2 * kk]) * bf16_value(wp[kk * 2 * kPanel]);
      }
      a.y[m * a.ldy + n] = a.relu && !(acc > 0.0f) ? 0.0f : acc;
    }
}

void int8_packed_block_ref(const PackedBlockArgs& a) {
  const auto* q = static_cast<const signed char*>(a.w);
  const Index n_end = a.p1 * kPanel < a.N ? a.p1 * kPanel : a.N;
  for (Index m = 0; m < a.M; ++m)
    for (Index n = a.p0 * kPanel; n < n_end; ++n) {
      const signed char* qp = q + (n / kPanel) * a.K * kPanel + n % kPanel;
      float acc = 0.0f;
      for (Index k = 0; k < a.K; ++k) acc += a.x[m * a.ldx + k] * float(qp[k * kPanel]);
      acc = acc * a.scale[n] + (a.b ? a.b[n] : 0.0f);
      a.y[m * a.ldy + n] = a.relu && !(acc > 0.0f) ? 0.0f : acc;
    }
}

}  // namespace

extern const PackedLinearKernels kPackedLinearRef;
const PackedLinearKernels kPackedLinearRef = {"ref", kPanel, f32_packed_block_ref, bf16_packed_block_ref,
                                           int8_packed_block_ref};

}  // namespace mtrank::kernels
