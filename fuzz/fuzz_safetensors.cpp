// libFuzzer target: the safetensors reader on arbitrary bytes. Every malformed file must end in
// mtrank::Error; accepted files must convert every float tensor without faults.
#include <cstdint>
#include <string>

#include "mtrank/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    auto f = mtrank::io::SafetensorsFile::parse(std::string(reinterpret_cast<const char*>(data), size), "<fuzz>");
    for (const auto& e : f.entries()) {
      if (e.shape.numel() > (1 << 20)) continue;
      if (mtrank::io::is_float_dtype(e.dtype)) (void)f.to_float(e.name);
      else if (mtrank::io::is_int_dtype(e.dtype)) (void)f.to_int64(e.name);
      else (void)f.raw_bytes(e.name);
    }
  } catch (const mtrank::Error&) {
  }
  return 0;
}
