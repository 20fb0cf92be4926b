#include "mtrank/io/crc32c.hpp"

#include <nmmintrin.h>

#include <array>
#include <cstring>

#include "mtrank/core/cpu.hpp"

namespace mtrank::io {
namespace {

constexpr std::uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

using Tables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr Tables make_tables() {
  Tables t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (kPoly & (0u - (c & 1u)));
    t[0][i] = c;
  }
  for (std::uint32_t i = 0; i < 256; ++i)
    for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  return t;
}
constexpr Tables kTables = make_tables();

// a * b in GF(2)[x] mod P, bit-reflected (bit 31 is x^0). Combines the interleaved streams of the
// SSE4.2 path: a CRC register shifted over n zero bytes is register * x^(8n) mod P.
std::uint32_t gf2_multiply(std::uint32_t a, std::uint32_t b) {
  std::uint32_t p = 0;
  for (int i = 0; i < 32; ++i) {
    if (b & 0x80000000u) p ^= a;  // reflected: bit 31 of b is x^0
    b <<= 1;
    a = (a >> 1) ^ (kPoly & (0u - (a & 1u)));
  }
  return p;
}

// x^(8n) mod P (reflected): multiplying a CRC register by it shifts the register over n zero bytes.
std::uint32_t shift_constant(std::size_t n) {
  std::uint32_t result = 0x80000000u;  // x^0
  std::uint32_t x = 0x40000000u;       // x^1
  std::size_t e = 8 * n;
  while (e) {
    if (e & 1) result = gf2_multiply(result, x);
    x = gf2_multiply(x, x);
    e >>= 1;
  }
  return result;
}

}  // namespace

std::uint32_t crc32c_ref(const void* data, std::size_t size, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t c = ~crc;
  while (size >= 8) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^ kTables[4][lo >> 24] ^
        kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^ kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
    p += 8;
    size -= 8;
  }
  while (size--) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
  return ~c;
}

__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(const void* data, std::size_t size, std::uint32_t crc) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t c0 = ~crc;
  // One crc32 instruction has a latency of 3 cycles and a throughput of 1: three independent
  // streams over consecutive blocks keep the unit busy, and are combined by shifting the first
  // two CRCs over the bytes that follow them.
  constexpr std::size_t kBlock = 4096;  // bytes per stream
  if (size >= 3 * kBlock) {
    static const std::uint32_t k1 = shift_constant(2 * kBlock), k2 = shift_constant(kBlock);
    while (size >= 3 * kBlock) {
      std::uint64_t c1 = 0, c2 = 0;
      for (std::size_t i = 0; i < kBlock; i += 8) {
        std::uint64_t a, b, d;
        std::memcpy(&a, p + i, 8);
        std::memcpy(&b, p + kBlock + i, 8);
        std::memcpy(&d, p + 2 * kBlock + i, 8);
        c0 = _mm_crc32_u64(c0, a);
        c1 = _mm_crc32_u64(c1, b);
        c2 = _mm_crc32_u64(c2, d);
      }
      c0 = gf2_multiply(static_cast<std::uint32_t>(c0), k1) ^ gf2_multiply(static_cast<std::uint32_t>(c1), k2) ^ c2;
      p += 3 * kBlock;
      size -= 3 * kBlock;
    }
  }
  while (size >= 8) {
    std::uint64_t a;
    std::memcpy(&a, p, 8);
    c0 = _mm_crc32_u64(c0, a);
    p += 8;
    size -= 8;
  }
  auto c = static_cast<std::uint32_t>(c0);
  while (size--) c = _mm_crc32_u8(c, *p++);
  return ~c;
}

std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc) {
  static const bool hardware = active_isa() >= Isa::avx2;
  return hardware ? crc32c_sse42(data, size, crc) : crc32c_ref(data, size, crc);
}

}  // namespace mtrank::io
