// Regressions for what the libFuzzer targets (fuzz/, scripts/fuzz.sh) found in the dataset
// readers: each case names the target and the input that failed.
#include <fstream>
#include <string>

#include "mtrank/data/readers.hpp"
#include "testing.hpp"

using namespace mtrank;
using Catch::Matchers::Contains;

namespace {

void write(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

std::string flags() {
  std::string s;
  for (int g = 0; g < 19; ++g) s += g == 3 ? "|1" : "|0";
  return s;
}

}  // namespace

TEST_CASE("fuzz_readers: MovieLens user and movie ids beyond 2^20 are an Error, not a 12 GB table", "[data][fuzz]") {
  // "1073741824|24|M|artist|85711" in u.user resized the user table to 2^30 + 1 entries (12 GB).
  const auto dir = mtrank::testing::temp_dir("fuzz_movielens");
  write(dir / "u.occupation", "artist\n");
  auto files = [&](const std::string& user_id, const std::string& movie_id) {
    write(dir / "u.user", user_id + "|24|M|artist|85711\n");
    write(dir / "u.item", movie_id + "|Toy Story (1995)|01-Jan-1995||http://x" + flags() + "\n");
    write(dir / "u.data", user_id + "\t" + movie_id + "\t5\t874965758\n");
  };
  files("1073741824", "1");
  CHECK_THROWS_WITH(data::read_movielens_100k(dir), Contains("u.user:1: user_id 1073741824 not in [1, 1048576]"));
  files("1", "1048577");
  CHECK_THROWS_WITH(data::read_movielens_100k(dir), Contains("u.item:1: movie_id 1048577 not in [1, 1048576]"));
  files("1048576", "1048576");  // the largest ids accepted
  const auto tt = data::read_movielens_100k(dir, {.test_per_user = 0});
  CHECK(tt.train.rows == 1);
  CHECK(tt.train.schema.sparse[0].vocab == 1048577);
  std::filesystem::remove_all(dir);
}
