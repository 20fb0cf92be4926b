// Data-parallel training steps (train/trainer.hpp, models::make_gradient_replica): a replica
// shares the model's weights and owns its gradients; a step over 2 slices gives the one-slice
// gradients up to float summation order (dense and sparse rows), is bit-identical run to run,
// keeps buffers following slice 0, and falls back to one slice for small batches, PCGrad and
// data_parallel_min_rows = 0.
//
// Cases that start OpenMP teams are skipped under ThreadSanitizer (MTRANK_SKIP_OPENMP_TEAMS_UNDER_TSAN
// in testing.hpp: libgomp's fork/join is invisible to TSan).
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include "mtrank/core/threading.hpp"
#include "mtrank/data/simulator.hpp"
#include "mtrank/train/trainer.hpp"
#include "testing.hpp"

using namespace mtrank;
using nlohmann::json;
using Catch::Matchers::Contains;

namespace {

using mtrank::testing::ThreadsGuard;

// Sparse, dense and sequence fields: embeddings (sparse rows) and dense layers both get gradients.
const data::Dataset& feed() {
  static const data::Dataset d =
      data::make_feed_dataset({.users = 80, .items = 200, .impressions = 1200, .seed = 5});
  return d;
}

std::unique_ptr<models::Model> build(const json& model) {
  return models::build_model({{"schema", json(feed().schema)}, {"model", model}, {"seed", 9}});
}

json mmoe_json() {
  return json::parse(R"({"type": "mmoe", "num_experts": 3, "expert": {"layers": [32, 16]}, "tower": {"hidden": [8]}})");
}

data::Batch first_rows(Index n) {
  std::vector<Index> idx(static_cast<std::size_t>(n));
  for (Index i = 0; i < n; ++i) idx[static_cast<std::size_t>(i)] = i;
  data::Batch b;
  feed().gather(idx, b);
  return b;
}

/// max |a - b| / max(|a|) over a dense gradient or value tensor.
double rel_diff(const float* a, const float* b, Index n) {
  double diff = 0, scale = 1e-12;
  for (Index i = 0; i < n; ++i) {
    diff = std::max(diff, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(a[i])));
  }
  return diff / scale;
}

std::map<Index, std::vector<float>> sparse_rows(const Parameter<float>& p) {
  std::map<Index, std::vector<float>> m;
  const Index w = p.sparse_grad.width();
  const auto& rows = p.sparse_grad.rows();
  for (std::size_t k = 0; k < rows.size(); ++k)
    m[rows[k]].assign(p.sparse_grad.values() + static_cast<Index>(k) * w,
                      p.sparse_grad.values() + static_cast<Index>(k + 1) * w);
  return m;
}

}  // namespace

TEST_CASE("make_gradient_replica shares trainable values and owns gradients and buffers", "[train][parallel]") {
  json m = mmoe_json();
  m["tower"]["batch_norm"] = true;
  auto model = build(m);
  auto replica = models::make_gradient_replica(*model);
  std::size_t trainable = 0, buffers = 0, sparse = 0;
  for (const auto& p : replica->arena().parameters()) {
    const Parameter<float>& src = model->arena().at(p.name);
    REQUIRE(p.shape == src.shape);
    if (p.trainable) {
      ++trainable;
      CHECK(p.value == src.value);
      if (p.sparse) ++sparse;
      else CHECK(p.grad != src.grad);
    } else {
      ++buffers;
      CHECK(p.value != src.value);
      CHECK(std::memcmp(p.value, src.value, sizeof(float) * static_cast<std::size_t>(p.numel())) == 0);
    }
  }
  CHECK(trainable > 0);
  CHECK(sparse > 0);
  CHECK(buffers > 0);
  CHECK(replica->arena().parameters().size() == model->arena().parameters().size());
  CHECK(replica->arena().value_source() == &model->arena());

  // A value written through the model is seen by the replica; a gradient is not.
  Parameter<float>& w = model->arena().at("towers.0.layers.0.weight");
  w.value[0] = 0.125f;
  w.grad[0] = 3.0f;
  CHECK(replica->arena().at("towers.0.layers.0.weight").value[0] == 0.125f);
  CHECK(replica->arena().at("towers.0.layers.0.weight").grad[0] != 3.0f);
}

TEST_CASE("share_values_from rejects mismatched arenas", "[train][parallel]") {
  ParameterArena source(1);
  source.add("a", Shape{2, 3});
  ParameterArena replica(1);
  replica.share_values_from(source);
  CHECK_THROWS_WITH(replica.add("b", Shape{2}), Contains("'b' has no counterpart"));
  CHECK_THROWS_WITH(replica.add("a", Shape{3, 2}), Contains("'a' has shape"));
  CHECK_THROWS_WITH(replica.add("a", Shape{2, 3}, {.trainable = false}), Contains("differs from the source in kind"));
  ParameterArena used(1);
  used.add("x", Shape{1});
  CHECK_THROWS_WITH(used.share_values_from(source), Contains("before the first add()"));
}

TEST_CASE("make_gradient_replica rejects a model it cannot rebuild", "[train][parallel]") {
  struct Custom final : models::Model {
    Custom() : Model(json{{"custom", true}}, data::FeatureSchema{}, 1) {}
    std::unique_ptr<Workspace> make_workspace() const override { return std::make_unique<Workspace>(); }
    ConstMat forward(const data::Batch&, Workspace&, const Context&) const override { return {}; }
    void backward(ConstMat, Workspace&) const override {}
  } custom;
  CHECK_THROWS_WITH(models::make_gradient_replica(custom), Contains("make_gradient_replica: cannot rebuild"));
}

TEST_CASE("a data-parallel step gives the one-slice gradients", "[train][parallel]") {
  MTRANK_SKIP_OPENMP_TEAMS_UNDER_TSAN();
  for (const char* kind : {"mmoe", "mmoe+uwl", "shared_bottom"}) {
    CAPTURE(kind);
    json m = std::string(kind) == "shared_bottom"
                 ? json::parse(R"({"type": "shared_bottom", "bottom": {"layers": [24]}, "tower": {"hidden": [8]}})")
                 : mmoe_json();
    const bool uwl = std::string(kind) == "mmoe+uwl";
    auto one = build(m), two = build(m);
    train::Sgd sgd_one({.lr = 0.05}), sgd_two({.lr = 0.05});
    const train::TrainerOptions opt{.batch_size = 256, .seed = 4, .uwl = uwl, .progress = 2};
    train::Trainer t_one(*one, sgd_one, opt), t_two(*two, sgd_two, opt);
    const data::Batch batch = first_rows(301);  // odd: slices of 150 and 151 rows

    double loss_one = 0, loss_two = 0;
    {
      ThreadsGuard g(1);
      loss_one = t_one.train_step(batch);
      CHECK(t_one.last_slices() == 1);
    }
    {
      ThreadsGuard g(2);
      loss_two = t_two.train_step(batch);
      CHECK(t_two.last_slices() == 2);
    }
    CHECK(std::abs(loss_one - loss_two) <= 1e-6 * std::abs(loss_one));

    std::size_t dense = 0, sparse = 0;
    for (const auto& p : one->arena().parameters()) {
      if (!p.trainable) continue;
      CAPTURE(p.name);
      const Parameter<float>& q = two->arena().at(p.name);
      if (p.sparse) {
        ++sparse;
        const auto a = sparse_rows(p), b = sparse_rows(q);
        REQUIRE(a.size() == b.size());
        for (const auto& [row, va] : a) {
          REQUIRE(b.count(row) == 1);
          CHECK(rel_diff(va.data(), b.at(row).data(), static_cast<Index>(va.size())) < 1e-4);
        }
      } else {
        ++dense;
        CHECK(rel_diff(p.grad, q.grad, p.numel()) < 1e-4);
        CHECK(rel_diff(p.value, q.value, p.numel()) < 1e-5);
      }
    }
    CHECK(dense > 4);
    CHECK(sparse > 0);
  }
}

TEST_CASE("data-parallel training is bit-identical for the same thread count", "[train][parallel]") {
  MTRANK_SKIP_OPENMP_TEAMS_UNDER_TSAN();
  ThreadsGuard g(2);
  json m = mmoe_json();
  m["tower"]["dropout"] = 0.2;  // per-slice RNG streams
  auto run = [&] {
    auto model = build(m);
    train::Adam adam({.lr = 1e-2});
    train::Trainer t(*model, adam, {.batch_size = 300, .epochs = 2, .seed = 7, .progress = 2});
    t.fit(feed());
    std::vector<float> w;
    for (const auto& p : model->arena().parameters()) w.insert(w.end(), p.value, p.value + p.numel());
    return w;
  };
  const auto a = run(), b = run();
  REQUIRE(a.size() == b.size());
  CHECK(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0);
}

TEST_CASE("data-parallel buffers follow slice 0", "[train][parallel]") {
  MTRANK_SKIP_OPENMP_TEAMS_UNDER_TSAN();
  json m = mmoe_json();
  m["tower"]["batch_norm"] = true;
  auto two = build(m), slice0 = build(m);
  train::Sgd sgd_two({.lr = 0.05}), sgd_slice0({.lr = 0.05});
  train::Trainer t_two(*two, sgd_two, {.batch_size = 256, .progress = 2});
  train::Trainer t_slice0(*slice0, sgd_slice0, {.batch_size = 256, .progress = 2});
  const data::Batch batch = first_rows(256);
  {
    ThreadsGuard g(2);
    t_two.train_step(batch);
    REQUIRE(t_two.last_slices() == 2);
  }
  t_slice0.train_step(first_rows(128));  // the rows of slice 0, one thread
  std::size_t buffers = 0;
  for (const auto& p : two->arena().parameters()) {
    if (p.trainable) continue;
    ++buffers;
    CAPTURE(p.name);
    const Parameter<float>& q = slice0->arena().at(p.name);
    CHECK(std::memcmp(p.value, q.value, sizeof(float) * static_cast<std::size_t>(p.numel())) == 0);
  }
  CHECK(buffers > 0);
}

TEST_CASE("data-parallel steps fall back to one slice where they must", "[train][parallel]") {
  MTRANK_SKIP_OPENMP_TEAMS_UNDER_TSAN();
  ThreadsGuard g(2);
  auto model = build(mmoe_json());
  train::Sgd sgd({.lr = 0.01});
  {
    train::Trainer t(*model, sgd, {.batch_size = 256, .progress = 2});
    t.train_step(first_rows(100));  // < 2 x 64 rows
    CHECK(t.last_slices() == 1);
    t.train_step(first_rows(128));
    CHECK(t.last_slices() == 2);
  }
  {
    train::Trainer t(*model, sgd, {.batch_size = 256, .data_parallel_min_rows = 0, .progress = 2});
    t.train_step(first_rows(256));
    CHECK(t.last_slices() == 1);
  }
  {
    train::Trainer t(*model, sgd, {.batch_size = 256, .pcgrad = true, .progress = 2});
    t.train_step(first_rows(256));
    CHECK(t.last_slices() == 1);
  }
  CHECK_THROWS_WITH(train::Trainer(*model, sgd, {.data_parallel_min_rows = -1}),
                    Contains("trainer.data_parallel_min_rows"));
}

TEST_CASE("Trainer::evaluate scores row slices on every thread and agrees with one thread", "[train][parallel]") {
  MTRANK_SKIP_OPENMP_TEAMS_UNDER_TSAN();
  auto model = build(mmoe_json());
  train::Sgd sgd({.lr = 0.01});
  train::Trainer t(*model, sgd, {.eval_batch_size = 500, .progress = 2});
  const auto one = t.evaluate(feed());
  std::pair<double, std::vector<train::TaskMetrics>> two;
  {
    ThreadsGuard g(2);
    two = t.evaluate(feed());
  }
  CHECK(std::abs(one.first - two.first) <= 1e-6 * std::abs(one.first));
  REQUIRE(one.second.size() == two.second.size());
  for (std::size_t k = 0; k < one.second.size(); ++k) {
    CAPTURE(k);
    CHECK(one.second[k].count == two.second[k].count);
    CHECK(std::abs(one.second[k].auc - two.second[k].auc) <= 1e-6);
    CHECK(std::abs(one.second[k].log_loss - two.second[k].log_loss) <= 1e-6);
  }
}
