// Training checkpoints.
//
// Format (version 1): a checkpoint is ONE safetensors file (see safetensors.hpp), so a single
// atomic rename makes saving all-or-nothing: a crash leaves either the previous checkpoint or
// the new one, never a model from one step with optimiser state from another.
//
//   tensors
//     <parameter name>            every arena tensor (parameters and buffers), F32, under its
//                                 own state_dict name, e.g. "experts.0.layers.0.weight"
//     __optim__.<state name>      optimiser state, F32, e.g. "__optim__.adam.m.fc.weight"
//   __metadata__ (all values are strings)
//     "mtrank.format"       "1"
//     "mtrank.config"       the model config, JSON text
//     "mtrank.train_state"  the trainer's state, JSON text (step, epoch, RNG state, ...)
//     "mtrank.kind"         absent (a training checkpoint) or "serving"
//
// A serving file (save_serving_weights, `mtrank export`) has the same layout without the
// optimiser state and without "mtrank.train_state": the model's parameters and buffers and its
// config, "mtrank.kind" = "serving". read_checkpoint_metadata and the predictor read it like a
// checkpoint; a trainer cannot resume from it.
//
// Because the parameters are stored under their plain names, a checkpoint is also a valid
// weights file: load_arena() and PyTorch (tools/safetensors_torch.py) read it directly, and
// load_arena's strict mode skips the "__optim__." tensors only when told to (load_checkpoint
// does). Other metadata keys are preserved by readers that do not know them.
#pragma once
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/core/arena.hpp"
#include "mtrank/core/tensor.hpp"
#include "mtrank/io/safetensors.hpp"

namespace mtrank::io {

inline constexpr const char* kCheckpointFormat = "1";
inline constexpr const char* kOptimPrefix = "__optim__.";
inline constexpr const char* kTrainingKind = "training";
inline constexpr const char* kServingKind = "serving";

struct CheckpointData {
  /// kTrainingKind or kServingKind (metadata "mtrank.kind"; absent = training).
  std::string kind = kTrainingKind;
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json train_state = nlohmann::json::object();
  /// Optimiser state tensors, named without the "__optim__." prefix.
  std::vector<std::pair<std::string, Tensor>> optimizer_state;

  /// The optimiser tensor named `name`, or nullptr.
  const Tensor* find_optimizer_state(const std::string& name) const;
};

/// Writes arena + optimiser state + config/train_state atomically to `path`.
void save_checkpoint(const std::filesystem::path& path, const ParameterArena& arena, const CheckpointData& data);

/// Loads every arena tensor (strict: each present with its shape, no unknown non-"__optim__."
/// tensor), the optimiser state and the metadata. The arena is untouched when any check fails.
CheckpointData load_checkpoint(const std::filesystem::path& path, ParameterArena& arena);

/// Writes a weights-only serving file atomically: every arena tensor (parameters and buffers)
/// whose name starts with none of `exclude_prefixes`, the config, "mtrank.kind" = "serving"; no
/// optimiser state, no train state. Returns the number of tensors written.
std::size_t save_serving_weights(const std::filesystem::path& path, const ParameterArena& arena,
                                 const nlohmann::json& config, const std::vector<std::string>& exclude_prefixes = {});

/// Reads config and train_state only (no tensor data is read), e.g. to build the model first.
/// optimizer_state is left empty.
CheckpointData read_checkpoint_metadata(const std::filesystem::path& path);
/// The same from a file already open: a caller that then reads the tensors from `file` gets the
/// config and the weights of one version of the file, even if the path is replaced meanwhile.
CheckpointData read_checkpoint_metadata(const SafetensorsFile& file);

}  // namespace mtrank::io
