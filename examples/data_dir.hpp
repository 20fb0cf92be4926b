// Where the example programs look for the public samples (../shared/data, see its README):
// --data-dir if given, else $MTRANK_DATA_DIR, else ../shared/data relative to the working
// directory (the repository root). Empty when none exists, so callers can skip cleanly.
#pragma once
#include <cstdlib>
#include <filesystem>
#include <string>

namespace mtrank::examples {

inline std::filesystem::path find_data_dir(const std::string& flag) {
  namespace fs = std::filesystem;
  if (!flag.empty()) return fs::exists(flag) ? fs::path(flag) : fs::path();
  if (const char* env = std::getenv("MTRANK_DATA_DIR"); env && *env && fs::exists(env)) return env;
  if (fs::exists("../shared/data")) return "../shared/data";
  return {};
}

}  // namespace mtrank::examples
