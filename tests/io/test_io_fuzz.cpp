// Fuzz-style robustness: thousands of randomly truncated and byte-flipped variants of valid
// files must either parse or throw mtrank::Error. Any other exception fails the test, and
// crashes or undefined behaviour are caught when this runs under ASan+UBSan in CI.
#include <fstream>

#include <nlohmann/json.hpp>

#include "mtrank/data/schema.hpp"
#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/io/npy.hpp"
#include "mtrank/io/safetensors.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::io;

namespace {

// One random mutation: truncation, byte flips, "interesting" bytes, insertion or deletion.
std::string mutate(const std::string& s, Rng& rng) {
  std::string m = s;
  static const char kInteresting[] = {'{', '}', '[', ']', '"', ',', ':', '-', '0', '9', 'e', '.', ' ', '\0', '\xff', '\x80'};
  const int rounds = 1 + static_cast<int>(rng.below(3));
  for (int r = 0; r < rounds; ++r) {
    if (m.empty()) break;
    const auto pos = static_cast<std::size_t>(rng.below(m.size()));
    switch (rng.below(6)) {
      case 0: m.resize(pos); break;
      case 1: m[pos] = static_cast<char>(m[pos] ^ static_cast<char>(1 + rng.below(255))); break;
      case 2: m[pos] = kInteresting[rng.below(sizeof kInteresting)]; break;
      case 3: m.insert(pos, 1, kInteresting[rng.below(sizeof kInteresting)]); break;
      case 4: m.erase(pos, 1 + rng.below(4)); break;
      default: {  // the 8-byte length prefix and the first header bytes are the most sensitive
        const auto p = static_cast<std::size_t>(rng.below(std::min<std::size_t>(m.size(), 12)));
        m[p] = static_cast<char>(m[p] ^ static_cast<char>(1 << rng.below(8)));
      }
    }
  }
  return m;
}

struct Outcome {
  int parsed = 0, errors = 0;
};

// Runs `body` on `n` mutations of `base`: an mtrank::Error counts as a clean rejection; any
// other exception fails the test with the offending input's index.
template <class F>
Outcome fuzz(const std::string& base, int n, std::uint64_t seed, F&& body) {
  Rng rng(seed);
  Outcome o;
  for (int i = 0; i < n; ++i) {
    const std::string m = mutate(base, rng);
    try {
      body(m);
      ++o.parsed;
    } catch (const Error&) {
      ++o.errors;
    } catch (const std::exception& e) {
      FAIL("variant " << i << " (seed " << seed << "): non-mtrank exception: " << e.what());
    } catch (...) {
      FAIL("variant " << i << " (seed " << seed << "): unknown exception");
    }
  }
  return o;
}

std::string sample_safetensors() {
  static Tensor a = [] {
    Tensor t(Shape{2, 3});
    for (Index i = 0; i < 6; ++i) t[i] = 0.5f * static_cast<float>(i) - 1.f;
    return t;
  }();
  static Tensor s(Shape{}, 3.f);
  static const std::int64_t ids[3] = {1, -2, 3};
  static const std::uint16_t half[4] = {0x3c00, 0x0001, 0x7c00, 0xfe00};
  static const std::uint16_t bf[2] = {0x3f80, 0xff80};
  static const double dbl[2] = {1e300, -0.5};
  SafetensorsWriter w;
  w.add("w", a.view());
  w.add("ids", Shape{3}, ids);
  w.add_raw("h", Dtype::F16, Shape{2, 2}, half);
  w.add_raw("b", Dtype::BF16, Shape{2}, bf);
  w.add_raw("d", Dtype::F64, Shape{2}, dbl);
  w.add("s", s.view());
  w.add("e", TensorView<const float>{nullptr, Shape{0, 2}});
  w.set_metadata("mtrank.config", R"({"a": [1, 2]})");
  return w.serialize();
}

// Everything a reader might do with a parsed file.
void exercise(const SafetensorsFile& f) {
  for (const auto& e : f.entries()) {
    if (is_float_dtype(e.dtype)) (void)f.to_float(e.name);
    else if (is_int_dtype(e.dtype)) (void)f.to_int64(e.name);
    (void)f.raw_bytes(e.name);
  }
}

}  // namespace

TEST_CASE("Fuzz: mutated safetensors files parse or throw mtrank::Error") {
  const std::string base = sample_safetensors();
  exercise(SafetensorsFile::parse(base));
  Outcome o = fuzz(base, 6000, 101, [](const std::string& m) { exercise(SafetensorsFile::parse(m, "fuzz")); });
  INFO("parsed " << o.parsed << ", rejected " << o.errors);
  CHECK(o.errors > 0);
  CHECK(o.parsed + o.errors == 6000);

  // The file-backed reader (pread path) sees the same inputs through the filesystem.
  auto dir = testing::temp_dir("fuzz_st");
  Outcome od = fuzz(base, 100, 202, [&](const std::string& m) {
    std::ofstream(dir / "f.safetensors", std::ios::binary | std::ios::trunc).write(m.data(), static_cast<std::streamsize>(m.size()));
    exercise(SafetensorsFile::load(dir / "f.safetensors"));
  });
  CHECK(od.errors > 0);
}

TEST_CASE("Fuzz: mutated FeatureSchema JSON parses or throws mtrank::Error") {
  data::FeatureSchema s;
  s.sparse = {{"user_id", 1000003, 16, true}, {"item_id", 5000, 8, false}};
  s.dense = {{"price"}, {"age"}};
  s.sequences = {{"clicked_items", 0, 8, 30, "item_id", false}};
  s.tasks = {{"click", data::TaskKind::binary}, {"watch_time", data::TaskKind::regression}};
  s.num_scenes = 3;
  nlohmann::json j;
  data::to_json(j, s);
  const std::string base = j.dump(1);
  {
    data::FeatureSchema back;
    data::from_json(parse_json(base, "schema"), back);
    REQUIRE(back.sparse.size() == 2);
  }
  // Inputs random flips rarely produce: numbers nlohmann cannot represent, or floats where
  // integers belong (a plain float->int cast would be undefined behaviour or truncate).
  for (const char* bad : {R"({"tasks": [{"name": "a"}], "num_scenes": 1e999})",
                          R"({"tasks": [{"name": "a"}], "num_scenes": 1e300})",
                          R"({"tasks": [{"name": "a"}], "num_scenes": 2.5})",
                          R"({"sparse": [{"name": "u", "vocab": -1e30}], "tasks": [{"name": "a"}]})",
                          R"({"sparse": [{"name": "u", "vocab": 18446744073709551615}], "tasks": [{"name": "a"}]})"}) {
    INFO(bad);
    data::FeatureSchema out;
    CHECK_THROWS_AS(data::from_json(parse_json(bad, "schema"), out), Error);
  }
  Outcome o = fuzz(base, 5000, 303, [](const std::string& m) {
    data::FeatureSchema out;
    data::from_json(parse_json(m, "schema"), out);
  });
  INFO("parsed " << o.parsed << ", rejected " << o.errors);
  CHECK(o.errors > 0);
  CHECK(o.parsed > 0);
}

TEST_CASE("Fuzz: mutated npy files parse or throw mtrank::Error") {
  Tensor t(Shape{3, 2});
  for (Index i = 0; i < 6; ++i) t[i] = static_cast<float>(i);
  const std::string base = serialize_npy(t);
  Outcome o = fuzz(base, 3000, 404, [](const std::string& m) { (void)parse_npy(m, "fuzz.npy"); });
  INFO("parsed " << o.parsed << ", rejected " << o.errors);
  CHECK(o.errors > 0);
}
