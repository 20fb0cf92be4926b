// NumPy .npy files (format versions 1.0, 2.0 and 3.0) for float tensors, built on xtensor's npy
// support (a private dependency: this header does not include xtensor).
//
// load_npy accepts little-endian float32 ('<f4') and float64 ('<f8', rounded to float), in C
// or Fortran order (Fortran order is transposed to mtrank's row-major layout), rank 0..6.
// The preamble, the header and the data size are checked before any of it is interpreted,
// so truncated or corrupted files throw mtrank::Error naming the path instead of returning
// uninitialised memory. save_npy writes '<f4', C order, atomically (see atomic_file.hpp).
#pragma once
#include <filesystem>

#include "mtrank/core/tensor.hpp"

namespace mtrank::io {

Tensor load_npy(const std::filesystem::path& path);
/// Parses an in-memory .npy file; `what` names it in error messages.
Tensor parse_npy(const std::string& bytes, const std::string& what = "<memory>");

void save_npy(const std::filesystem::path& path, const Tensor& t);
/// The bytes save_npy would write.
std::string serialize_npy(const Tensor& t);

}  // namespace mtrank::io
