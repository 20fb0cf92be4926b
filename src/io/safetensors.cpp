#include "mtrank/io/safetensors.hpp"

#include "mtrank/io/json_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "mtrank/core/error.hpp"
#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/crc32c.hpp"

static_assert(std::endian::native == std::endian::little,
              "mtrank's safetensors reader copies little-endian bytes directly into native floats");

namespace mtrank::io {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  Dtype dtype;
  const char* name;
  std::size_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {Dtype::BOOL, "BOOL", 1},  {Dtype::U8, "U8", 1},     {Dtype::I8, "I8", 1},
    {Dtype::I16, "I16", 2},    {Dtype::U16, "U16", 2},   {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2},  {Dtype::I32, "I32", 4},   {Dtype::U32, "U32", 4},
    {Dtype::F32, "F32", 4},    {Dtype::F64, "F64", 8},   {Dtype::I64, "I64", 8},
    {Dtype::U64, "U64", 8},    {Dtype::F8_E4M3, "F8_E4M3", 1}, {Dtype::F8_E5M2, "F8_E5M2", 1},
};

std::uint64_t read_le64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// a * b, or false on overflow.
bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) { return !__builtin_mul_overflow(a, b, &out); }

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h >> 15) << 31;
  const std::uint32_t exp = (h >> 10) & 0x1f;
  const std::uint32_t mant = h & 0x3ff;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: mant * 2^-24
      const float v = std::ldexp(static_cast<float>(mant), -24);
      return sign ? -v : v;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  return std::bit_cast<float>(bits);
}

float bf16_to_float(std::uint16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

std::string errno_text() { return std::strerror(errno); }

// Checks the 8-byte prefix and returns the header length.
std::uint64_t check_prefix(const unsigned char* first8, std::uint64_t file_size, const std::string& what) {
  const std::uint64_t n = read_le64(first8);
  if (n > kMaxSafetensorsHeader)
    fail(what, ": safetensors header length ", n, " exceeds the limit of ", kMaxSafetensorsHeader, " bytes");
  if (n > file_size - 8)
    fail(what, ": safetensors header length ", n, " runs past the end of the file (", file_size, " bytes)");
  if (n < 2) fail(what, ": safetensors header length ", n, " is too short for a JSON object");
  return n;
}

}  // namespace

const char* dtype_name(Dtype d) {
  for (auto& i : kDtypes)
    if (i.dtype == d) return i.name;
  return "?";
}

std::size_t dtype_size(Dtype d) {
  for (auto& i : kDtypes)
    if (i.dtype == d) return i.size;
  return 0;
}

Dtype parse_dtype(std::string_view s, std::string_view what) {
  for (auto& i : kDtypes)
    if (s == i.name) return i.dtype;
  std::string list;
  for (auto& i : kDtypes) list += (list.empty() ? "" : ", ") + std::string(i.name);
  fail(what, ": unknown dtype \"", s, "\" (expected one of: ", list, ")");
}

bool is_float_dtype(Dtype d) { return d == Dtype::F16 || d == Dtype::BF16 || d == Dtype::F32 || d == Dtype::F64; }

bool is_int_dtype(Dtype d) {
  switch (d) {
    case Dtype::BOOL: case Dtype::U8: case Dtype::I8: case Dtype::I16: case Dtype::U16:
    case Dtype::I32: case Dtype::U32: case Dtype::I64: case Dtype::U64:
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------- reading

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : what_(std::move(o.what_)),
      entries_(std::move(o.entries_)),
      index_(std::move(o.index_)),
      metadata_(std::move(o.metadata_)),
      checksummed_(o.checksummed_),
      bytes_(std::move(o.bytes_)),
      data_start_(o.data_start_),
      fd_(o.fd_) {
  o.fd_ = -1;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    what_ = std::move(o.what_);
    entries_ = std::move(o.entries_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
    checksummed_ = o.checksummed_;
    bytes_ = std::move(o.bytes_);
    data_start_ = o.data_start_;
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

SafetensorsFile SafetensorsFile::parse(std::string bytes, std::string what) {
  SafetensorsFile f;
  f.what_ = std::move(what);
  if (bytes.size() < 8)
    fail(f.what_, ": ", bytes.size(), " bytes is too short for a safetensors file (expected an 8-byte header length)");
  const std::uint64_t n = check_prefix(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), f.what_);
  f.parse_header(std::string_view(bytes).substr(8, static_cast<std::size_t>(n)), bytes.size() - 8 - n);
  f.data_start_ = 8 + n;
  f.bytes_ = std::move(bytes);
  return f;
}

SafetensorsFile SafetensorsFile::load(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.what_ = path.string();
  do f.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  while (f.fd_ < 0 && errno == EINTR);
  if (f.fd_ < 0) fail("cannot open '", f.what_, "' for reading: ", errno_text());
  struct stat st {};
  if (::fstat(f.fd_, &st) != 0) fail("cannot stat '", f.what_, "': ", errno_text());
  if (!S_ISREG(st.st_mode)) fail("'", f.what_, "': not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < 8) fail(f.what_, ": ", size, " bytes is too short for a safetensors file (expected an 8-byte header length)");
  unsigned char first8[8];
  f.read_range(0, 8, first8);  // data_start_ is 0 here: file offsets
  const std::uint64_t n = check_prefix(first8, size, f.what_);
  std::string header(static_cast<std::size_t>(n), '\0');
  f.read_range(8, n, header.data());
  f.parse_header(header, size - 8 - n);
  f.data_start_ = 8 + n;
  return f;
}

void SafetensorsFile::parse_header(std::string_view header, std::uint64_t data_size) {
  // Duplicate keys are legal JSON that nlohmann would silently collapse, and the format needs
  // object > object > array at most: one linear SAX pass checks both, then a plain DOM parse.
  if (std::string why = check_json_structure(header, 2, true); !why.empty()) {
    if (why.rfind("JSON nested", 0) == 0) fail(what_, ": safetensors header nests deeper than the format allows");
    if (why.rfind("duplicate key", 0) == 0) fail(what_, ": safetensors header has ", why);
    fail(what_, ": safetensors header is not valid JSON: ", why);
  }
  json j;
  try {
    j = json::parse(header.begin(), header.end());
  } catch (const json::parse_error& e) {
    fail(what_, ": safetensors header is not valid JSON (byte ", e.byte, "): ", e.what());
  } catch (const json::exception& e) {
    fail(what_, ": safetensors header is not valid JSON: ", e.what());
  }
  if (!j.is_object()) fail(what_, ": safetensors header must be a JSON object, got ", j.type_name());

  entries_.clear();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(what_, ": __metadata__ must be an object of strings, got ", v.type_name());
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m->is_string())
          fail(what_, ": __metadata__.", m.key(), ": expected a string value, got ", m->type_name());
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string w = what_ + ": tensor '" + name + "'";
    if (!v.is_object()) fail(w, ": expected an object with dtype, shape and data_offsets, got ", v.type_name());
    for (auto k = v.begin(); k != v.end(); ++k)
      if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
        fail(w, ": unknown field \"", k.key(), "\" (expected dtype, shape, data_offsets)");
    SafetensorsEntry e;
    e.name = name;

    auto dt = v.find("dtype");
    if (dt == v.end() || !dt->is_string()) fail(w, ": dtype: expected a string");
    e.dtype = parse_dtype(dt->get_ref<const std::string&>(), w);

    auto sh = v.find("shape");
    if (sh == v.end() || !sh->is_array()) fail(w, ": shape: expected a list of non-negative integers");
    if (sh->size() > static_cast<std::size_t>(Shape::kMaxRank))
      fail(w, ": shape: rank ", sh->size(), " exceeds the supported maximum of ", Shape::kMaxRank);
    std::uint64_t numel = 1;
    bool overflow = false;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned())
        fail(w, ": shape: expected a list of non-negative integers, got ", sh->dump());
      const std::uint64_t dim = d.get<std::uint64_t>();
      if (dim > static_cast<std::uint64_t>(std::numeric_limits<Index>::max())) overflow = true;
      else e.shape.push_back(static_cast<Index>(dim));
      overflow = overflow || !checked_mul(numel, dim, numel);
    }

    auto off = v.find("data_offsets");
    if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      fail(w, ": data_offsets: expected [begin, end] with non-negative integers, got ",
           off == v.end() ? std::string("nothing") : off->dump());
    e.begin = (*off)[0].get<std::uint64_t>();
    e.end = (*off)[1].get<std::uint64_t>();
    if (e.end < e.begin) fail(w, ": data_offsets [", e.begin, ", ", e.end, "]: end < begin");
    if (e.end > data_size)
      fail(w, ": data_offsets [", e.begin, ", ", e.end, "] run past the end of the byte buffer (", data_size, " bytes)");
    std::uint64_t expected = 0;
    if (overflow || !checked_mul(numel, dtype_size(e.dtype), expected) || expected != e.nbytes())
      fail(w, ": data_offsets [", e.begin, ", ", e.end, "] hold ", e.nbytes(), " bytes, but shape ", sh->dump(), " of ",
           dtype_name(e.dtype), " needs ", overflow ? std::string("more than 2^64") : std::to_string(expected));
    entries_.push_back(std::move(e));
  }

  // The tensors must tile the byte buffer exactly: no overlaps, no holes, nothing left over.
  std::stable_sort(entries_.begin(), entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t pos = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const auto& e : entries_) {
    if (e.begin < pos)
      fail(what_, ": tensor '", e.name, "' (bytes [", e.begin, ", ", e.end, ")) overlaps tensor '", prev->name,
           "' (bytes [", prev->begin, ", ", prev->end, "))");
    if (e.begin > pos)
      fail(what_, ": hole in the byte buffer: bytes [", pos, ", ", e.begin, ") before tensor '", e.name,
           "' belong to no tensor");
    pos = e.end;
    prev = &e;
  }
  if (pos != data_size)
    fail(what_, ": the byte buffer has ", data_size, " bytes but the tensors cover only ", pos);

  // Per-tensor checksums, in the same (data-offset) order as entries_.
  if (auto it = metadata_.find(kChecksumMetadataKey); it != metadata_.end()) {
    const std::string& v = it->second;
    const std::string expect = std::string(": __metadata__.") + kChecksumMetadataKey + ": expected " +
                               std::to_string(entries_.size()) + " comma-separated 8-digit hex CRC32C values (one per tensor)";
    if (v.size() != (entries_.empty() ? 0 : 9 * entries_.size() - 1)) fail(what_, expect);
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      std::uint32_t c = 0;
      for (std::size_t k = 0; k < 8; ++k) {
        const char ch = v[9 * i + k];
        const int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) fail(what_, expect, ", got '", ch, "' at character ", 9 * i + k);
        c = (c << 4) | static_cast<std::uint32_t>(d);
      }
      if (i + 1 < entries_.size() && v[9 * i + 8] != ',') fail(what_, expect, ", got '", v[9 * i + 8], "' at character ", 9 * i + 8);
      entries_[i].has_crc32c = true;
      entries_[i].crc32c = c;
    }
    metadata_.erase(it);
    checksummed_ = true;
  }
  index_.clear();
  for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].name, i);
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const SafetensorsEntry& SafetensorsFile::at(std::string_view name) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail(what_, ": no tensor named '", name, "'");
  return *e;
}

void SafetensorsFile::read_range(std::uint64_t begin, std::uint64_t size, void* dst) const {
  const std::uint64_t off = data_start_ + begin;
  if (fd_ < 0) {
    if (size) std::memcpy(dst, bytes_.data() + off, static_cast<std::size_t>(size));
    return;
  }
  auto* p = static_cast<char*>(dst);
  while (size > 0) {
    const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(size, std::uint64_t(1) << 30));
    ssize_t n = ::pread(fd_, p, chunk, static_cast<off_t>(off + (p - static_cast<char*>(dst))));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot read '", what_, "': ", errno_text());
    }
    if (n == 0) fail("cannot read '", what_, "': file is shorter than its header says (truncated while open?)");
    p += n;
    size -= static_cast<std::uint64_t>(n);
  }
}

void SafetensorsFile::check_crc(const SafetensorsEntry& e, std::uint32_t crc) const {
  if (e.has_crc32c && crc != e.crc32c) {
    char got[9], want[9];
    std::snprintf(got, sizeof got, "%08x", crc);
    std::snprintf(want, sizeof want, "%08x", e.crc32c);
    fail(what_, ": tensor '", e.name, "': checksum mismatch (CRC32C of the bytes read is ", got, ", the header says ", want,
         "): the file is corrupt, or it was rewritten in place while being read");
  }
}

void SafetensorsFile::verify_checksums() const {
  if (!checksummed_) return;
  std::vector<char> buf(std::size_t(1) << 20);
  for (const auto& e : entries_) {
    std::uint32_t crc = 0;
    for (std::uint64_t off = 0; off < e.nbytes(); off += buf.size()) {
      const auto m = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), e.nbytes() - off));
      read_range(e.begin + off, m, buf.data());
      crc = crc32c(buf.data(), m, crc);
    }
    check_crc(e, crc);
  }
}

void SafetensorsFile::read_float(const SafetensorsEntry& e, float* dst, std::size_t count) const {
  const std::string w = what_ + ": tensor '" + e.name + "'";
  if (!is_float_dtype(e.dtype))
    fail(w, ": dtype ", dtype_name(e.dtype), " cannot be read as float (expected F32, F64, F16 or BF16)");
  const std::size_t n = static_cast<std::size_t>(e.shape.numel());
  if (count != n) fail(w, ": destination holds ", count, " floats, tensor has ", n);
  if (e.dtype == Dtype::F32) {
    read_range(e.begin, e.nbytes(), dst);
    if (e.has_crc32c) check_crc(e, crc32c(dst, static_cast<std::size_t>(e.nbytes())));
    return;
  }
  const std::size_t es = dtype_size(e.dtype);
  constexpr std::size_t kChunk = 1 << 13;
  alignas(64) unsigned char buf[kChunk * 8];
  std::uint32_t crc = 0;
  for (std::size_t i = 0; i < n; i += kChunk) {
    const std::size_t m = std::min(kChunk, n - i);
    read_range(e.begin + i * es, m * es, buf);
    if (e.has_crc32c) crc = crc32c(buf, m * es, crc);
    for (std::size_t k = 0; k < m; ++k) {
      const unsigned char* s = buf + k * es;
      switch (e.dtype) {
        case Dtype::F64: {
          double d;
          std::memcpy(&d, s, 8);
          dst[i + k] = static_cast<float>(d);
          break;
        }
        case Dtype::F16: {
          std::uint16_t h;
          std::memcpy(&h, s, 2);
          dst[i + k] = half_to_float(h);
          break;
        }
        default: {  // BF16
          std::uint16_t h;
          std::memcpy(&h, s, 2);
          dst[i + k] = bf16_to_float(h);
          break;
        }
      }
    }
  }
  check_crc(e, crc);
}

Tensor SafetensorsFile::to_float(std::string_view name) const {
  const SafetensorsEntry& e = at(name);
  if (!is_float_dtype(e.dtype))
    fail(what_, ": tensor '", e.name, "': dtype ", dtype_name(e.dtype), " cannot be read as float (expected F32, F64, F16 or BF16)");
  Tensor t(e.shape);
  read_float(e, t.data(), static_cast<std::size_t>(t.numel()));
  return t;
}

std::vector<std::int64_t> SafetensorsFile::to_int64(std::string_view name) const {
  const SafetensorsEntry& e = at(name);
  const std::string w = what_ + ": tensor '" + e.name + "'";
  if (!is_int_dtype(e.dtype))
    fail(w, ": dtype ", dtype_name(e.dtype), " cannot be read as int64 (expected BOOL, U8, I8, I16, U16, I32, U32, I64 or U64)");
  const std::size_t n = static_cast<std::size_t>(e.shape.numel());
  const std::size_t es = dtype_size(e.dtype);
  std::string raw(static_cast<std::size_t>(e.nbytes()), '\0');
  read_range(e.begin, e.nbytes(), raw.data());
  if (e.has_crc32c) check_crc(e, crc32c(raw.data(), raw.size()));
  std::vector<std::int64_t> out(n);
  const char* s = raw.data();
  for (std::size_t i = 0; i < n; ++i, s += es) {
    switch (e.dtype) {
      case Dtype::BOOL: out[i] = *s != 0; break;
      case Dtype::U8: out[i] = static_cast<unsigned char>(*s); break;
      case Dtype::I8: out[i] = static_cast<signed char>(*s); break;
      case Dtype::I16: { std::int16_t v; std::memcpy(&v, s, 2); out[i] = v; break; }
      case Dtype::U16: { std::uint16_t v; std::memcpy(&v, s, 2); out[i] = v; break; }
      case Dtype::I32: { std::int32_t v; std::memcpy(&v, s, 4); out[i] = v; break; }
      case Dtype::U32: { std::uint32_t v; std::memcpy(&v, s, 4); out[i] = v; break; }
      case Dtype::I64: { std::int64_t v; std::memcpy(&v, s, 8); out[i] = v; break; }
      default: {  // U64
        std::uint64_t v;
        std::memcpy(&v, s, 8);
        if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          fail(w, ": U64 value ", v, " at index ", i, " does not fit in int64");
        out[i] = static_cast<std::int64_t>(v);
      }
    }
  }
  return out;
}

std::string SafetensorsFile::raw_bytes(std::string_view name) const {
  const SafetensorsEntry& e = at(name);
  std::string raw(static_cast<std::size_t>(e.nbytes()), '\0');
  read_range(e.begin, e.nbytes(), raw.data());
  if (e.has_crc32c) check_crc(e, crc32c(raw.data(), raw.size()));
  return raw;
}

// ---------------------------------------------------------------- writing

void SafetensorsWriter::add_raw(std::string name, Dtype dtype, Shape shape, const void* data) {
  require(!name.empty(), "safetensors writer: empty tensor name");
  require(name != "__metadata__", "safetensors writer: '__metadata__' is reserved and cannot name a tensor");
  require(!index_.count(name), "safetensors writer: duplicate tensor name '", name, "'");
  std::uint64_t nbytes = 0;
  require(checked_mul(static_cast<std::uint64_t>(shape.numel()), dtype_size(dtype), nbytes),
          "safetensors writer: tensor '", name, "': byte size overflows");
  require(nbytes == 0 || data != nullptr, "safetensors writer: tensor '", name, "': null data");
  index_.emplace(name, items_.size());
  items_.push_back({std::move(name), dtype, shape, data, nbytes});
}

void SafetensorsWriter::add(std::string name, TensorView<const float> t) {
  add_raw(std::move(name), Dtype::F32, t.shape, t.data);
}

void SafetensorsWriter::add(std::string name, Shape shape, const std::int64_t* data) {
  add_raw(std::move(name), Dtype::I64, shape, data);
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  require(key != kChecksumMetadataKey, "safetensors writer: metadata key '", key, "' is reserved (the writer stores the checksums there)");
  metadata_[std::move(key)] = std::move(value);
}

std::string SafetensorsWriter::header() const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  std::string checksums;
  checksums.reserve(9 * items_.size());
  for (const Item& it : items_) {
    char hex[10];
    std::snprintf(hex, sizeof hex, checksums.empty() ? "%08x" : ",%08x", crc32c(it.data, static_cast<std::size_t>(it.nbytes)));
    checksums += hex;
  }
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (auto& [k, v] : metadata_) m[k] = v;
  if (!items_.empty()) m[kChecksumMetadataKey] = checksums;
  if (!m.empty()) h["__metadata__"] = std::move(m);
  std::uint64_t pos = 0;
  for (const Item& it : items_) {
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (Index d : it.shape) shape.push_back(d);
    h[it.name] = {{"dtype", dtype_name(it.dtype)}, {"shape", std::move(shape)}, {"data_offsets", {pos, pos + it.nbytes}}};
    pos += it.nbytes;
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("safetensors writer: a tensor name or metadata string is not valid UTF-8: ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + text;
}

std::string SafetensorsWriter::serialize() const {
  std::string out = header();
  for (const Item& it : items_) out.append(static_cast<const char*>(it.data), static_cast<std::size_t>(it.nbytes));
  return out;
}

void SafetensorsWriter::save(const std::filesystem::path& path) const {
  const std::string h = header();
  AtomicFileWriter w(path);
  w.write(h);
  for (const Item& it : items_) w.write(it.data, static_cast<std::size_t>(it.nbytes));
  w.commit();
}

std::string serialize_safetensors(const NamedFloatTensors& tensors, const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w;
  for (auto& [name, t] : tensors) w.add(name, t);
  for (auto& [k, v] : metadata) w.set_metadata(k, v);
  return w.serialize();
}

void save_safetensors(const std::filesystem::path& path, const NamedFloatTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w;
  for (auto& [name, t] : tensors) w.add(name, t);
  for (auto& [k, v] : metadata) w.set_metadata(k, v);
  w.save(path);
}

// ---------------------------------------------------------------- arena

namespace {
std::string name_list(const std::vector<std::string>& names) {
  std::string s;
  const std::size_t shown = std::min<std::size_t>(names.size(), 8);
  for (std::size_t i = 0; i < shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > shown) s += " (and " + std::to_string(names.size() - shown) + " more)";
  return s;
}
bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
}  // namespace

LoadReport load_arena(ParameterArena& arena, const SafetensorsFile& file, const LoadOptions& options) {
  LoadReport report;
  std::vector<std::pair<Parameter<float>*, const SafetensorsEntry*>> plan;
  std::set<std::string_view> used;
  for (auto& p : arena.parameters()) {
    const std::string fname = join_name(options.prefix, p.name);
    const SafetensorsEntry* e = file.find(fname);
    if (!e) {
      report.missing.push_back(fname);
      continue;
    }
    if (!is_float_dtype(e->dtype))
      fail(file.what(), ": tensor '", fname, "': dtype ", dtype_name(e->dtype),
           " in file, expected a float dtype (F32, F64, F16 or BF16)");
    if (!(e->shape == p.shape))
      fail(file.what(), ": tensor '", fname, "': shape ", e->shape.str(), " in file, ", p.shape.str(), " in model");
    used.insert(e->name);
    plan.emplace_back(&p, e);
  }
  const std::string scope = options.prefix.empty() ? std::string() : options.prefix + ".";
  for (const auto& e : file.entries()) {
    if (used.count(e.name) || !starts_with(e.name, scope)) continue;
    bool ignored = false;
    for (const auto& ip : options.ignore_prefixes) ignored = ignored || starts_with(e.name, ip);
    if (!ignored) report.unexpected.push_back(e.name);
  }
  if (!report.missing.empty() && !options.allow_missing)
    fail(file.what(), ": ", report.missing.size(), " model tensor(s) missing from the file: ", name_list(report.missing));
  if (!report.unexpected.empty() && !options.allow_unexpected)
    fail(file.what(), ": ", report.unexpected.size(), " tensor(s) in the file match no model parameter: ",
         name_list(report.unexpected));
  for (auto& [p, e] : plan) {
    file.read_float(*e, p->value, static_cast<std::size_t>(p->numel()));
    report.loaded.push_back(e->name);
  }
  if (!plan.empty()) arena.mark_weights_changed();  // this model's packed serving copies are stale now
  return report;
}

void add_arena(SafetensorsWriter& writer, const ParameterArena& arena, std::string_view prefix) {
  for (const auto& p : arena.parameters()) writer.add(join_name(prefix, p.name), TensorView<const float>{p.value, p.shape});
}

void save_arena(const std::filesystem::path& path, const ParameterArena& arena,
                const std::map<std::string, std::string>& metadata) {
  SafetensorsWriter w;
  add_arena(w, arena);
  for (auto& [k, v] : metadata) w.set_metadata(k, v);
  w.save(path);
}

}  // namespace mtrank::io
