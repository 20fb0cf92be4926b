// Regressions for what the libFuzzer targets (fuzz/, scripts/fuzz.sh) found on the serving and
// checkpoint paths: each case names the target and the input that failed.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "mtrank/core/arena.hpp"
#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/train/export.hpp"
#include "mtrank/train/trainer.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;
using mtrank::testing::feed;
using mtrank::testing::feed_config;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

// The same safetensors file with one metadata value replaced.
std::string with_metadata(const std::string& file, const std::string& key, const std::string& value) {
  const auto f = io::SafetensorsFile::parse(file);
  io::SafetensorsWriter w;
  std::vector<std::string> raw;
  raw.reserve(f.entries().size());
  for (const auto& e : f.entries()) {
    raw.push_back(f.raw_bytes(e.name));
    w.add_raw(e.name, e.dtype, e.shape, raw.back().data());
  }
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  w.set_metadata(key, value);
  return w.serialize();
}

std::vector<float> weights(const models::Model& m) {
  std::vector<float> w;
  for (const auto& p : m.arena().parameters()) w.insert(w.end(), p.value, p.value + p.numel());
  return w;
}

struct BudgetScope {  // restores the default parameter budget
  explicit BudgetScope(std::uint64_t bytes) { set_parameter_memory_budget(bytes); }
  ~BudgetScope() { set_parameter_memory_budget(0); }
};

}  // namespace

TEST_CASE("fuzz_checkpoint: a malformed train state is an Error naming it, and resume() changes nothing",
          "[serve][fuzz]") {
  // train_state [1,2,3], {"epoch": "1"}, {"optimizer": 5}, a missing epoch ... escaped as
  // nlohmann::json exceptions (after the weights had already been loaded); negative positions
  // were accepted and indexed the epoch permutation out of range in fit().
  const auto dir = mtrank::testing::temp_dir("fuzz_resume");
  const auto ckpt = dir / "train.safetensors";
  {
    auto model = models::build_model(feed_config());
    train::Adam adam({.lr = 1e-2});
    train::Trainer t(*model, adam,
                     {.batch_size = 256, .epochs = 1, .max_steps_per_epoch = 2, .checkpoint_path = ckpt.string(), .progress = 2});
    t.fit(feed());
  }
  const std::string good = io::read_file(ckpt);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[1,2,3]", "expected an object"},
      {R"({"epoch":"1","step_in_epoch":0,"global_step":2,"optimizer":"adam"})", "\"epoch\": expected a non-negative integer"},
      {R"({"epoch":1.5,"step_in_epoch":0,"global_step":2,"optimizer":"adam"})", "\"epoch\": expected a non-negative integer"},
      {R"({"epoch":1,"step_in_epoch":-1,"global_step":2,"optimizer":"adam"})", "\"step_in_epoch\": expected a non-negative integer"},
      {R"({"epoch":1,"step_in_epoch":0,"global_step":18446744073709551615,"optimizer":"adam"})", "\"global_step\""},
      {R"({"step_in_epoch":0,"global_step":2,"optimizer":"adam"})", "\"epoch\": missing"},
      {R"({"epoch":1,"step_in_epoch":0,"global_step":2,"optimizer":5})", "type must be string"},
      {R"({"epoch":1,"step_in_epoch":0,"global_step":2,"optimizer":"adam","best":"x"})", "type must be number"},
  };
  for (const auto& [state, message] : bad) {
    INFO(state);
    const auto path = dir / "bad.safetensors";
    io::write_file_atomic(path, with_metadata(good, "mtrank.train_state", state));
    auto model = models::build_model(feed_config());
    train::Adam adam({.lr = 1e-2});
    train::Trainer t(*model, adam, {.batch_size = 256, .epochs = 2, .progress = 2});
    const auto before = weights(*model);
    CHECK_THROWS_WITH(t.resume(path), Contains("mtrank.train_state") && Contains(message));
    CHECK(weights(*model) == before);
    CHECK(t.epoch() == 0);
    CHECK(t.global_step() == 0);
  }
  auto model = models::build_model(feed_config());
  train::Adam adam({.lr = 1e-2});
  train::Trainer t(*model, adam, {.batch_size = 256, .epochs = 2, .max_steps_per_epoch = 2, .progress = 2});
  t.resume(ckpt);
  CHECK(t.epoch() == 1);
  CHECK(t.global_step() == 2);
  CHECK(t.fit(feed()).size() == 1);
  std::filesystem::remove_all(dir);
}

TEST_CASE("fuzz_checkpoint: export compares the stored config with the file before allocating", "[serve][fuzz]") {
  // A stored config with "vocab": 50000000 made export build the model first: 1.6 GB of
  // embedding table allocated (up to the parameter budget) before the strict load failed.
  const auto dir = mtrank::testing::temp_dir("fuzz_export");
  auto model = models::build_model(feed_config());
  auto cfg = feed_config();
  cfg["schema"]["sparse"][0]["vocab"] = 50000000;
  cfg["schema"]["sparse"][0]["dim"] = 8;
  io::save_serving_weights(dir / "big.safetensors", model->arena(), cfg);
  const BudgetScope budget(64ull << 20);  // far below the 1.6 GB the config asks for
  try {
    train::export_serving_weights(dir / "big.safetensors", dir / "out.safetensors");
    FAIL("export accepted a config that does not match the file");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK_THAT(m, Contains("embeddings.user_id.weight") && Contains("but the config builds [50000000, 8]"));
    CHECK_THAT(m, !Contains("memory budget"));
  }
  CHECK_FALSE(std::filesystem::exists(dir / "out.safetensors"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("fuzz_parse_cost: serving candidate_fields are matched in linear time", "[serve][fuzz]") {
  // A config with 20 000 sparse fields, all listed in serving.candidate_fields: one search of the
  // schema per listed field, 17 s per 1 MiB config under ASan; now 0.6 s.
  data::FeatureSchema s;
  s.tasks = {{"click"}};
  json names = json::array();
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    s.sparse.push_back({.name = "f" + std::to_string(i), .vocab = 2, .dim = 1});
    names.push_back("f" + std::to_string(n - 1 - i));
  }
  s.dense = {{"d"}};
  s.sequences = {{.name = "q", .max_len = 2, .table = "f0"}};
  const auto t0 = std::chrono::steady_clock::now();
  const auto c = serve::parse_serving({{"candidate_fields", names}}, s);
  CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 10.0);  // quadratic: 5*10^9 comparisons
  CHECK(c.layout.cand_sparse.size() == static_cast<std::size_t>(n));
  CHECK(c.layout.user_dense == std::vector<Index>{0});
  CHECK(c.layout.user_sparse.empty());
  // The errors are the same as before.
  CHECK_THROWS_WITH(serve::parse_serving({{"candidate_fields", {"f3", "d", "f3"}}}, s),
                    Contains("serving.candidate_fields[2]: field 'f3' listed twice"));
  CHECK_THROWS_WITH(serve::parse_serving({{"candidate_fields", {"d", "d"}}}, s), Contains("field 'd' listed twice"));
  CHECK_THROWS_WITH(serve::parse_serving({{"candidate_fields", {"q"}}}, s), Contains("'q' is a sequence field"));
  CHECK_THROWS_WITH(serve::parse_serving({{"candidate_fields", {"x"}}}, s), Contains("unknown field 'x'"));
}
