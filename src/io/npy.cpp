// .npy via xtensor. xt::load_npy itself is not called on untrusted bytes: in xtensor 0.24 it
// reads the 1.0 header length through signed chars (lengths with a byte >= 0x80 are misread),
// allocates whatever the header's shape asks for, never checks that the data was actually
// read (a truncated file yields uninitialised memory), and its header parser indexes empty
// strings on some malformed headers. So this file validates the preamble, the header shape
// and the data size itself, hands the header dictionary to xtensor's parser only once it is
// known to be well-formed enough for it, and uses xt::adapt for the Fortran-order transpose.
#include "mtrank/io/npy.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xnpy.hpp>

#include "mtrank/core/error.hpp"
#include "mtrank/io/atomic_file.hpp"

namespace mtrank::io {
namespace {

template <class T>
void copy_elements(const char* src, std::size_t n, const std::vector<std::size_t>& shape, bool fortran, float* dst) {
  std::vector<T> tmp(n);  // aligned copy: the file's data offset need not be a multiple of sizeof(T)
  if (n) std::memcpy(tmp.data(), src, n * sizeof(T));
  if (!fortran || shape.size() < 2 || n == 0) {  // (xtensor's strides of an empty array with huge dimensions overflow)
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(tmp[i]);
    return;
  }
  auto a = xt::adapt<xt::layout_type::column_major>(tmp.data(), n, xt::no_ownership(), shape);
  // Iteration follows the default (row-major) traversal whatever the storage order.
  std::size_t i = 0;
  for (auto it = a.template begin<xt::layout_type::row_major>(); it != a.template end<xt::layout_type::row_major>(); ++it)
    dst[i++] = static_cast<float>(*it);
}

}  // namespace

Tensor parse_npy(const std::string& bytes, const std::string& what) {
  static constexpr char kMagic[] = "\x93NUMPY";
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 6) != 0)
    fail(what, ": not a .npy file (expected the magic string \\x93NUMPY)");
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  const unsigned major = u[6], minor = u[7];
  if ((major < 1 || major > 3) || minor != 0)
    fail(what, ": unsupported .npy format version ", major, ".", minor, " (expected 1.0, 2.0 or 3.0)");
  std::size_t len_bytes = major == 1 ? 2 : 4;
  if (bytes.size() < 8 + len_bytes) fail(what, ": .npy file truncated in the header length");
  std::uint64_t hlen = 0;
  for (std::size_t i = len_bytes; i-- > 0;) hlen = (hlen << 8) | u[8 + i];
  const std::uint64_t data_start = 8 + len_bytes + hlen;
  if (data_start > bytes.size())
    fail(what, ": .npy header length ", hlen, " runs past the end of the file (", bytes.size(), " bytes)");
  std::string header = bytes.substr(8 + len_bytes, static_cast<std::size_t>(hlen));

  // Shape checks that keep xtensor's parser on well-defined paths.
  std::string stripped;
  for (char c : header)
    if (c != ' ' && c != '\n') stripped += c;
  const auto shape_key = stripped.find("'shape'");
  if (header.empty() || header.back() != '\n' || stripped.size() < 2 || stripped.front() != '{' ||
      stripped.back() != '}' || shape_key == std::string::npos || stripped.compare(shape_key, 9, "'shape':(") != 0)
    fail(what, ": malformed .npy header (expected {'descr': ..., 'fortran_order': ..., 'shape': (...), } ending in a newline)");

  std::string descr;
  bool fortran = false;
  std::vector<std::size_t> shape;
  try {
    xt::detail::parse_header(header, descr, &fortran, shape);
  } catch (const std::exception& e) {
    fail(what, ": malformed .npy header: ", e.what());
  }
  const bool f32 = descr == "<f4", f64 = descr == "<f8";
  if (!f32 && !f64) fail(what, ": .npy dtype '", descr, "' is not supported (expected '<f4' float32 or '<f8' float64)");
  if (shape.size() > static_cast<std::size_t>(Shape::kMaxRank))
    fail(what, ": .npy array of rank ", shape.size(), " exceeds the supported maximum of ", Shape::kMaxRank);
  std::uint64_t n = 1, nbytes = 0, nonzero = 1;
  bool overflow = false;
  for (std::size_t d : shape) {
    overflow = overflow || d > static_cast<std::size_t>(std::numeric_limits<Index>::max()) || __builtin_mul_overflow(n, d, &n);
    // As numpy: the non-zero dimensions of an empty array must not overflow either (strides).
    if (d) overflow = overflow || __builtin_mul_overflow(nonzero, d, &nonzero) ||
                      nonzero > static_cast<std::uint64_t>(std::numeric_limits<Index>::max());
  }
  const std::size_t es = f32 ? 4 : 8;
  overflow = overflow || __builtin_mul_overflow(n, es, &nbytes);
  const std::uint64_t have = bytes.size() - data_start;
  if (overflow || nbytes != have)
    fail(what, ": .npy data holds ", have, " bytes, but shape (", [&] {
      std::string s;
      for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
      return s;
    }(), ") of ", descr, " needs ", overflow ? std::string("more than 2^64") : std::to_string(nbytes));

  Shape s;
  for (std::size_t d : shape) s.push_back(static_cast<Index>(d));
  Tensor t(s);
  const char* src = bytes.data() + data_start;
  if (f32) copy_elements<float>(src, n, shape, fortran, t.data());
  else copy_elements<double>(src, n, shape, fortran, t.data());
  return t;
}

Tensor load_npy(const std::filesystem::path& path) { return parse_npy(read_file(path), path.string()); }

std::string serialize_npy(const Tensor& t) {
  std::vector<std::size_t> shape(t.shape().begin(), t.shape().end());
  const std::size_t n = static_cast<std::size_t>(t.numel());
  try {
    auto a = xt::adapt(t.data(), n, xt::no_ownership(), shape);
    return xt::dump_npy(a);
  } catch (const std::exception& e) {
    fail("save_npy: cannot encode tensor of shape ", t.shape().str(), ": ", e.what());
  }
}

void save_npy(const std::filesystem::path& path, const Tensor& t) { write_file_atomic(path, serialize_npy(t)); }

}  // namespace mtrank::io
