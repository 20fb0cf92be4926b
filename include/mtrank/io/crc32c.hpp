// CRC32C (Castagnoli, the polynomial of iSCSI, ext4 and Kafka), the checksum mtrank writes into
// checkpoints for every tensor (safetensors.hpp, "Checksums").
//
// Streaming: crc32c(b, crc32c(a)) == crc32c(a || b). The value is the standard one (initial
// value and final xor 0xFFFFFFFF): crc32c("123456789") == 0xE3069283.
//
// crc32c() uses the SSE4.2 crc32 instruction (three interleaved streams) when the active ISA is
// avx2 or better (every such CPU has SSE4.2) and the table-driven crc32c_ref otherwise
// (MTRANK_ISA=ref). docs/reliability.md gives the cost per GB.
#pragma once
#include <cstddef>
#include <cstdint>

namespace mtrank::io {

/// CRC32C of `size` bytes, continuing from `crc` (0 to start).
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);
/// The portable reference (slicing-by-8 tables): the same values as crc32c().
std::uint32_t crc32c_ref(const void* data, std::size_t size, std::uint32_t crc = 0);
/// The SSE4.2 variant; only call it where the CPU has SSE4.2 (crc32c() checks).
std::uint32_t crc32c_sse42(const void* data, std::size_t size, std::uint32_t crc = 0);

}  // namespace mtrank::io
