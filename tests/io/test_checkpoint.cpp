#include <algorithm>
#include <cstring>

#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/nn/mlp.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::io;
using Catch::Contains;

namespace {
const nn::MlpOptions kOpt{.in = 4, .layers = {6, 2}, .batch_norm = true};

CheckpointData sample_data(Rng& rng) {
  CheckpointData d;
  d.config = {{"model", "mlp"}, {"layers", {6, 2}}, {"lr", 0.01}};
  d.train_state = {{"step", 123}, {"epoch", 2}, {"rng", {std::uint64_t(0xFFFFFFFFFFFFFFFFULL), 42}}};
  d.optimizer_state.emplace_back("adam.m.mlp.layers.0.weight", testing::random_tensor<float>(Shape{6, 4}, rng));
  d.optimizer_state.emplace_back("adam.step", Tensor(Shape{}, 123.f));
  return d;
}

bool same_values(const ParameterArena& a, const ParameterArena& b) {
  for (auto& p : a.parameters()) {
    auto* q = b.find(p.name);
    if (!q || !(q->shape == p.shape) || std::memcmp(p.value, q->value, sizeof(float) * p.numel()) != 0) return false;
  }
  return a.parameters().size() == b.parameters().size();
}
}  // namespace

TEST_CASE("Checkpoint round trip: weights, optimiser state, config and train state") {
  auto dir = testing::temp_dir("ckpt_roundtrip");
  Rng rng(9);
  ParameterArena src(1);
  nn::Mlp<float> a(src, "mlp", kOpt);
  CheckpointData d = sample_data(rng);
  save_checkpoint(dir / "c.safetensors", src, d);

  CheckpointData meta = read_checkpoint_metadata(dir / "c.safetensors");
  CHECK(meta.config == d.config);
  CHECK(meta.train_state == d.train_state);
  CHECK(meta.train_state["rng"][0].get<std::uint64_t>() == 0xFFFFFFFFFFFFFFFFULL);
  CHECK(meta.optimizer_state.empty());

  ParameterArena dst(2);
  nn::Mlp<float> b(dst, "mlp", kOpt);
  CHECK_FALSE(same_values(src, dst));
  CheckpointData got = load_checkpoint(dir / "c.safetensors", dst);
  CHECK(same_values(src, dst));
  CHECK(got.config == d.config);
  CHECK(got.train_state == d.train_state);
  REQUIRE(got.optimizer_state.size() == 2);
  for (auto& [name, t] : d.optimizer_state) {
    INFO(name);
    const Tensor* g = got.find_optimizer_state(name);
    REQUIRE(g);
    CHECK(g->shape() == t.shape());
    CHECK(std::memcmp(g->data(), t.data(), sizeof(float) * t.numel()) == 0);
  }
  CHECK(got.find_optimizer_state("nope") == nullptr);

  // The checkpoint is a plain safetensors file with documented names and metadata.
  auto f = SafetensorsFile::load(dir / "c.safetensors");
  CHECK(f.metadata().at("mtrank.format") == "1");
  CHECK(f.contains("mlp.layers.0.weight"));
  CHECK(f.contains("__optim__.adam.step"));
  CHECK(nlohmann::json::parse(f.metadata().at("mtrank.config")) == d.config);
}

TEST_CASE("A failed checkpoint save leaves the previous checkpoint loadable") {
  auto dir = testing::temp_dir("ckpt_atomic");
  Rng rng(3);
  ParameterArena v1(1);
  nn::Mlp<float> a(v1, "mlp", kOpt);
  save_checkpoint(dir / "c.safetensors", v1, sample_data(rng));
  ParameterArena v2(2);
  nn::Mlp<float> b(v2, "mlp", kOpt);
  CheckpointData d2 = sample_data(rng);
  d2.train_state["step"] = 999;
  for (auto step : {AtomicWriteStep::write, AtomicWriteStep::fsync, AtomicWriteStep::rename}) {
    inject_atomic_write_fault(step);
    CHECK_THROWS_AS(save_checkpoint(dir / "c.safetensors", v2, d2), Error);
  }
  ParameterArena back(3);
  nn::Mlp<float> c(back, "mlp", kOpt);
  CheckpointData got = load_checkpoint(dir / "c.safetensors", back);
  CHECK(got.train_state["step"] == 123);
  CHECK(same_values(back, v1));
}

TEST_CASE("Checkpoint errors: not a checkpoint, wrong format, bad metadata JSON, wrong model") {
  auto dir = testing::temp_dir("ckpt_errors");
  Rng rng(5);
  ParameterArena src(1);
  nn::Mlp<float> a(src, "mlp", kOpt);

  save_arena(dir / "weights.safetensors", src);
  CHECK_THROWS_WITH(read_checkpoint_metadata(dir / "weights.safetensors"),
                    Contains("weights.safetensors") && Contains("not an mtrank checkpoint") && Contains("mtrank.format"));

  auto write_with_metadata = [&](const std::string& name, std::map<std::string, std::string> md) {
    SafetensorsWriter w;
    add_arena(w, src);
    for (auto& [k, v] : md) w.set_metadata(k, v);
    w.save(dir / name);
    return dir / name;
  };
  CHECK_THROWS_WITH(read_checkpoint_metadata(write_with_metadata(
                        "v2.safetensors", {{"mtrank.format", "2"}, {"mtrank.config", "{}"}, {"mtrank.train_state", "{}"}})),
                    Contains("checkpoint format \"2\" is not supported"));
  CHECK_THROWS_WITH(read_checkpoint_metadata(write_with_metadata(
                        "kind.safetensors", {{"mtrank.format", "1"}, {"mtrank.config", "{}"}, {"mtrank.kind", "demo"}})),
                    Contains("\"mtrank.kind\" is \"demo\""));
  // A training checkpoint needs its train state; a serving file has none.
  CHECK_THROWS_WITH(read_checkpoint_metadata(write_with_metadata("nostate.safetensors",
                                                                 {{"mtrank.format", "1"}, {"mtrank.config", "{}"}})),
                    Contains("mtrank.train_state"));
  CHECK(read_checkpoint_metadata(write_with_metadata("serving.safetensors",
                                                     {{"mtrank.format", "1"}, {"mtrank.config", "{}"}, {"mtrank.kind", "serving"}}))
            .kind == kServingKind);
  CHECK_THROWS_WITH(read_checkpoint_metadata(write_with_metadata(
                        "badjson.safetensors", {{"mtrank.format", "1"}, {"mtrank.config", "{\"a\": "}, {"mtrank.train_state", "{}"}})),
                    Contains("metadata \"mtrank.config\": invalid JSON"));

  save_checkpoint(dir / "c.safetensors", src, sample_data(rng));
  ParameterArena wrong(2);
  nn::Mlp<float> b(wrong, "mlp", {.in = 4, .layers = {5, 2}, .batch_norm = true});
  const float before = wrong.at("mlp.layers.1.weight").value[0];
  CHECK_THROWS_WITH(load_checkpoint(dir / "c.safetensors", wrong),
                    Contains("tensor 'mlp.layers.0.weight': shape [6, 4] in file, [5, 4] in model"));
  CHECK(wrong.at("mlp.layers.1.weight").value[0] == before);

  ParameterArena fewer(3);
  fewer.add("mlp.layers.0.weight", Shape{6, 4});
  CHECK_THROWS_WITH(load_checkpoint(dir / "c.safetensors", fewer), Contains("match no model parameter"));
}

TEST_CASE("io: save_serving_weights writes the model tensors and config, no optimiser or train state", "[io][checkpoint]") {
  auto dir = testing::temp_dir("ckpt_serving");
  ParameterArena src(1);
  nn::Mlp<float> a(src, "mlp", kOpt);
  src.add("uwl.log_var", Shape{2});
  const nlohmann::json config = {{"model", {{"type", "mlp"}}}};
  CHECK(save_serving_weights(dir / "s.safetensors", src, config, {"uwl."}) == src.parameters().size() - 1);
  const auto f = SafetensorsFile::load(dir / "s.safetensors");
  CHECK(f.find("uwl.log_var") == nullptr);
  CHECK(f.find("mlp.layers.0.weight") != nullptr);
  const CheckpointData d = read_checkpoint_metadata(dir / "s.safetensors");
  CHECK(d.kind == kServingKind);
  CHECK(d.config == config);
  CHECK(d.train_state.empty());
  ParameterArena dst(2);
  nn::Mlp<float> b(dst, "mlp", kOpt);
  load_arena(dst, f);  // strict: exactly the model's tensors
  for (std::size_t i = 0; i < dst.parameters().size(); ++i) {
    const auto& p = dst.parameters()[i];
    CHECK(std::equal(p.value, p.value + p.numel(), src.at(p.name).value));
  }
}

TEST_CASE("A checkpoint with a flipped byte in its weights or optimiser state is refused naming the tensor", "[io][checksum]") {
  auto dir = testing::temp_dir("ckpt_torn");
  Rng rng(9);
  ParameterArena src(1);
  nn::Mlp<float> a(src, "mlp", kOpt);
  save_checkpoint(dir / "c.safetensors", src, sample_data(rng));
  const std::string good = read_file(dir / "c.safetensors");
  std::uint64_t header_end = 8;
  for (int i = 7; i >= 0; --i) header_end += static_cast<std::uint64_t>(static_cast<unsigned char>(good[i])) << (8 * i);
  const auto file = SafetensorsFile::parse(good);
  CHECK(file.checksummed());
  for (const char* tensor : {"mlp.layers.1.bias", "__optim__.adam.m.mlp.layers.0.weight"}) {
    INFO(tensor);
    const SafetensorsEntry* e = file.find(tensor);
    REQUIRE(e);
    std::string bad = good;
    bad[header_end + e->begin] ^= 0x01;
    write_file_atomic(dir / "bad.safetensors", bad);
    ParameterArena dst(2);
    nn::Mlp<float> b(dst, "mlp", kOpt);
    CHECK_THROWS_WITH(load_checkpoint(dir / "bad.safetensors", dst),
                      Contains("bad.safetensors") && Contains(std::string("tensor '") + tensor + "': checksum mismatch"));
  }
}
