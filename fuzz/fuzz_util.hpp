// Helpers shared by the libFuzzer targets: a byte reader for choosing options from the input,
// and a per-process scratch directory in /dev/shm for APIs that take a file path.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace mtrank::fuzz {

/// MTRANK_FUZZ_VERBOSE=1: targets print the errors they catch (to check what seeds reach).
inline bool verbose() {
  static const bool v = [] {
    const char* e = std::getenv("MTRANK_FUZZ_VERBOSE");
    return e && *e && *e != '0';
  }();
  return v;
}

inline void note(const char* where, const std::exception& e) {
  if (verbose()) std::fprintf(stderr, "%s: %s\n", where, e.what());
}

/// Takes option bytes from the front of the input; 0 once the input is exhausted.
class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
  std::uint8_t u8() {
    if (!n_) return 0;
    --n_;
    return *p_++;
  }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | (u8() << 8)); }
  bool flag() { return u8() & 1; }
  /// One of `n` choices.
  std::size_t pick(std::size_t n) { return n ? u8() % n : 0; }
  /// Up to `max` bytes as a string.
  std::string take(std::size_t max) {
    const std::size_t k = max < n_ ? max : n_;
    std::string s(reinterpret_cast<const char*>(p_), k);
    p_ += k;
    n_ -= k;
    return s;
  }
  std::string rest() { return take(n_); }
  std::size_t left() const { return n_; }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
};

/// /dev/shm/mtrank-fuzz-<name>-<pid>/ (falls back to the temp directory), removed at exit.
inline const std::filesystem::path& scratch_dir(const char* name) {
  static const std::filesystem::path dir = [name] {
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? std::filesystem::path("/dev/shm")
                                                                    : std::filesystem::temp_directory_path();
    auto d = base / ("mtrank-fuzz-" + std::string(name) + "-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    static std::filesystem::path to_remove = d;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    return d;
  }();
  return dir;
}

/// Writes bytes to `path` (plain write: the library's readers are what is being tested).
inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) std::abort();
}

/// Splits `s` on the byte sequence `sep` into at most `max_parts` parts (the last keeps the rest).
inline std::vector<std::string> split_parts(std::string_view s, std::string_view sep, std::size_t max_parts) {
  std::vector<std::string> parts;
  while (parts.size() + 1 < max_parts) {
    const auto k = s.find(sep);
    if (k == std::string_view::npos) break;
    parts.emplace_back(s.substr(0, k));
    s.remove_prefix(k + sep.size());
  }
  parts.emplace_back(s);
  return parts;
}

}  // namespace mtrank::fuzz
