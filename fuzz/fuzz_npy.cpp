// libFuzzer target: the .npy reader on arbitrary bytes, in memory (io::parse_npy) and from a file
// (io::load_npy). Malformed files must end in mtrank::Error; both entry points must agree; an
// accepted array must survive serialize_npy -> parse_npy bit for bit.
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "fuzz_util.hpp"
#include "mtrank/io/npy.hpp"

namespace {

using mtrank::Tensor;

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         (a.numel() == 0 || std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::optional<Tensor> mem, file;
  try {
    mem.emplace(mtrank::io::parse_npy(bytes, "<fuzz>"));
  } catch (const mtrank::Error&) {
  }
  const auto path = mtrank::fuzz::scratch_dir("npy") / "a.npy";
  mtrank::fuzz::write_bytes(path, bytes);
  try {
    file.emplace(mtrank::io::load_npy(path));
  } catch (const mtrank::Error&) {
  }
  if (mem.has_value() != file.has_value()) __builtin_trap();
  if (!mem) return 0;
  if (!same(*mem, *file)) __builtin_trap();
  Tensor back = mtrank::io::parse_npy(mtrank::io::serialize_npy(*mem), "<round trip>");
  if (!same(*mem, back)) __builtin_trap();
  return 0;
}
