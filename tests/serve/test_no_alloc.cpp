// Steady-state scoring must not touch the heap. This translation unit replaces the global
// operator new/delete (all forms) with counting versions; counting is on only inside the
// measured region, so the rest of the test binary is unaffected.
#include <atomic>
#include <cstdlib>
#include <new>
#include <execinfo.h>
#include <unistd.h>

#include "model_types.hpp"
#include "serve_fixtures.hpp"
#include "testing.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_allocs{0};
std::atomic<std::size_t> g_largest{0};  // the largest single allocation while counting

void* counted_alloc(std::size_t n, std::size_t align = 0) {
  if (g_counting.load(std::memory_order_relaxed)) {
    for (std::size_t m = g_largest.load(std::memory_order_relaxed); n > m && !g_largest.compare_exchange_weak(m, n);) {
    }
    // MTRANK_ALLOC_TRACE=1 prints a backtrace of the third counted allocation (to find the culprit).
    if (g_allocs.fetch_add(1, std::memory_order_relaxed) == 2 && std::getenv("MTRANK_ALLOC_TRACE")) {
      void* bt[16];
      int k = backtrace(bt, 16);
      backtrace_symbols_fd(bt, k, 2);
    }
  }
  if (n == 0) n = 1;
  void* p = align > alignof(std::max_align_t) ? std::aligned_alloc(align, (n + align - 1) / align * align) : std::malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_alloc(n, static_cast<std::size_t>(a)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n); } catch (...) { return nullptr; }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try { return counted_alloc(n); } catch (...) { return nullptr; }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

using namespace mtrank;

TEST_CASE("serve: no heap allocation while scoring after warm-up", "[serve][alloc]") {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer's runtime intercepts operator new itself, so the counting replacement above
  // never runs; the Release and ASan builds run this test.
  WARN("skipped under ThreadSanitizer");
  return;
#endif
  const std::string type = GENERATE(std::string("mmoe"), std::string("shared_bottom"));
  const bool dot = GENERATE(false, true);
  CAPTURE(type, dot);
  auto p = mtrank::testing::feed_predictor(type, 3, dot);
  serve::Predictor::Session s;
  const Index first = mtrank::testing::row_with_history(600), second = mtrank::testing::row_with_history(1400);
  serve::Request big = mtrank::testing::feed_request(*p, first, 64), small = mtrank::testing::feed_request(*p, second, 9);
  data::Batch batch;
  p->expand(big, batch);
  // Warm-up: every request size class once (oneDNN JIT-compiles a GEMM kernel the first time a
  // shape class is seen, allocating then), the largest sizes included.
  p->score(big, s);
  p->score(small, s);
  p->score(batch, s);
  // The counter itself works.
  g_counting = true;
  { auto* leak = new int(3); delete leak; }
  g_counting = false;
  REQUIRE(g_allocs.exchange(0) == 1);

  double sum = 0;
  g_counting = true;
  for (int i = 0; i < 20; ++i) {
    sum += p->score(i % 2 ? big : small, s).fused[0];
    sum += p->score(batch, s).probs(3, 1);
  }
  g_counting = false;
  CHECK(std::isfinite(sum));
  CHECK(g_allocs.exchange(0) == 0);
}

namespace {

/// Counts heap allocations of 40 scoring calls (requests of 64 and 9 candidates, one with
/// per-candidate scenes, and a 64-row batch) after one warm-up call of each, for the example
/// config of `type` (untrained weights: the computation is the same).
void no_alloc_for(const std::string& type, const nlohmann::json& model_patch = nullptr) {
#if defined(__SANITIZE_THREAD__)
  WARN("skipped under ThreadSanitizer");
  return;
#endif
  nlohmann::json cfg = mtrank::testing::shrunk_example_config(type, 1500);
  if (!model_patch.is_null()) cfg["model"].merge_patch(model_patch);
  const cli::TrainTestData data = mtrank::testing::load_config_data(cfg);
  const data::Dataset& d = data.train;
  serve::Predictor p(models::build_model(cfg));
  const serve::RequestLayout& l = p.serving().layout;
  auto with_history = [&](Index from) {
    while (d.sequences[0].length(from) == 0) ++from;
    return from;
  };
  auto range = [](Index a, Index n) {
    std::vector<Index> v(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = a + i;
    return v;
  };
  const Index first = with_history(600), second = with_history(900);
  std::vector<std::int32_t> scenes(64);
  for (std::size_t i = 0; i < scenes.size(); ++i) scenes[i] = static_cast<std::int32_t>(i % 2);
  serve::Request big = mtrank::testing::rows_request(d, l, first, range(first, 64), 1, scenes);
  serve::Request small = mtrank::testing::rows_request(d, l, second, range(second, 9), 0, {});
  REQUIRE(big.sequence_times[0].size() == big.sequences[0].size());
  data::Batch batch;
  d.slice(1000, 1064, batch);
  serve::Predictor::Session s;
  p.score(big, s);
  p.score(small, s);
  p.score(batch, s);
  g_allocs = 0;
  double sum = 0;
  g_counting = true;
  for (int i = 0; i < 20; ++i) {
    sum += p.score(i % 2 ? big : small, s).fused[0];
    sum += p.score(batch, s).probs(3, 0);
  }
  g_counting = false;
  CHECK(std::isfinite(sum));
  CHECK(g_allocs.exchange(0) == 0);
}

}  // namespace

#define NO_ALLOC_CASE(type) \
  TEST_CASE("serve: no heap allocation while scoring after warm-up: " type, "[serve][alloc][model_types]") { no_alloc_for(type); }

NO_ALLOC_CASE("dnn")
NO_ALLOC_CASE("shared_bottom")
NO_ALLOC_CASE("esmm")
NO_ALLOC_CASE("mmoe")
NO_ALLOC_CASE("ple")
NO_ALLOC_CASE("cgc")
NO_ALLOC_CASE("snr_trans")
NO_ALLOC_CASE("snr_aver")
NO_ALLOC_CASE("multi_domain")
NO_ALLOC_CASE("mm")
NO_ALLOC_CASE("din")
NO_ALLOC_CASE("dmt")
NO_ALLOC_CASE("dmt_gru")
NO_ALLOC_CASE("sim")
NO_ALLOC_CASE("co_action")

// Variants of the sequence units that the example configs do not use.
TEST_CASE("serve: no heap allocation while scoring after warm-up: sequence unit variants", "[serve][alloc][model_types]") {
  for (const char* patch : {
           R"({"sequences": [{"name": "long", "fields": ["click_seq", "click_cat_seq"], "search": "soft", "top_k": 4,
                              "heads": 2, "time_mode": "concat", "time_dim": 4}]})",  // sim: soft search, concat times
       }) {
    INFO("sim " << patch);
    no_alloc_for("sim", nlohmann::json::parse(patch));
  }
  for (const char* patch : {
           R"({"sequences": [{"fields": ["click_seq", "click_cat_seq"], "hidden": [16], "activation": "dice",
                              "softmax": true, "normalize_by_length": true}]})",
           R"({"sequences": [{"fields": ["click_seq", "click_cat_seq"], "hidden": [16], "fused": false}]})",
           R"({"backbone": "mmoe", "num_experts": 2, "expert": {"layers": [16]},
               "sequences": [{"name": "items", "fields": ["click_seq"], "query": ["item_id"], "hidden": [8]},
                             {"name": "cats", "fields": ["click_cat_seq"], "query": ["category"], "hidden": [8]}]})",
       }) {
    INFO("din " << patch);
    no_alloc_for("din", nlohmann::json::parse(patch));
  }
  for (const char* patch : {
           R"({"sequences": [{"name": "click", "fields": ["click_seq", "click_cat_seq"], "heads": 2, "ff": 32, "position": "learned"}],
               "bias_net": null})",
           R"({"sequences": [{"name": "click", "fields": ["click_seq", "click_cat_seq"], "heads": 1, "layers": 2, "position": "none"}]})",
       }) {
    INFO("dmt " << patch);
    no_alloc_for("dmt", nlohmann::json::parse(patch));
  }
}

namespace {

/// A model without a feature embedder (as a user's own Model subclass would be): per row and
/// task, the mean of the row's click-sequence ids / 1000 plus the candidate's item id / 100 and
/// the task index. Serving only.
class SequenceMeanModel : public models::Model {
 public:
  explicit SequenceMeanModel(const data::FeatureSchema& schema)
      : Model({{"model", {{"type", "sequence_mean"}}}, {"serving", mtrank::testing::serving_section()}}, schema, 1) {}
  struct Ws : Workspace {
    Tensor out;
  };
  std::unique_ptr<Workspace> make_workspace() const override { return std::make_unique<Ws>(); }
  ConstMat forward(const data::Batch& b, Workspace& ws, const Context&) const override {
    Mat out = ensure(static_cast<Ws&>(ws).out, b.size, num_tasks());
    const Index ns = static_cast<Index>(schema_.sparse.size()), item = schema_.sparse_index("item_id");
    const auto& seq = b.sequences[0];
    for (Index r = 0; r < b.size; ++r) {
      double sum = 0;
      for (auto k = seq.offsets[r]; k < seq.offsets[r + 1]; ++k) sum += static_cast<double>(seq.ids[k]);
      const double len = static_cast<double>(seq.offsets[r + 1] - seq.offsets[r]);
      for (Index t = 0; t < num_tasks(); ++t)
        out(r, t) = static_cast<float>((len ? sum / len / 1000 : 0) + static_cast<double>(b.sparse[r * ns + item]) / 100 + t);
    }
    return out;
  }
  void backward(ConstMat, Workspace&) const override { fail("sequence_mean: serving only"); }
};

}  // namespace

TEST_CASE("serve: a model without a feature embedder scores long sequences x many candidates in bounded chunks",
          "[serve][alloc]") {
#if defined(__SANITIZE_THREAD__)
  WARN("skipped under ThreadSanitizer");
  return;
#endif
  const data::Dataset& d = mtrank::testing::feed();
  serve::Predictor p(std::make_unique<SequenceMeanModel>(d.schema));
  REQUIRE(p.model().feature_embedder() == nullptr);
  // 300 candidates x 10,000 sequence ids (the serving limit): 24 MB of copies if expanded at once.
  serve::Request r = mtrank::testing::feed_request(p, 100, 300);
  const Index L = p.serving().max_sequence_length;
  r.sequences[0].resize(static_cast<std::size_t>(L));
  for (Index k = 0; k < L; ++k) r.sequences[0][static_cast<std::size_t>(k)] = 1 + (k * 7) % 250;
  const std::size_t whole = static_cast<std::size_t>(r.num_candidates * L) * sizeof(std::int64_t);
  REQUIRE(whole > serve::Predictor::kExpandBudgetBytes);
  const Index chunk = serve::Predictor::expand_chunk_rows(r);
  CHECK(chunk > 1);
  CHECK(chunk < r.num_candidates);

  // The reference: the whole expanded batch scored at once.
  data::Batch batch;
  p.expand(r, batch);
  serve::Predictor::Session ref_session, s;
  const serve::Scores ref = p.score(batch, ref_session);

  g_largest = 0;
  g_counting = true;
  const serve::Scores got = p.score(r, s);
  g_counting = false;
  g_allocs = 0;
  // The largest buffer is one chunk's sequence copy, within the budget (not the 24 MB of all rows).
  CHECK(g_largest.load() <= serve::Predictor::kExpandBudgetBytes + 4096);
  REQUIRE(got.probs.rows == r.num_candidates);
  for (Index c = 0; c < r.num_candidates; ++c) {
    for (Index k = 0; k < p.num_tasks(); ++k) REQUIRE(got.probs(c, k) == ref.probs(c, k));
    REQUIRE(got.fused[static_cast<std::size_t>(c)] == ref.fused[static_cast<std::size_t>(c)]);
  }
}
