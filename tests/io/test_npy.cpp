#include <bit>
#include <cstring>

#include <nlohmann/json.hpp>

#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/npy.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::io;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {
fs::path fixtures() { return fs::path(MTRANK_SOURCE_DIR) / "tests" / "fixtures" / "io"; }
bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && (a.numel() == 0 || std::memcmp(a.data(), b.data(), sizeof(float) * a.numel()) == 0);
}
}  // namespace

TEST_CASE("npy files written by NumPy load with their values (C order, Fortran order f64, scalar)") {
  auto expected = nlohmann::json::parse(read_file(fixtures() / "expected.json"))["npy"];
  for (auto& [name, e] : expected.items()) {
    INFO(name);
    Tensor t = load_npy(fixtures() / (name + ".npy"));
    Shape s;
    for (auto& d : e["shape"]) s.push_back(d.get<Index>());
    REQUIRE(t.shape() == s);
    for (std::size_t i = 0; i < e["bits"].size(); ++i)
      CHECK(std::bit_cast<std::uint32_t>(t[static_cast<Index>(i)]) == e["bits"][i].get<std::uint32_t>());
  }
}

TEST_CASE("save_npy / load_npy round trip for several shapes") {
  auto dir = testing::temp_dir("npy_roundtrip");
  Rng rng(4);
  for (Shape s : {Shape{2, 3}, Shape{5}, Shape{}, Shape{0, 4}, Shape{2, 1, 3}, Shape{1, 1, 1, 1, 1, 2}}) {
    INFO(s);
    Tensor t = testing::random_tensor<float>(s, rng);
    save_npy(dir / "t.npy", t);
    CHECK(same_bits(load_npy(dir / "t.npy"), t));
    CHECK(same_bits(parse_npy(serialize_npy(t)), t));
  }
}

TEST_CASE("Malformed npy files are Errors naming the file") {
  Tensor t(Shape{2, 3}, 1.5f);
  const std::string good = serialize_npy(t);
  auto bad = [](const std::string& bytes, const std::string& expected) {
    INFO(expected);
    CHECK_THROWS_WITH(parse_npy(bytes, "bad.npy"), Contains("bad.npy") && Contains(expected));
  };
  bad("", "not a .npy file");
  bad("NUMPY" + good.substr(5), "not a .npy file");
  std::string v = good;
  v[6] = 9;
  bad(v, "unsupported .npy format version 9.0");
  bad(good.substr(0, good.size() - 1), "data holds 23 bytes, but shape (2, 3) of <f4 needs 24");
  bad(good + "x", "data holds 25 bytes");
  bad(good.substr(0, 9), "truncated in the header length");
  std::string hl = good;
  hl[8] = '\xff';
  hl[9] = '\x7f';
  bad(hl, "runs past the end of the file");
  // Replaces text inside the header and re-pads it so the header length stays right.
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const std::size_t newline = 10 + (static_cast<unsigned char>(s[8]) | static_cast<unsigned char>(s[9]) << 8) - 1;
    REQUIRE(s[newline] == '\n');
    auto pos = s.find(from);
    REQUIRE(pos != std::string::npos);
    s.replace(pos, from.size(), to);
    const std::ptrdiff_t delta = static_cast<std::ptrdiff_t>(to.size()) - static_cast<std::ptrdiff_t>(from.size());
    const std::size_t nl = newline + delta;
    if (delta > 0) {
      REQUIRE(s.substr(nl - delta, delta) == std::string(delta, ' '));
      s.erase(nl - delta, delta);
    } else {
      s.insert(nl, -delta, ' ');
    }
    return s;
  };
  bad(replace("<f4", "<i4"), "dtype '<i4' is not supported");
  bad(replace("<f4", ">f4"), "dtype '>f4' is not supported");
  bad(replace("'shape'", "'shapf'"), "malformed .npy header");
  bad(replace("(2, 3)", "[2, 3]"), "malformed .npy header");
  bad(replace("False", "Fals "), "malformed .npy header");
  bad(replace("(2, 3)", "(9999999999999999999, 3)"), "needs");
  CHECK_THROWS_WITH(load_npy("/nonexistent/dir/x.npy"), Contains("/nonexistent/dir/x.npy"));
}
