// The serving weight format belongs to each served model, and so do its packed weight copies:
// two predictors in one process serve different formats at once, and loading (or training)
// other models never disturbs the copies a served model's requests are reading.
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/kernels/bf16.hpp"
#include "mtrank/train/optimizer.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

using namespace mtrank;
using mtrank::testing::feed_config;
using mtrank::testing::feed_request;
using mtrank::testing::row_with_history;

namespace {

Tensor copy_of(ConstMat m) {
  Tensor t(Shape{m.rows, m.cols});
  copy(m, t.matrix());
  return t;
}
bool same(ConstMat m, const Tensor& t) {
  return m.rows == t.shape()[0] && m.cols == t.shape()[1] &&
         std::memcmp(m.data, t.data(), sizeof(float) * static_cast<std::size_t>(t.numel())) == 0;
}
double max_abs_diff(const Tensor& a, const Tensor& b) {
  double d = 0;
  for (Index i = 0; i < a.numel(); ++i) d = std::max(d, std::abs(double(a.data()[i]) - double(b.data()[i])));
  return d;
}

// Requests of 3 candidates (bf16 weights apply: at most kernels::kBf16MaxRows rows), 16 and 41.
std::vector<serve::Request> requests(const serve::Predictor& p) {
  std::vector<serve::Request> r;
  r.push_back(feed_request(p, row_with_history(400), 3));
  r.push_back(feed_request(p, row_with_history(1100), 16));
  r.push_back(feed_request(p, row_with_history(2300), 41));
  return r;
}

std::vector<Tensor> reference(const serve::Predictor& p, const std::vector<serve::Request>& reqs) {
  serve::Predictor::Session s;
  std::vector<Tensor> out;
  for (const auto& r : reqs) out.push_back(copy_of(p.score(r, s).probs));
  return out;
}

}  // namespace

TEST_CASE("serve: predictors with different weight formats score concurrently in their own formats",
          "[serve][weights]") {
  struct Served {
    ServingWeights weights;
    std::shared_ptr<const serve::Predictor> predictor;
    std::vector<Tensor> expect;
  };
  std::vector<ServingWeights> formats = {ServingWeights::f32, ServingWeights::int8};
  if (kernels::bf16_available()) formats.push_back(ServingWeights::bf16);
  else WARN("bf16 not covered: no AVX512_BF16 (or MTRANK_ISA caps below avx512)");

  // One config, one seed: the models hold the same weights and differ only in their serving plan.
  // int8 comes from the config's serving section, the others from PredictorOptions::weights.
  auto build = [](ServingWeights w) {
    nlohmann::json cfg = feed_config("mmoe", 3);
    if (w == ServingWeights::int8) {
      cfg["serving"]["weights"] = "int8";
      return std::make_shared<const serve::Predictor>(models::build_model(cfg));
    }
    return std::make_shared<const serve::Predictor>(models::build_model(cfg), serve::PredictorOptions{.weights = w});
  };
  std::vector<Served> served;
  std::vector<serve::Request> reqs;
  for (ServingWeights w : formats) {
    auto p = build(w);
    REQUIRE(p->serving().weights == w);
    REQUIRE(p->model().serving_weights() == w);
    if (reqs.empty()) reqs = requests(*p);
    // The single-threaded reference comes from a separate predictor of the same format, built and
    // scored before any other model serves.
    served.push_back({w, p, reference(*build(w), reqs)});
  }
  // The formats really differ, and stay close to f32 (int8: per-column scales; bf16: 8 bits).
  for (std::size_t f = 1; f < served.size(); ++f)
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      CAPTURE(serving_weights_name(served[f].weights), i);
      const double d = max_abs_diff(served[f].expect[i], served[0].expect[i]);
      if (served[f].weights == ServingWeights::int8 || i == 0) CHECK(d > 0);  // bf16: small batches only
      if (served[f].weights == ServingWeights::bf16 && i > 0) CHECK(d == 0);
      CHECK(d < 0.05);
    }

  constexpr int kThreads = 6, kRounds = 150;
  std::atomic<long> ok{0}, bad{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::vector<serve::Predictor::Session> sessions(served.size());
      for (int n = 0; n < kRounds; ++n) {
        const std::size_t f = static_cast<std::size_t>(n + t) % served.size(), i = static_cast<std::size_t>(n / 3 + t) % reqs.size();
        try {
          const ConstMat m = served[f].predictor->score(reqs[i], sessions[f]).probs;
          (same(m, served[f].expect[i]) ? ok : bad).fetch_add(1);
        } catch (...) {
          failed.fetch_add(1);
        }
      }
    });
  for (auto& th : threads) th.join();
  CHECK(failed == 0);
  CHECK(bad == 0);
  CHECK(ok == kThreads * kRounds);
}

TEST_CASE("serve: loading and training other models never disturbs a served model's packed weights",
          "[serve][weights]") {
  const auto dir = mtrank::testing::temp_dir("serve_weights_load");
  // Two checkpoints: the served version (a) and another one (b), same architecture.
  for (auto [name, seed] : {std::pair{"a", 21}, std::pair{"b", 22}}) {
    auto m = models::build_model(feed_config("mmoe", static_cast<std::uint64_t>(seed)));
    io::CheckpointData data;
    data.config = m->config();
    io::save_checkpoint(dir / (std::string(name) + ".safetensors"), m->arena(), data);
  }
  const auto path_a = dir / "a.safetensors", path_b = dir / "b.safetensors";
  const ServingWeights w = GENERATE(ServingWeights::f32, ServingWeights::int8);
  CAPTURE(serving_weights_name(w));
  auto served = serve::Predictor::from_checkpoint(path_a, {.weights = w});
  const std::vector<serve::Request> reqs = requests(*served);
  const std::vector<Tensor> expect = reference(*served, reqs);
  const std::vector<Tensor> expect_b = reference(*serve::Predictor::from_checkpoint(path_b, {.weights = w}), reqs);
  for (std::size_t i = 0; i < reqs.size(); ++i) REQUIRE(max_abs_diff(expect[i], expect_b[i]) > 0);

  std::atomic<bool> stop{false};
  std::atomic<long> ok{0}, bad{0}, failed{0};
  std::vector<std::thread> scorers;
  for (int t = 0; t < 4; ++t)
    scorers.emplace_back([&, t] {
      serve::Predictor::Session s;
      for (long n = 0; !stop.load(std::memory_order_relaxed) || n < 20; ++n) {
        const std::size_t i = static_cast<std::size_t>(n + t) % reqs.size();
        try {
          (same(served->score(reqs[i], s).probs, expect[i]) ? ok : bad).fetch_add(1);
        } catch (...) {
          failed.fetch_add(1);
        }
      }
    });
  // Meanwhile: load the same file and another file into other models, score them, train one.
  long loader_bad = 0;
  for (int round = 0; round < 120; ++round) {
    const auto& path = round % 2 ? path_b : path_a;
    const std::vector<Tensor>& want = round % 2 ? expect_b : expect;
    if (round % 4 < 2) {
      auto m = models::build_model(io::read_checkpoint_metadata(path).config);
      m->set_serving_weights(w);
      io::load_arena(m->arena(), io::SafetensorsFile::load(path));
      auto ws = m->make_workspace();
      data::Batch b;
      served->expand(reqs[0], b);
      Tensor out(Shape{b.size, m->num_tasks()});
      m->predict(b, *ws, out.matrix());
      if (!same(out.matrix(), want[0])) ++loader_bad;
      train::Adam opt(train::AdamOptions{.lr = 1e-3});
      opt.step(m->arena());  // training another model: its own weights version moves
      m->arena().mark_weights_changed();
    } else {
      auto p = serve::Predictor::from_checkpoint(path, {.weights = w});
      serve::Predictor::Session s;
      for (std::size_t i = 0; i < reqs.size(); ++i)
        if (!same(p->score(reqs[i], s).probs, want[i])) ++loader_bad;
    }
  }
  stop = true;
  for (auto& th : scorers) th.join();
  INFO("served scores: " << ok << " equal, " << bad << " different, " << failed << " failed");
  CHECK(loader_bad == 0);
  CHECK(failed == 0);
  CHECK(bad == 0);
  CHECK(ok >= 80);
}
