// Serving export: a training checkpoint -> a weights-only serving file (`mtrank export`).
//
// A training checkpoint carries what training needs: the optimiser state ("__optim__.*", two
// Adam moments per parameter, i.e. twice the model), the loop position, and tensors only the
// trainer uses ("uwl.log_var" of uncertainty weighting). A server needs the config and the
// model's parameters and buffers. The serving file is io::save_serving_weights' format (see
// io/checkpoint.hpp); serve::Predictor::from_checkpoint loads it and scores exactly like the
// training checkpoint.
#pragma once
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include "mtrank/core/tensor.hpp"

namespace mtrank::train {

/// Tensor-name prefixes a trainer adds to a model's arena (not part of the model).
inline const std::vector<std::string>& trainer_only_prefixes() {
  static const std::vector<std::string> p = {"uwl."};
  return p;
}

struct ExportReport {
  std::size_t tensors = 0;            // tensors written (the model's parameters and buffers)
  Index values = 0;                   // floats written
  std::vector<std::string> dropped;   // tensors of the checkpoint left out (optimiser state, "uwl.*")
};

/// Builds the model from the checkpoint's config (models::build_model), loads every parameter and
/// buffer strictly (each present with its shape; any other tensor than the optimiser state and
/// trainer_only_prefixes() is an error), and writes the serving file to `out` atomically. A
/// serving file is accepted as input (the result is the same file content).
ExportReport export_serving_weights(const std::filesystem::path& checkpoint, const std::filesystem::path& out);

}  // namespace mtrank::train
