// Co-action features (CAN, Bian et al. WSDM 2022) for any model: FeatureEmbedder appends, after
// its other columns, one CoActionUnit output per input field,
//   x = [... ; CAN(P_item, u_1); CAN(P_item, u_2); ...]
// where P_item = co_action.<item_field>.weight[item] is reshaped into the micro-MLP's weights
// (blocks/co_action.hpp), a sparse input u is its own co-action embedding
// co_action.<field>.weight[id] (L = 1) and a sequence input runs every one of its most recent
// max_len items through the micro-MLP and sums the outputs. These tables are separate from the
// main embeddings; their gradients are sparse rows. One P_item serves every input.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "mtrank/blocks/co_action.hpp"
#include "mtrank/core/arena.hpp"
#include "mtrank/data/batch.hpp"

namespace mtrank::models {

struct CoActionFeatureOptions {
  std::string item_field;           // a sparse field; empty = no co-action features
  std::vector<std::string> inputs;  // sparse or sequence fields (user side)
  Index dim = 4;                    // width of each input's co-action embedding
  blocks::CoActionOptions unit;     // micro-MLP (unit.in is set to dim)
  // Co-action tables are products of two learned factors; N(0, 1e-4^2) (the main tables'
  // default) leaves both factors and their gradients near zero, so they get a wider init.
  double init_std = 0.1;
  bool enabled() const { return !item_field.empty(); }
};

template <class T = float>
class CoActionFeatures {
 public:
  using Scalar = T;
  struct Workspace {
    std::vector<Index> item_rows;
    TensorT<T> p, dp;
    std::vector<TensorT<T>> x;                // per input [B*L, dim]
    std::vector<std::vector<Index>> rows;     // per input: table row per position (-1 = padding)
    std::vector<std::vector<Index>> lengths;  // per sequence input
    std::vector<typename blocks::CoActionUnit<T>::Workspace> units;
  };

  CoActionFeatures() = default;
  CoActionFeatures(ParameterArenaT<T>& arena, std::string_view prefix, const data::FeatureSchema& schema,
                   CoActionFeatureOptions opt);

  /// Writes the co-action block into out [B, out_features()] (caller memory, e.g. columns of x).
  void forward(const data::Batch& batch, MatrixView<T> out, Workspace& ws) const;
  /// dy [B, out_features()] -> sparse row gradients of the co-action tables.
  void backward(MatrixView<const T> dy, Workspace& ws) const;

  bool enabled() const { return opt_.enabled(); }
  Index out_features() const { return static_cast<Index>(inputs_.size()) * unit_.out_features(); }
  const CoActionFeatureOptions& options() const { return opt_; }

 private:
  struct Input {
    std::string name;
    bool sequence = false;
    std::size_t field = 0;  // index into schema.sparse or schema.sequences
    Index vocab = 0, max_len = 1, oov_row = -1;
    bool hash = false;
    Parameter<T>* table = nullptr;
  };
  CoActionFeatureOptions opt_;
  blocks::CoActionUnit<T> unit_;
  std::size_t item_field_ = 0;
  Index item_vocab_ = 0, num_sparse_ = 0, item_oov_ = -1;
  bool item_hash_ = false;
  Parameter<T>* item_table_ = nullptr;
  std::vector<Input> inputs_;
};

/// Parses a model config's "co_action" section (path e.g. "config.model.co_action"):
/// {"item_field", "inputs", "dim", "micro_mlp", "orders", "order_independent", "activation",
///  "activate_last", "bias", "concat_layers", "sum_orders", "init_std"}. Errors name the field.
CoActionFeatureOptions parse_co_action(const nlohmann::json& j, const std::string& path, const data::FeatureSchema& schema);

extern template class CoActionFeatures<float>;
extern template class CoActionFeatures<double>;

}  // namespace mtrank::models
