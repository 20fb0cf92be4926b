// The seed's "MM" model: an SNR-Trans backbone with one tower per base task, followed by a
// learned fusion head over the task outputs that produces one fused score, trained against a
// fused label (a schema task of its own, e.g. a weighted sum of the base labels made by
// add_fused_task). See docs/models.md ("MM") for the reading of the seed.
//
//   z_1..z_{K-1} = towers(SNR(x))                       (base task logits / predictions)
//   q_k = sigmoid(z_k) for binary base tasks, z_k for regression ones (the head fuses task
//         outputs on the probability scale, as score fusion does)
//   mode "mlp":          s = Mlp([q; u])                 u = the user field's embedding in x
//   mode "user_weights": s = sum_k w_k(u) q_k + c,  w(u) = softplus(Mlp(u))  (per-user weights)
//   out[:, base tasks] = z, out[:, fused task] = s
// With detach (default) the fused loss does not reach the base towers and backbone: the head
// fuses the task outputs, it does not re-train them (u still receives its gradient).
//
// Parameters: subnets.*, routes.* (SNR-Trans), towers.{j}.* (j-th base task in schema order),
// fusion.layers.* (the head's Mlp), fusion.bias [1] (user_weights).
#pragma once
#include <string>
#include <vector>

#include "mtrank/data/batch.hpp"
#include "mtrank/models/multi_domain.hpp"
#include "mtrank/models/multitask_net.hpp"

namespace mtrank::models {

enum class FusionMode { mlp, user_weights };

struct MmOptions {
  Index in = 0;                   // width of x
  Index fused_task = 0;           // output column of the fused score; the other K-1 are base tasks
  Index num_tasks = 0;            // K (base tasks + 1)
  blocks::SnrOptions<GatedExpertOptions> snr;  // in / num_tasks are set by the net
  TowerOptions tower{.hidden = {16}};
  FusionMode mode = FusionMode::mlp;
  std::vector<Index> hidden{16};  // fusion Mlp hidden widths
  Index user_offset = 0, user_width = 0;  // columns of u in x (width 0: no user input; mlp mode only)
  bool detach = true;
  std::vector<bool> binary;       // per output column: binary task (q = sigmoid(z)); empty = all binary
};

template <class T = float>
class MmNet {
 public:
  using Scalar = T;
  using Backbone = blocks::SnrBackbone<GatedExpert<T>, blocks::SnrKind::trans>;
  using Base = MultiTaskNet<T, Backbone>;
  struct Workspace {
    typename Base::Workspace base;
    typename nn::Mlp<T>::Workspace head;
    TensorT<T> fin, out, d_base, d_head, dx, dpre, w, q, dq;
  };

  MmNet(ParameterArenaT<T>& arena, MmOptions opt);
  MatrixView<const T> forward(MatrixView<const T> x, Workspace& ws, const Context& ctx = {}) const;
  MatrixView<const T> backward(MatrixView<const T> d_out, Workspace& ws, bool need_dx = true) const;
  double penalty(double weight) const { return base_.penalty(weight); }
  Index num_tasks() const { return opt_.num_tasks; }
  const MmOptions& options() const { return opt_; }

 private:
  bool binary(Index j) const { return opt_.binary.empty() || opt_.binary[static_cast<std::size_t>(base_cols_[j])]; }
  MmOptions opt_;
  std::vector<Index> base_cols_;  // output column of base task j
  Base base_;
  nn::Mlp<T> head_;
  Parameter<T>* bias_ = nullptr;
};

/// Appends a regression task `name` (MSE by default) whose label is sum_k w_k y_k / sum_k w_k over the tasks named in
/// `weights` (labels must be in [0, 1]; a row whose weighted labels are not all present gets
/// mask 0 for the fused task). The oracle column, when present, gets the same combination.
data::Dataset add_fused_task(const data::Dataset& d, const std::string& name,
                             const std::vector<std::pair<std::string, double>>& weights);

/// Model keys read by parse_mm, and the parser (type "mm"): {"stages", "task_subnet", "code",
/// "fusion": {"task", "mode", "hidden", "user_field", "detach"}}.
const std::vector<const char*>& mm_keys();
MmOptions parse_mm(const nlohmann::json& m, const std::string& path, const data::FeatureSchema& schema,
                   const TowerOptions& tower, std::string& user_field);

extern template class MmNet<float>;
extern template class MmNet<double>;

}  // namespace mtrank::models
