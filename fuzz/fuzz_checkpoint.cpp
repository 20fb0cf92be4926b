// libFuzzer target: arbitrary bytes as a checkpoint file, through every library path that loads
// one from disk:
//   1. serve::Predictor::from_checkpoint: metadata -> stored config -> models::build_model under
//      models::ExpectedShapes (the file's shapes, checked before any allocation) -> load_arena ->
//      the predictor's validation and warm-up pass (weight format f32/bf16/int8 by input size);
//   2. train::export_serving_weights (mtrank export), and the exported file loaded back;
//   3. a model built from the stored config (under ExpectedShapes, as the predictor does) and
//      train::Trainer::resume on the file (mtrank train --resume), then one training step and
//      fit() from the restored position (2 epochs of 4 synthetic rows).
// Large integers are NOT skipped: a stored config asking for huge layers, vocabularies, experts
// or scenes must end in mtrank::Error. Every arena has a 256 MB parameter budget, and because
// every path checks the file's shapes first, a file of at most -max_len bytes can never need
// more than a few MB of parameters: hitting the budget (an Error naming it) is treated as a
// finding too (a path that allocates before comparing with the file).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "mtrank/core/arena.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/serve/predictor.hpp"
#include "mtrank/train/export.hpp"
#include "mtrank/train/optimizer.hpp"
#include "mtrank/train/trainer.hpp"

namespace {

using namespace mtrank;

constexpr std::uint64_t kBudget = 256ull << 20;

// An Error from the arena's budget check (its message starts with "parameter arena: parameter '"
// and ends naming the budget setter; only the start is trusted, the middle echoes the config):
// impossible for a small file when the path compares the config with the file's shapes first.
void check_not_budget(const Error& e, const char* where) {
  fuzz::note(where, e);
  const std::string_view m = e.what();
  if (m.starts_with("parameter arena: parameter '") && m.ends_with("mtrank::set_parameter_memory_budget)")) {
    std::fprintf(stderr, "fuzz_checkpoint: %s allocated parameters beyond what the file holds: %s\n", where, e.what());
    __builtin_trap();
  }
}

// The shapes a model built for this file must have (with the trainer-only "uwl." tensors for a trainer).
std::unordered_map<std::string, Shape> model_shapes(const io::SafetensorsFile& f, bool trainer) {
  std::unordered_map<std::string, Shape> m;
  for (const auto& e : f.entries())
    if (e.name.rfind(io::kOptimPrefix, 0) != 0 && (trainer || e.name.rfind("uwl.", 0) != 0)) m.emplace(e.name, e.shape);
  return m;
}

void resume(const std::filesystem::path& path) {
  std::unique_ptr<models::Model> model;
  std::unique_ptr<train::Optimizer> opt;
  bool uwl = false;
  try {
    io::CheckpointData meta = io::read_checkpoint_metadata(path);
    if (meta.kind != io::kTrainingKind) return;
    io::SafetensorsFile f = io::SafetensorsFile::load(path);
    uwl = f.contains("uwl.log_var");
    {
      models::ExpectedShapes expect(model_shapes(f, /*trainer=*/true), "'" + path.string() + "'");
      model = models::build_model(meta.config);
    }
    std::string type = "adam";
    if (meta.train_state.is_object())
      if (auto it = meta.train_state.find("optimizer"); it != meta.train_state.end() && it->is_string())
        for (const char* t : {"sgd", "adam", "adamw", "adagrad", "ftrl"})
          if (*it == t) type = t;
    opt = train::make_optimizer({{"type", type}});
  } catch (const Error& e) {
    check_not_budget(e, "build_model for resume");
    return;
  }
  try {
    train::TrainerOptions o;
    o.progress = 2;
    o.uwl = uwl;
    o.batch_size = 2;
    o.epochs = 2;
    train::Trainer t(*model, *opt, o);
    t.resume(path);
    // One step from the restored optimiser state, then fit() from the restored position, on
    // synthetic rows (ids 0, dense 0, no sequences, labels 0).
    const auto& s = model->schema();
    const Index K = model->num_tasks(), rows = 4;
    data::Dataset d;
    d.schema = s;
    d.rows = rows;
    d.dense.resize(Shape{rows, static_cast<Index>(s.dense.size())});
    d.dense.zero();
    d.sparse.assign(static_cast<std::size_t>(rows) * s.sparse.size(), 0);
    d.sequences.resize(s.sequences.size());
    for (auto& q : d.sequences) q.offsets.assign(static_cast<std::size_t>(rows) + 1, 0);
    d.labels.resize(Shape{rows, K});
    d.labels.zero();
    d.label_mask.resize(Shape{rows, K});
    d.label_mask.fill(1.0f);
    for (Index r = 0; r < rows; ++r) d.user.push_back(r);
    d.scene.assign(static_cast<std::size_t>(rows), 0);
    data::Batch b;
    d.slice(0, 1, b);
    (void)t.train_step(b);
    (void)t.fit(d);
  } catch (const Error& e) {
    check_not_budget(e, "Trainer::resume");
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  set_parameter_memory_budget(kBudget);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto& dir = mtrank::fuzz::scratch_dir("checkpoint");
  const auto path = dir / "model.safetensors";
  const auto exported = dir / "serving.safetensors";
  mtrank::fuzz::write_bytes(path, std::string_view(reinterpret_cast<const char*>(data), size));

  // 1. The predictor.
  std::shared_ptr<const serve::Predictor> p;
  serve::PredictorOptions po;
  po.weights = size % 3 == 0 ? ServingWeights::f32 : size % 3 == 1 ? ServingWeights::bf16 : ServingWeights::int8;
  try {
    p = serve::Predictor::from_checkpoint(path, po);
  } catch (const Error& e) {
    check_not_budget(e, "Predictor::from_checkpoint");
  }
  if (p) (void)p->metadata().dump();

  // 2. Export, and the exported file must load like the checkpoint it came from.
  bool exported_ok = false;
  try {
    (void)train::export_serving_weights(path, exported);
    exported_ok = true;
  } catch (const Error& e) {
    check_not_budget(e, "export_serving_weights");
  }
  if (exported_ok && p) {
    try {
      (void)serve::Predictor::from_checkpoint(exported, po);
    } catch (const Error& e) {
      std::fprintf(stderr, "fuzz_checkpoint: the checkpoint loads, its exported serving file does not: %s\n", e.what());
      __builtin_trap();
    }
  }

  // 3. Resume training from it.
  resume(path);
  return 0;
}
