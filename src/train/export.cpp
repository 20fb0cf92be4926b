#include "mtrank/train/export.hpp"

#include <unordered_map>
#include <unordered_set>

#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/model.hpp"

namespace mtrank::train {

ExportReport export_serving_weights(const std::filesystem::path& checkpoint, const std::filesystem::path& out) {
  const io::CheckpointData meta = io::read_checkpoint_metadata(checkpoint);
  const io::SafetensorsFile f = io::SafetensorsFile::load(checkpoint);
  std::unique_ptr<models::Model> model;
  {
    // The config is compared with the file's shapes parameter by parameter, before allocating
    // each (a stored config asking for a huge model fails at once instead of taking the memory).
    std::unordered_map<std::string, Shape> shapes;
    for (const auto& e : f.entries()) shapes.emplace(e.name, e.shape);
    models::ExpectedShapes expect(std::move(shapes), "'" + checkpoint.string() + "'");
    model = models::build_model(meta.config);
  }
  io::LoadOptions lo;
  lo.ignore_prefixes = trainer_only_prefixes();
  lo.ignore_prefixes.push_back(io::kOptimPrefix);
  const io::LoadReport loaded = io::load_arena(model->arena(), f, lo);
  ExportReport r;
  const std::unordered_set<std::string> kept(loaded.loaded.begin(), loaded.loaded.end());
  for (const auto& e : f.entries())
    if (!kept.count(e.name)) r.dropped.push_back(e.name);
  r.tensors = io::save_serving_weights(out, model->arena(), meta.config);
  for (const auto& p : model->arena().parameters()) r.values += p.numel();
  return r;
}

}  // namespace mtrank::train
