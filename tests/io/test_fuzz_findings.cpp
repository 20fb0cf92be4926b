// Regressions for what the libFuzzer targets (fuzz/, scripts/fuzz.sh) found in the file readers:
// each case names the target and the input that failed.
#include <cstdint>
#include <string>

#include "mtrank/core/error.hpp"
#include "mtrank/io/npy.hpp"
#include "testing.hpp"

using namespace mtrank;

namespace {

// A .npy file (format 1.0) with this header dictionary and payload.
std::string npy(std::string dict, const std::string& payload = "") {
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string s = "\x93NUMPY";
  s += '\x01';
  s += '\0';
  s += static_cast<char>(dict.size() & 0xff);
  s += static_cast<char>(dict.size() >> 8);
  return s + dict + payload;
}

}  // namespace

TEST_CASE("fuzz_npy: empty arrays with huge dimensions", "[io][fuzz]") {
  // Fortran order, shape (0, 2^62): the transpose through xtensor computed strides from the huge
  // dimension and offset a null pointer (UBSan). An empty array is copied as it is.
  const Index big = Index{1} << 62;
  Tensor t = io::parse_npy(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 4611686018427387904), }"));
  CHECK(t.numel() == 0);
  CHECK(t.shape() == Shape{0, big});
  Tensor back = io::parse_npy(io::serialize_npy(t));
  CHECK(back.shape() == t.shape());
  // Non-zero dimensions whose product overflows, next to a zero: refused like numpy does ("array
  // is too big"); serialize_npy's strides overflowed on such a shape.
  CHECK_THROWS_AS(io::parse_npy(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 461168601842738790, 461168601), }")),
                  Error);
  CHECK_THROWS_AS(io::parse_npy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4, 0), }")), Error);
  // The largest non-zero product that fits is fine.
  Tensor ok = io::parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 0, 4611686018427387903), }"));
  CHECK(ok.numel() == 0);
}
