// CRC32C: the standard check values, and the SSE4.2 variant equal to the table reference on many
// lengths (0, 1, odd, tails, around the three-stream block of 3 x 4096 bytes) and offsets.
#include <vector>

#include "mtrank/core/cpu.hpp"
#include "mtrank/core/rng.hpp"
#include "mtrank/io/crc32c.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::io;

TEST_CASE("crc32c: check values of the standard (RFC 3720 / iSCSI)", "[io][crc32c]") {
  CHECK(crc32c_ref("123456789", 9) == 0xE3069283u);
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  CHECK(crc32c_ref("", 0) == 0u);
  // RFC 3720 B.4: 32 bytes of zeros, 32 bytes of 0xff, 0x00..0x1f.
  std::vector<unsigned char> zeros(32, 0), ones(32, 0xff), inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = static_cast<unsigned char>(i);
  CHECK(crc32c_ref(zeros.data(), 32) == 0x8A9136AAu);
  CHECK(crc32c_ref(ones.data(), 32) == 0x62A8AB43u);
  CHECK(crc32c_ref(inc.data(), 32) == 0x46DD794Eu);
}

TEST_CASE("crc32c: the SSE4.2 variant equals the reference on every length and offset, and streams", "[io][crc32c]") {
  if (detected_isa() < Isa::avx2) {
    WARN("no SSE4.2 path on this CPU (the reference is used)");
    return;
  }
  Rng rng(7);
  std::vector<unsigned char> v(3 * 3 * 4096 + 4096);
  for (auto& b : v) b = static_cast<unsigned char>(rng.next_u64());
  for (std::size_t n : {0, 1, 2, 7, 8, 9, 15, 63, 64, 65, 4095, 4096, 4097, 12287, 12288, 12289, 24575, 24576, 24583, 36864, 40959}) {
    for (std::size_t off : {0, 1, 3, 8}) {
      if (off + n > v.size()) continue;
      INFO("length " << n << " offset " << off);
      CHECK(crc32c_sse42(v.data() + off, n) == crc32c_ref(v.data() + off, n));
      CHECK(crc32c_sse42(v.data() + off, n, 0xDEADBEEFu) == crc32c_ref(v.data() + off, n, 0xDEADBEEFu));
    }
  }
  // crc(a || b) == crc(b, crc(a)) on both variants, split anywhere.
  for (std::size_t cut : {0, 1, 13, 4096, 12288, 20000}) {
    CHECK(crc32c_sse42(v.data() + cut, v.size() - cut, crc32c_sse42(v.data(), cut)) == crc32c_ref(v.data(), v.size()));
    CHECK(crc32c_ref(v.data() + cut, v.size() - cut, crc32c_ref(v.data(), cut)) == crc32c_ref(v.data(), v.size()));
  }
}
