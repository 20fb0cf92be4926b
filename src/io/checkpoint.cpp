#include "mtrank/io/checkpoint.hpp"

#include "mtrank/core/error.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/io/safetensors.hpp"

namespace mtrank::io {
namespace {

std::string optim_name(const std::string& name) { return std::string(kOptimPrefix) + name; }

CheckpointData read_metadata(const SafetensorsFile& f) {
  const auto& md = f.metadata();
  auto get = [&](const char* key) -> const std::string& {
    auto it = md.find(key);
    if (it == md.end()) fail(f.what(), ": not an mtrank checkpoint (metadata key \"", key, "\" is missing)");
    return it->second;
  };
  const std::string& format = get("mtrank.format");
  if (format != kCheckpointFormat)
    fail(f.what(), ": checkpoint format \"", format, "\" is not supported (expected \"", kCheckpointFormat, "\")");
  CheckpointData d;
  if (auto it = md.find("mtrank.kind"); it != md.end()) {
    if (it->second != kTrainingKind && it->second != kServingKind)
      fail(f.what(), ": metadata \"mtrank.kind\" is \"", it->second, "\" (expected \"", kTrainingKind, "\" or \"",
           kServingKind, "\")");
    d.kind = it->second;
  }
  d.config = parse_json(get("mtrank.config"), f.what() + ": metadata \"mtrank.config\"");
  if (d.kind == kTrainingKind || md.count("mtrank.train_state"))
    d.train_state = parse_json(get("mtrank.train_state"), f.what() + ": metadata \"mtrank.train_state\"");
  return d;
}

std::string dump_json(const nlohmann::json& j, const char* what) {
  try {
    return j.dump();
  } catch (const nlohmann::json::exception& e) {
    fail("save_checkpoint: ", what, " cannot be written as JSON: ", e.what());
  }
}

}  // namespace

const Tensor* CheckpointData::find_optimizer_state(const std::string& name) const {
  for (const auto& [n, t] : optimizer_state)
    if (n == name) return &t;
  return nullptr;
}

void save_checkpoint(const std::filesystem::path& path, const ParameterArena& arena, const CheckpointData& data) {
  SafetensorsWriter w;
  add_arena(w, arena);
  for (const auto& [name, t] : data.optimizer_state) {
    require(!name.empty(), "save_checkpoint: optimiser state tensor with an empty name");
    w.add(optim_name(name), t.view());
  }
  w.set_metadata("mtrank.format", kCheckpointFormat);
  w.set_metadata("mtrank.config", dump_json(data.config, "config"));
  w.set_metadata("mtrank.train_state", dump_json(data.train_state, "train_state"));
  w.save(path);
}

std::size_t save_serving_weights(const std::filesystem::path& path, const ParameterArena& arena,
                                 const nlohmann::json& config, const std::vector<std::string>& exclude_prefixes) {
  SafetensorsWriter w;
  std::size_t n = 0;
  for (const auto& p : arena.parameters()) {
    bool skip = false;
    for (const auto& pre : exclude_prefixes) skip = skip || p.name.rfind(pre, 0) == 0;
    if (skip) continue;
    w.add(p.name, TensorView<const float>{p.value, p.shape});
    ++n;
  }
  w.set_metadata("mtrank.format", kCheckpointFormat);
  w.set_metadata("mtrank.kind", kServingKind);
  w.set_metadata("mtrank.config", dump_json(config, "config"));
  w.save(path);
  return n;
}

CheckpointData load_checkpoint(const std::filesystem::path& path, ParameterArena& arena) {
  SafetensorsFile f = SafetensorsFile::load(path);
  CheckpointData d = read_metadata(f);
  const std::string prefix = kOptimPrefix;
  // Read the optimiser state before touching the arena, so every failure leaves it as it was.
  for (const auto& e : f.entries()) {
    if (e.name.compare(0, prefix.size(), prefix) != 0) continue;
    d.optimizer_state.emplace_back(e.name.substr(prefix.size()), f.to_float(e.name));
  }
  LoadOptions opt;
  opt.ignore_prefixes = {prefix};
  load_arena(arena, f, opt);
  return d;
}

CheckpointData read_checkpoint_metadata(const std::filesystem::path& path) {
  return read_metadata(SafetensorsFile::load(path));
}

CheckpointData read_checkpoint_metadata(const SafetensorsFile& file) { return read_metadata(file); }

}  // namespace mtrank::io
