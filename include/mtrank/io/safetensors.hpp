// safetensors: the tensor file format of Hugging Face (https://github.com/huggingface/safetensors),
// readable and writable from PyTorch (tools/safetensors_torch.py here).
//
// Layout of a file:
//   bytes [0, 8)       N: the header length, unsigned 64-bit little-endian
//   bytes [8, 8 + N)   the header: UTF-8 JSON, an object
//                        { "<tensor name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                          ...,
//                          "__metadata__": {"<key>": "<string value>", ...} }   (optional)
//                      (writers pad it with trailing spaces to a multiple of 8 bytes)
//   bytes [8 + N, EOF) the byte buffer: every tensor's elements, row-major, little-endian;
//                      data_offsets are relative to the start of this buffer.
//
// Everything is validated on parse, and every violation throws mtrank::Error naming the file
// (and the tensor) and the expectation: N beyond the end of the file or above 100 MB; invalid
// JSON or UTF-8; a header that is not an object; duplicate keys; unknown dtypes or fields;
// a shape that is not a list of non-negative integers (rank <= Shape::kMaxRank); data_offsets
// that are not [begin, end] with begin <= end; a byte size != numel * dtype size; tensors that
// overlap, leave holes, or do not cover the byte buffer exactly; metadata that is not an object
// of strings.
//
// Checksums: SafetensorsWriter stores the CRC32C (crc32c.hpp) of every tensor's bytes in the
// metadata key "mtrank.crc32c" (8 hex digits per tensor, comma-separated, in data-offset order).
// Every read of a tensor (read_float, to_float, to_int64, raw_bytes, load_arena) checks the bytes
// it actually read against it, so a torn file, flipped bits, or a file rewritten in place while
// it is being read (a header of one model and the bytes of another) are an Error naming the
// tensor, never a model with mixed weights. Files without the key (written by PyTorch, say) load
// unchecked; checksummed() tells. The key is consumed by the reader: metadata() does not show it,
// and the writer refuses it as a user key. Cost: docs/reliability.md.
//
// A SafetensorsFile either owns the whole file in memory (parse) or keeps the file open and
// reads tensors on demand with pread (load); the latter never holds more than the header plus
// the tensor being converted, so a multi-GB embedding table goes straight into the arena.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/tensor.hpp"

namespace mtrank::io {

/// Element types of the format. All can be parsed; conversions are listed per function.
enum class Dtype : std::uint8_t { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, F8_E4M3, F8_E5M2 };

/// "F32", "BF16", ... (the spelling used in the header).
const char* dtype_name(Dtype d);
/// Bytes per element.
std::size_t dtype_size(Dtype d);
/// Parses a header dtype string; throws mtrank::Error listing the known dtypes otherwise.
Dtype parse_dtype(std::string_view s, std::string_view what);
/// True for F16, BF16, F32, F64 (the dtypes to_float and load_arena accept).
bool is_float_dtype(Dtype d);
/// True for BOOL and the signed and unsigned integer dtypes (the dtypes to_int64 accepts).
bool is_int_dtype(Dtype d);

/// The metadata key holding the per-tensor CRC32C values (see "Checksums" above).
inline constexpr const char* kChecksumMetadataKey = "mtrank.crc32c";

/// Largest accepted header (the reference implementation's limit).
inline constexpr std::uint64_t kMaxSafetensorsHeader = 100'000'000;

struct SafetensorsEntry {
  std::string name;
  Dtype dtype = Dtype::F32;
  Shape shape;
  std::uint64_t begin = 0, end = 0;  // byte range within the data buffer
  bool has_crc32c = false;           // the file carries a checksum for this tensor
  std::uint32_t crc32c = 0;          // CRC32C of its bytes (when has_crc32c)
  std::uint64_t nbytes() const { return end - begin; }
};

class SafetensorsFile {
 public:
  /// Parses an in-memory file; `what` names it in error messages (a path or "<memory>").
  static SafetensorsFile parse(std::string bytes, std::string what = "<memory>");
  /// Opens a file, reads and validates its header, and keeps it open for tensor reads.
  static SafetensorsFile load(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  /// Tensors in the order of their data offsets.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// True when the file carries per-tensor checksums (every read is then verified).
  bool checksummed() const { return checksummed_; }
  /// Reads every tensor once and checks its checksum (no-op without checksums); throws naming
  /// the first tensor whose bytes do not match.
  void verify_checksums() const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  const SafetensorsEntry* find(std::string_view name) const;
  /// Throws "<file>: no tensor named 'x'" when absent.
  const SafetensorsEntry& at(std::string_view name) const;
  /// The name used in error messages.
  const std::string& what() const { return what_; }

  /// A float copy of a F32/F64/F16/BF16 tensor (F64 is rounded to nearest).
  Tensor to_float(std::string_view name) const;
  /// Converts a F32/F64/F16/BF16 tensor into `dst`, which must hold exactly numel floats.
  void read_float(const SafetensorsEntry& e, float* dst, std::size_t count) const;
  /// Integer or BOOL tensor as int64 (U64 values above INT64_MAX are an error).
  std::vector<std::int64_t> to_int64(std::string_view name) const;
  /// The raw little-endian bytes of any tensor.
  std::string raw_bytes(std::string_view name) const;

 private:
  SafetensorsFile() = default;
  void parse_header(std::string_view header, std::uint64_t data_size);
  void read_range(std::uint64_t begin, std::uint64_t size, void* dst) const;
  void check_crc(const SafetensorsEntry& e, std::uint32_t crc) const;

  std::string what_;
  std::vector<SafetensorsEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  bool checksummed_ = false;
  std::string bytes_;          // the whole file (parse) or empty (load)
  std::uint64_t data_start_ = 0;  // offset of the byte buffer within the file
  int fd_ = -1;                // open file (load) or -1
};

/// Collects tensors (non-owning: the data must outlive serialize()/save()) and metadata, and
/// writes a safetensors file with tensors in the order added and a header padded to 8 bytes.
class SafetensorsWriter {
 public:
  /// A float tensor, stored as F32.
  void add(std::string name, TensorView<const float> t);
  void add(std::string name, TensorView<float> t) { add(std::move(name), TensorView<const float>{t.data, t.shape}); }
  /// An int64 tensor, stored as I64.
  void add(std::string name, Shape shape, const std::int64_t* data);
  /// Any dtype from raw little-endian bytes (numel * dtype_size bytes at `data`).
  void add_raw(std::string name, Dtype dtype, Shape shape, const void* data);
  void set_metadata(std::string key, std::string value);

  /// The header (8-byte length + JSON + padding) for the tensors added so far.
  std::string header() const;
  std::string serialize() const;
  /// Atomic write (see atomic_file.hpp), streaming the tensors without building the file in memory.
  void save(const std::filesystem::path& path) const;

 private:
  struct Item {
    std::string name;
    Dtype dtype;
    Shape shape;
    const void* data;
    std::uint64_t nbytes;
  };
  std::vector<Item> items_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

using NamedFloatTensors = std::vector<std::pair<std::string, TensorView<const float>>>;

std::string serialize_safetensors(const NamedFloatTensors& tensors, const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::filesystem::path& path, const NamedFloatTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// How load_arena matches file tensors with arena parameters. A parameter `p` is looked up in
/// the file as join_name(prefix, p.name). "Unexpected" tensors are those under the prefix
/// (all tensors when it is empty) that match no parameter, except names that start with one
/// of `ignore_prefixes`.
struct LoadOptions {
  bool allow_missing = false;     // parameters absent from the file keep their current values
  bool allow_unexpected = false;  // extra tensors in the file are skipped
  std::string prefix = {};
  std::vector<std::string> ignore_prefixes = {};
};

/// Result of load_arena: what was loaded, and what was tolerated under the options.
struct LoadReport {
  std::vector<std::string> loaded, missing, unexpected;
};

/// Copies tensors into the arena (F32, F64, F16 and BF16 are accepted and converted). All
/// names, dtypes and shapes are checked before any parameter is written, so a mismatch leaves
/// the arena untouched ("tensor 'fc.weight': shape [4, 3] in file, [4, 5] in model").
LoadReport load_arena(ParameterArena& arena, const SafetensorsFile& file, const LoadOptions& options = {});

/// Adds every parameter and buffer of the arena to a writer (F32, under join_name(prefix, name)).
void add_arena(SafetensorsWriter& writer, const ParameterArena& arena, std::string_view prefix = "");
/// Writes every parameter and buffer of the arena, plus metadata, atomically.
void save_arena(const std::filesystem::path& path, const ParameterArena& arena,
                const std::map<std::string, std::string>& metadata = {});

}  // namespace mtrank::io
