#include "mtrank/io/atomic_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "mtrank/core/error.hpp"

namespace mtrank::io {
namespace {

std::atomic<AtomicWriteStep> g_fault{AtomicWriteStep::none};
std::atomic<std::uint64_t> g_temp_counter{0};

// True (and errno = EIO) when a fault was injected at `step`; consumes the fault.
bool fault(AtomicWriteStep step) {
  AtomicWriteStep expected = step;
  if (g_fault.compare_exchange_strong(expected, AtomicWriteStep::none)) {
    errno = EIO;
    return true;
  }
  return false;
}

std::string errno_text(int err) { return std::strerror(err); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

void inject_atomic_write_fault(AtomicWriteStep step) { g_fault.store(step); }

std::string read_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  int raw;
  do raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  while (raw < 0 && errno == EINTR);
  if (raw < 0) fail("cannot open '", path.string(), "' for reading: ", errno_text(errno));
  Fd fd(raw);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) fail("cannot stat '", path.string(), "': ", errno_text(errno));
  if (S_ISDIR(st.st_mode)) fail("cannot read '", path.string(), "': ", errno_text(EISDIR));
  std::string out;
  if (S_ISREG(st.st_mode)) {
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if (size > max_bytes) fail("'", path.string(), "': file size ", size, " bytes exceeds the limit of ", max_bytes, " bytes");
    out.reserve(static_cast<std::size_t>(size));
  }
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot read '", path.string(), "': ", errno_text(errno));
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes)
      fail("'", path.string(), "': file is larger than the limit of ", max_bytes, " bytes");
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::vector<std::filesystem::path> remove_stale_temp_files(const std::filesystem::path& target) {
  std::vector<std::filesystem::path> removed;
  if (!target.has_filename()) return removed;
  const std::filesystem::path dir = target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
  const std::string prefix = "." + target.filename().string() + ".tmp.";
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // "<pid>.<n>", both decimal.
    const std::string rest = name.substr(prefix.size());
    const auto dot = rest.find('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size() || dot > 9 ||
        rest.find_first_not_of("0123456789.") != std::string::npos || rest.find('.', dot + 1) != std::string::npos)
      continue;
    const long pid = std::stol(rest.substr(0, dot));
    if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)) {
      std::error_code rm;
      if (std::filesystem::remove(it->path(), rm)) removed.push_back(it->path());
    }
  }
  return removed;
}

AtomicFileWriter::AtomicFileWriter(std::filesystem::path target) : target_(std::move(target)) {
  require(!target_.empty(), "atomic write: empty target path");
  require(target_.has_filename(), "atomic write: '", target_.string(), "' does not name a file");
  const std::filesystem::path dir = target_.parent_path();
  std::string name(1, '.');
  name += target_.filename().string();
  name += ".tmp.";
  name += std::to_string(::getpid());
  name += '.';
  name += std::to_string(g_temp_counter.fetch_add(1));
  temp_ = dir.empty() ? std::filesystem::path(name) : dir / name;
  if (fault(AtomicWriteStep::open)) fail("cannot create '", temp_.string(), "': ", errno_text(errno));
  do fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0) fail("cannot create '", temp_.string(), "' (temporary file for '", target_.string(), "'): ", errno_text(errno));
}

AtomicFileWriter::AtomicFileWriter(AtomicFileWriter&& o) noexcept
    : target_(std::move(o.target_)), temp_(std::move(o.temp_)), fd_(o.fd_), written_(o.written_) {
  o.fd_ = -1;
  o.temp_.clear();
}

AtomicFileWriter& AtomicFileWriter::operator=(AtomicFileWriter&& o) noexcept {
  if (this != &o) {
    abort();
    target_ = std::move(o.target_);
    temp_ = std::move(o.temp_);
    fd_ = o.fd_;
    written_ = o.written_;
    o.fd_ = -1;
    o.temp_.clear();
  }
  return *this;
}

AtomicFileWriter::~AtomicFileWriter() { abort(); }

void AtomicFileWriter::abort() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_.empty()) {
    ::unlink(temp_.c_str());
    temp_.clear();
  }
}

void AtomicFileWriter::write(std::string_view bytes) {
  require(fd_ >= 0, "atomic write of '", target_.string(), "': writer already committed or aborted");
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const std::size_t chunk = std::min<std::size_t>(left, std::size_t(1) << 30);
    ssize_t n = fault(AtomicWriteStep::write) ? -1 : ::write(fd_, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      abort();
      fail("cannot write '", target_.string(), "' (temporary file): ", errno_text(err));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
    written_ += static_cast<std::uint64_t>(n);
  }
}

void AtomicFileWriter::commit() {
  require(fd_ >= 0, "atomic write of '", target_.string(), "': writer already committed or aborted");
  if (fault(AtomicWriteStep::fsync) || ::fsync(fd_) != 0) {
    const int err = errno;
    abort();
    fail("cannot fsync '", target_.string(), "' (temporary file): ", errno_text(err));
  }
  if (::close(fd_) != 0) {
    const int err = errno;
    fd_ = -1;
    abort();
    fail("cannot close '", target_.string(), "' (temporary file): ", errno_text(err));
  }
  fd_ = -1;
  if (fault(AtomicWriteStep::rename) || ::rename(temp_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    abort();
    fail("cannot rename temporary file over '", target_.string(), "': ", errno_text(err));
  }
  temp_.clear();
  // Make the rename itself durable. The new file is already in place; a failure here only
  // means it may not survive a power loss, which the caller should still hear about.
  const std::filesystem::path dir = target_.parent_path().empty() ? std::filesystem::path(".") : target_.parent_path();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail("wrote '", target_.string(), "' but cannot open its directory to fsync it: ", errno_text(errno));
  Fd d(dfd);
  if (::fsync(d.get()) != 0 && errno != EINVAL)
    fail("wrote '", target_.string(), "' but cannot fsync its directory: ", errno_text(errno));
}

void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  AtomicFileWriter w(path);
  w.write(bytes);
  w.commit();
}

}  // namespace mtrank::io
