// Whole-file reads with a size cap, and crash-safe file replacement.
//
// write_file_atomic / AtomicFileWriter write into a temporary file in the target's directory
// (".<name>.tmp.<pid>.<n>"), fsync it, rename() it over the target and fsync the directory.
// A reader therefore sees either the complete old file or the complete new one, never a mix,
// even after a crash or power loss. On any failure before the rename the target is untouched
// and the temporary file is removed.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace mtrank::io {

/// Default cap for read_file: larger files are refused rather than read into memory.
inline constexpr std::uint64_t kDefaultMaxFileBytes = std::uint64_t(64) << 30;  // 64 GiB

/// Reads a whole regular file. Throws mtrank::Error naming the path and the errno text when
/// the file cannot be opened or read, and when it is larger than `max_bytes`.
std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes = kDefaultMaxFileBytes);

/// Replaces `path` with `bytes` atomically (see the top of this header).
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

/// Streaming form of write_file_atomic for outputs too large to build in memory first:
///   AtomicFileWriter w(path); w.write(a); w.write(b); w.commit();
/// Destroying the writer without commit() removes the temporary file and leaves the target
/// untouched. Not copyable; movable.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::filesystem::path target);
  AtomicFileWriter(AtomicFileWriter&& o) noexcept;
  AtomicFileWriter& operator=(AtomicFileWriter&& o) noexcept;
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();

  void write(std::string_view bytes);
  void write(const void* data, std::size_t size) { write(std::string_view(static_cast<const char*>(data), size)); }
  /// Bytes written so far.
  std::uint64_t size() const { return written_; }
  /// fsync + rename over the target + fsync of the directory. After a successful commit the
  /// writer is finished; further write()/commit() calls throw.
  void commit();
  /// Removes the temporary file (also done by the destructor when not committed).
  void abort() noexcept;
  const std::filesystem::path& target() const { return target_; }
  const std::filesystem::path& temp_path() const { return temp_; }

 private:
  std::filesystem::path target_, temp_;
  int fd_ = -1;
  std::uint64_t written_ = 0;
};

/// Removes the temporary files that writers of `target` left behind when their process died
/// (kill -9, power loss) before commit or abort: ".<name>.tmp.<pid>.<n>" in the target's
/// directory whose <pid> is no running process. Files of running processes (a writer at work,
/// or a reused pid) are kept. Returns the removed paths; errors while scanning are ignored (a
/// missing directory removes nothing). The CLI calls it for its checkpoints before training.
std::vector<std::filesystem::path> remove_stale_temp_files(const std::filesystem::path& target);

/// Fault injection for tests: the next AtomicFileWriter operation at `step` fails as if the
/// system call had returned EIO (once; the hook then resets itself to `none`). Process-global;
/// meant for single-threaded tests only.
enum class AtomicWriteStep { none, open, write, fsync, rename };
void inject_atomic_write_fault(AtomicWriteStep step);

}  // namespace mtrank::io
