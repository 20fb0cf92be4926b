#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "mtrank/core/error.hpp"
#include "mtrank/io/atomic_file.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::io;
namespace fs = std::filesystem;

namespace {
std::set<std::string> dir_entries(const fs::path& dir) {
  std::set<std::string> s;
  for (auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}
}  // namespace

TEST_CASE("write_file_atomic writes, replaces and leaves no temporary file") {
  auto dir = testing::temp_dir("atomic_basic");
  auto path = dir / "out.bin";
  std::string bytes(100000, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 131 % 251);
  write_file_atomic(path, bytes);
  CHECK(read_file(path) == bytes);
  write_file_atomic(path, "second");
  CHECK(read_file(path) == "second");
  write_file_atomic(path, "");
  CHECK(read_file(path).empty());
  CHECK(dir_entries(dir) == std::set<std::string>{"out.bin"});
}

TEST_CASE("AtomicFileWriter streams chunks and commits once") {
  auto dir = testing::temp_dir("atomic_stream");
  auto path = dir / "s.txt";
  AtomicFileWriter w(path);
  w.write("abc");
  w.write("def", 3);
  CHECK(w.size() == 6);
  CHECK_FALSE(fs::exists(path));  // nothing visible before commit
  w.commit();
  CHECK(read_file(path) == "abcdef");
  CHECK_THROWS_WITH(w.write("x"), Catch::Contains("already committed"));
  CHECK_THROWS_AS(w.commit(), Error);
}

TEST_CASE("An abandoned AtomicFileWriter leaves the target untouched and removes its temp file") {
  auto dir = testing::temp_dir("atomic_abandon");
  auto path = dir / "keep.txt";
  write_file_atomic(path, "old");
  {
    AtomicFileWriter w(path);
    w.write("new contents that never land");
    CHECK(fs::exists(w.temp_path()));
  }
  CHECK(read_file(path) == "old");
  CHECK(dir_entries(dir) == std::set<std::string>{"keep.txt"});
}

TEST_CASE("A failure at any step of an atomic write keeps the old file and removes the temp file") {
  auto step = GENERATE(AtomicWriteStep::open, AtomicWriteStep::write, AtomicWriteStep::fsync, AtomicWriteStep::rename);
  INFO("step " << static_cast<int>(step));
  auto dir = testing::temp_dir("atomic_fault");
  auto path = dir / "model.bin";
  write_file_atomic(path, "old contents");
  inject_atomic_write_fault(step);
  CHECK_THROWS_WITH(write_file_atomic(path, "new contents"),
                    Catch::Contains("model.bin") && Catch::Contains(std::strerror(EIO)));
  CHECK(read_file(path) == "old contents");
  CHECK(dir_entries(dir) == std::set<std::string>{"model.bin"});
  // The fault fires once; the next write goes through.
  write_file_atomic(path, "new contents");
  CHECK(read_file(path) == "new contents");
}

TEST_CASE("Real failures: rename over a directory, missing directory, read-only directory") {
  auto dir = testing::temp_dir("atomic_real");
  fs::create_directory(dir / "target_is_dir");
  CHECK_THROWS_WITH(write_file_atomic(dir / "target_is_dir", "x"),
                    Catch::Contains("target_is_dir") && Catch::Contains(std::strerror(EISDIR)));
  CHECK(fs::is_directory(dir / "target_is_dir"));
  CHECK(dir_entries(dir) == std::set<std::string>{"target_is_dir"});

  CHECK_THROWS_WITH(write_file_atomic(dir / "no_such_dir" / "f.bin", "x"),
                    Catch::Contains("no_such_dir") && Catch::Contains(std::strerror(ENOENT)));

  if (::geteuid() != 0) {  // root ignores directory permissions
    auto ro = dir / "readonly";
    fs::create_directory(ro);
    write_file_atomic(ro / "f.bin", "old");
    ::chmod(ro.c_str(), 0555);
    CHECK_THROWS_WITH(write_file_atomic(ro / "f.bin", "new"), Catch::Contains(std::strerror(EACCES)));
    ::chmod(ro.c_str(), 0755);
    CHECK(read_file(ro / "f.bin") == "old");
  }
}

TEST_CASE("read_file errors name the path and the reason") {
  auto dir = testing::temp_dir("read_file");
  CHECK_THROWS_WITH(read_file(dir / "missing.bin"),
                    Catch::Contains("missing.bin") && Catch::Contains(std::strerror(ENOENT)));
  CHECK_THROWS_WITH(read_file(dir), Catch::Contains(std::strerror(EISDIR)));
  write_file_atomic(dir / "big.bin", std::string(1000, 'x'));
  CHECK_THROWS_WITH(read_file(dir / "big.bin", 999), Catch::Contains("big.bin") && Catch::Contains("limit of 999"));
  CHECK(read_file(dir / "big.bin", 1000).size() == 1000);
}

TEST_CASE("remove_stale_temp_files removes what a killed writer left, and nothing else", "[io][atomic]") {
  const fs::path dir = testing::temp_dir("atomic_stale");
  const fs::path target = dir / "model.safetensors";
  write_file_atomic(target, "old");
  // A writer process that dies before commit (as under kill -9: no destructor runs).
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    AtomicFileWriter w(target);
    w.write("half of a checkpoint");
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);  // reaped: its pid is no process now
  std::string dead;  // ".model.safetensors.tmp.<child pid>.<n>"
  std::string prefix(1, '.');  // built with += : a GCC 12 -Wrestrict false positive on "." + ...
  prefix += target.filename().string();
  prefix += ".tmp.";
  prefix += std::to_string(child);
  prefix += '.';
  for (const auto& e : dir_entries(dir))
    if (e.rfind(prefix, 0) == 0) dead = e;
  REQUIRE(!dead.empty());
  // Kept: a live process's temporary file, other targets' files, names that are not ours.
  AtomicFileWriter live(target);
  const std::set<std::string> keep = {live.temp_path().filename().string(), ".other.safetensors.tmp.999999999.0",
                                      ".model.safetensors.tmp.x.0", ".model.safetensors.tmp.999999999", "model.safetensors"};
  for (const auto& k : keep)
    if (!fs::exists(dir / k)) write_file_atomic(dir / k, "x");
  const auto removed = remove_stale_temp_files(target);
  REQUIRE(removed.size() == 1);
  CHECK(removed[0].filename() == dead);
  std::set<std::string> left = dir_entries(dir);
  CHECK(left == keep);
  CHECK(remove_stale_temp_files(dir / "missing" / "x.safetensors").empty());
  live.abort();
}
