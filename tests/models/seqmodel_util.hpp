// Helpers shared by the interest-model tests (DIN ranker, DMT, SIM ranker).
#pragma once
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/data/simulator.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/train/metrics.hpp"
#include "mtrank/train/optimizer.hpp"
#include "mtrank/train/trainer.hpp"
#include "testing.hpp"

namespace seqtest {

using namespace mtrank;
using nlohmann::json;

/// A small simulated feed (cached per max_seq_len).
inline const data::Dataset& feed(Index max_seq_len = 20, Index impressions = 12000) {
  static std::map<std::pair<Index, Index>, data::Dataset> cache;
  auto key = std::make_pair(max_seq_len, impressions);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  data::FeedSimulatorOptions o;
  o.impressions = impressions;
  o.users = 300;
  o.items = 600;
  o.max_seq_len = max_seq_len;
  o.seed = 5;
  return cache.emplace(key, data::make_feed_dataset(o)).first->second;
}

inline json config(const data::FeatureSchema& schema, json model) {
  return {{"schema", json(schema)}, {"model", std::move(model)}, {"seed", 7}};
}

/// Metrics of serve() predictions (bias networks dropped) on a dataset.
inline std::vector<train::TaskMetrics> serve_metrics(const models::Model& model, const data::Dataset& d) {
  auto ws = model.make_workspace();
  const Index K = d.schema.num_tasks();
  Tensor probs(Shape{d.rows, K});
  data::Batch b;
  for (Index s = 0; s < d.rows; s += 2048) {
    const Index e = std::min(d.rows, s + 2048);
    d.slice(s, e, b);
    model.predict(b, *ws, probs.matrix().row_block(s, e - s));
  }
  std::vector<train::TaskKind> kinds;
  std::vector<std::string> names;
  for (auto& t : d.schema.tasks) {
    kinds.push_back(t.kind);
    names.push_back(t.name);
  }
  return train::evaluate_tasks(probs.matrix(), d.labels.matrix(), d.label_mask.matrix(), d.user, kinds, names);
}

struct FitResult {
  std::vector<train::EpochRecord> hist;
  double before_loss = 0;
};

inline FitResult fit(models::Model& model, const data::Dataset& train, const data::Dataset& test, Index epochs = 2,
                     double lr = 3e-3) {
  auto opt = train::make_optimizer(json{{"type", "adam"}, {"lr", lr}});
  train::Trainer trainer(model, *opt, {.batch_size = 256, .epochs = epochs, .seed = 3, .progress = 2});
  FitResult r;
  r.before_loss = trainer.evaluate(test).first;
  r.hist = trainer.fit(train, &test);
  return r;
}

/// Central finite difference of sum_k w_k * sum_b out(b, k) (forward in inference mode) with
/// respect to one value of parameter `name`, against backward(). Returns {analytic, numeric}.
inline std::pair<double, double> grad_pair(models::Model& model, const data::Batch& batch, const std::string& name,
                                           Index index, float eps = 1e-2f) {
  auto ws = model.make_workspace();
  auto& p = model.arena().at(name);
  auto objective = [&] {
    auto o = model.forward(batch, *ws, Context::inference());
    double s = 0;
    for (Index b = 0; b < o.rows; ++b)
      for (Index k = 0; k < o.cols; ++k) s += (k + 1) * double(o(b, k));
    return s;
  };
  model.arena().zero_grad();
  auto o = model.forward(batch, *ws, Context::inference());
  Tensor d(Shape{o.rows, o.cols});
  for (Index b = 0; b < o.rows; ++b)
    for (Index k = 0; k < o.cols; ++k) d[b * o.cols + k] = float(k + 1);
  model.backward(d.matrix(), *ws);
  double analytic = 0;
  if (p.sparse) {
    const Index w = p.shape.numel() / p.shape[0];
    const auto& rows = p.sparse_grad.rows();
    for (std::size_t i = 0; i < rows.size(); ++i)
      if (rows[i] == index / w) analytic = p.sparse_grad.values()[i * w + index % w];
  } else {
    analytic = p.grad[index];
  }
  const float saved = p.value[index];
  p.value[index] = saved + eps;
  const double lp = objective();
  p.value[index] = saved - eps;
  const double lm = objective();
  p.value[index] = saved;
  return {analytic, (lp - lm) / (2 * eps)};
}

/// A batch of B samples in the simulator's schema with explicit click sequences (item ids);
/// categories follow item % categories, times are 0.5 days per step back.
inline data::Batch make_batch(const data::FeatureSchema& s, const std::vector<std::vector<std::int64_t>>& seqs,
                              const std::vector<std::int64_t>& items) {
  data::Batch b;
  b.size = static_cast<Index>(items.size());
  const Index ns = static_cast<Index>(s.sparse.size()), nd = static_cast<Index>(s.dense.size());
  const Index cats = s.sparse[static_cast<std::size_t>(s.sparse_index("category"))].vocab;
  for (Index i = 0; i < b.size; ++i)
    for (Index f = 0; f < ns; ++f) {
      const std::string& n = s.sparse[f].name;
      std::int64_t v = (i * 7 + f) % s.sparse[f].vocab;
      if (n == "item_id") v = items[i];
      if (n == "category") v = items[i] % cats;
      b.sparse.push_back(v);
    }
  b.dense = Tensor(Shape{b.size, nd});
  for (Index i = 0; i < b.size * nd; ++i) b.dense[i] = 0.1f * float(i % 7) - 0.3f;
  b.sequences.resize(s.sequences.size());
  for (std::size_t q = 0; q < s.sequences.size(); ++q) {
    auto& col = b.sequences[q];
    const bool cat = s.sequences[q].table == "category";
    for (Index i = 0; i < b.size; ++i) {
      const auto& seq = seqs[static_cast<std::size_t>(i)];
      for (std::size_t t = 0; t < seq.size(); ++t) {
        col.ids.push_back(cat ? seq[t] % cats : seq[t]);
        col.times.push_back(0.5f * float(seq.size() - t));
      }
      col.offsets.push_back(static_cast<std::int64_t>(col.ids.size()));
    }
  }
  b.labels = Tensor(Shape{b.size, s.num_tasks()}, 0.0f);
  b.user.assign(static_cast<std::size_t>(b.size), 0);
  b.scene.assign(static_cast<std::size_t>(b.size), 0);
  return b;
}

}  // namespace seqtest
