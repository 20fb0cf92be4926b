#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "mtrank/core/threading.hpp"
#include "mtrank/train/optimizer.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::train;

namespace {

const float kW0[5] = {0.5f, -1.0f, 0.25f, 2.0f, -0.75f};
const float kGrads[3][5] = {
    {0.1f, -0.2f, 0.3f, -0.05f, 0.0f},
    {-0.3f, 0.1f, 0.2f, 0.4f, -0.1f},
    {0.05f, 0.05f, -0.6f, 0.2f, 0.25f},
};

struct ReferenceCase {
  const char* config;
  float expected[3][5];
};

// Weights after each of three steps from W0 with kGrads. torch.optim for SGD/Adam/AdamW/Adagrad,
// McMahan et al.'s formulas in float64 for FTRL.
const ReferenceCase kReference[] = {
    {"{\"type\": \"sgd\", \"lr\": 0.1}",
     {{0.49000001f, -0.980000019f, 0.219999999f, 2.00500011f, -0.75f}, {0.520000041f, -0.99000001f, 0.200000003f, 1.96500015f, -0.74000001f}, {0.515000045f, -0.995000005f, 0.26000002f, 1.94500017f, -0.764999986f}}},
    {"{\"type\": \"sgd\", \"lr\": 0.1, \"momentum\": 0.9, \"dampening\": 0.1, \"weight_decay\": 0.01}",
     {{0.489499986f, -0.978999972f, 0.219750002f, 2.00300002f, -0.749249995f}, {0.50660944f, -0.968218863f, 0.174327224f, 1.9678973f, -0.738900661f}, {0.517051995f, -0.962144494f, 0.187289834f, 1.91653371f, -0.751421273f}}},
    {"{\"type\": \"sgd\", \"lr\": 0.05, \"momentum\": 0.8, \"nesterov\": true, \"weight_decay\": 0.05}",
     {{0.488750011f, -0.977500021f, 0.221874997f, 1.99549997f, -0.746625006f}, {0.509550631f, -0.974101245f, 0.192876562f, 1.94892025f, -0.733065188f}, {0.508375645f, -0.969453812f, 0.231253624f, 1.90487731f, -0.746911824f}}},
    {"{\"type\": \"adam\", \"lr\": 0.01}",
     {{0.49000001f, -0.99000001f, 0.239999995f, 2.00999999f, -0.75f}, {0.49494192f, -0.987336636f, 0.230296478f, 2.00344682f, -0.742558658f}, {0.497716904f, -0.986722767f, 0.231912121f, 1.99606907f, -0.746354938f}}},
    {"{\"type\": \"adam\", \"lr\": 0.02, \"betas\": [0.8, 0.99], \"eps\": 1e-06, \"weight_decay\": 0.1}",
     {{0.480000138f, -0.980000079f, 0.230000064f, 1.98000014f, -0.730000257f}, {0.487064391f, -0.967502952f, 0.210727036f, 1.96174085f, -0.710616589f}, {0.487380892f, -0.956360877f, 0.21462059f, 1.94296169f, -0.710209846f}}},
    {"{\"type\": \"adamw\", \"lr\": 0.01, \"weight_decay\": 0.1}",
     {{0.489500016f, -0.989000022f, 0.239749998f, 2.00800014f, -0.749249995f}, {0.493952423f, -0.985347688f, 0.229806736f, 1.99943888f, -0.741059422f}, {0.496233463f, -0.983748496f, 0.231192574f, 1.99006176f, -0.744114637f}}},
    {"{\"type\": \"adagrad\", \"lr\": 0.1}",
     {{0.399999976f, -0.899999976f, 0.150000006f, 2.0999999f, -0.75f}, {0.494868308f, -0.944721341f, 0.0945299864f, 2.000772f, -0.649999976f}, {0.479250938f, -0.966543138f, 0.180244267f, 1.95632756f, -0.742847681f}}},
    {"{\"type\": \"adagrad\", \"lr\": 0.1, \"lr_decay\": 0.01, \"weight_decay\": 0.05, \"initial_accumulator_value\": 0.1}",
     {{0.463239282f, -0.937982619f, 0.179709807f, 1.98438263f, -0.73822397f}, {0.525750101f, -0.950913191f, 0.137589842f, 1.90103912f, -0.699117005f}, {0.508945465f, -0.951505005f, 0.213093907f, 1.85736978f, -0.750801146f}}},
    {"{\"type\": \"ftrl\", \"alpha\": 0.1, \"beta\": 1.0, \"l1\": 0.05, \"l2\": 0.01}",
     {{0.031789283f, -0.145711909f, 0.0307455814f, 0.09514748f, 0.0f}, {0.0545643882f, -0.153877795f, 0.0160564956f, 0.0666597418f, 0.0045413262f}, {0.0507798243f, -0.15794241f, 0.051329865f, 0.0528761441f, -0.00726729627f}}},
    {"{\"type\": \"ftrl\", \"alpha\": 0.5, \"beta\": 0.5, \"l1\": 0.0, \"l2\": 0.0, \"initial_accumulator_value\": 0.1}",
     {{-0.0508411105f, 0.0481167647f, -0.128310468f, 0.040061749f, 0.0f}, {0.107518108f, -0.0082340687f, -0.230394707f, -0.157498866f, 0.0601205441f}, {0.0812023183f, -0.0363077912f, 0.00617698113f, -0.252736962f, -0.0764420476f}}},
};

}  // namespace

TEST_CASE("Optimisers match torch.optim (and the FTRL paper) step by step") {
  for (const auto& c : kReference) {
    INFO(c.config);
    ParameterArena arena;
    auto& p = arena.add("w", Shape{5});
    std::memcpy(p.value, kW0, sizeof kW0);
    auto opt = make_optimizer(nlohmann::json::parse(c.config));
    for (int s = 0; s < 3; ++s) {
      std::memcpy(p.grad, kGrads[s], sizeof kGrads[s]);
      opt->step(arena);
      for (int i = 0; i < 5; ++i) {
        INFO("step " << s + 1 << " element " << i);
        CHECK(p.value[i] == Approx(c.expected[s][i]).margin(2e-7).epsilon(2e-6));
      }
    }
    CHECK(opt->step_count() == 3);
  }
}

TEST_CASE("Hand-computed single steps") {
  ParameterArena arena;
  auto& p = arena.add("w", Shape{2});
  auto set = [&](float w0, float w1, float g0, float g1) {
    p.value[0] = w0, p.value[1] = w1, p.grad[0] = g0, p.grad[1] = g1;
  };
  SECTION("SGD: w - lr g") {
    Sgd opt({.lr = 0.5});
    set(1.0f, 2.0f, 0.5f, -1.0f);
    opt.step(arena);
    CHECK(p.value[0] == 0.75f);
    CHECK(p.value[1] == 2.5f);
  }
  SECTION("SGD momentum: buffer = g at step 1, then mu b + g") {
    Sgd opt({.lr = 1.0, .momentum = 0.5});
    set(0.0f, 0.0f, 1.0f, 2.0f);
    opt.step(arena);  // b = g = (1, 2), w = -(1, 2)
    CHECK(p.value[0] == -1.0f);
    opt.step(arena);  // b = 0.5 (1, 2) + (1, 2) = (1.5, 3), w = -(2.5, 5)
    CHECK(p.value[0] == -2.5f);
    CHECK(p.value[1] == -5.0f);
  }
  SECTION("Adam step 1 moves every coordinate by lr * g / (|g| + eps')") {
    Adam opt({.lr = 0.1});
    set(1.0f, 1.0f, 3.0f, -0.001f);
    opt.step(arena);
    // m̂ = g, v̂ = g², so w -= lr * g / (|g| + eps)
    CHECK(p.value[0] == Approx(0.9).epsilon(1e-6));
    CHECK(p.value[1] == Approx(1.0 + 0.1 * 0.001 / (0.001 + 1e-8)).epsilon(1e-6));
  }
  SECTION("Adagrad: s = g², w -= lr g / sqrt(s)") {
    Adagrad opt({.lr = 0.5, .initial_accumulator_value = 3.0});
    set(1.0f, 1.0f, 1.0f, 0.0f);
    opt.step(arena);  // s = 4, w = 1 - 0.5 * 1/2
    CHECK(p.value[0] == Approx(0.75).epsilon(1e-6));
    CHECK(p.value[1] == 1.0f);
  }
  SECTION("FTRL: l1 zeroes small z; otherwise the closed form") {
    Ftrl opt({.alpha = 1.0, .beta = 1.0, .l1 = 0.5, .l2 = 0.0});
    set(0.0f, 0.0f, 0.4f, -3.0f);
    opt.step(arena);
    // z = g (w = 0), n = g²: |0.4| <= l1 -> 0; z = -3: w = -(-3 + 0.5) / (1 + 3) = 0.625
    CHECK(p.value[0] == 0.0f);
    CHECK(p.value[1] == Approx(0.625).epsilon(1e-6));
  }
}

namespace {

// A model with one dense parameter and one sparse 8x3 embedding table.
struct SparseModel {
  ParameterArena arena{5};
  Parameter<float>* dense;
  Parameter<float>* table;
  SparseModel() {
    dense = &arena.add("fc.weight", Shape{2, 3}, {.init = Init::uniform(-1, 1)});
    table = &arena.add("emb.weight", Shape{8, 3}, {.init = Init::normal(0, 0.1), .sparse = true});
    arena.add("bn.running_mean", Shape{3}, {.init = Init::constant(0.5), .trainable = false});
  }
  // Deterministic gradients for step s: dense everywhere, sparse rows `rows`.
  void set_grads(int s, const std::vector<Index>& rows) {
    arena.zero_grad();
    for (Index i = 0; i < dense->numel(); ++i) dense->grad[i] = 0.1f * float((i + s) % 5) - 0.2f;
    for (Index r : rows) {
      float* g = table->sparse_grad.row(r);
      for (int c = 0; c < 3; ++c) g[c] = 0.05f * float((r * 3 + c + s) % 7) - 0.15f;
    }
  }
};

const char* kAllConfigs[] = {
    R"({"type": "sgd", "lr": 0.1})",
    R"({"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "nesterov": true})",
    R"({"type": "adam", "lr": 0.01, "weight_decay": 0.01})",
    R"({"type": "adamw", "lr": 0.01})",
    R"({"type": "adagrad", "lr": 0.1, "initial_accumulator_value": 0.1, "weight_decay": 0.01})",
    R"({"type": "ftrl", "alpha": 0.1, "beta": 1.0, "l1": 0.01, "l2": 0.1})",
};

}  // namespace

TEST_CASE("Sparse updates change only the touched rows, weights and state alike") {
  for (const char* cfg : kAllConfigs) {
    INFO(cfg);
    SparseModel m;
    auto opt = make_optimizer(nlohmann::json::parse(cfg));
    const std::vector<std::vector<Index>> touched = {{1, 4}, {4, 6}, {1}};
    for (int s = 0; s < 3; ++s) {
      std::vector<float> before(m.table->value, m.table->value + m.table->numel());
      auto state_before = opt->state();
      m.set_grads(s, touched[s]);
      opt->step(m.arena);
      auto state_after = opt->state();
      for (Index r = 0; r < 8; ++r) {
        const bool hit = std::find(touched[s].begin(), touched[s].end(), r) != touched[s].end();
        bool same = std::memcmp(before.data() + r * 3, m.table->value + r * 3, 3 * sizeof(float)) == 0;
        INFO("step " << s << " row " << r);
        if (hit) CHECK_FALSE(same);
        else CHECK(same);
        // Optimiser state rows of untouched rows must not change either.
        for (std::size_t e = 0; e < state_after.size(); ++e) {
          if (state_after[e].first.find("emb.weight") == std::string::npos) continue;
          if (e >= state_before.size()) {  // created this step: untouched rows hold the initial value
            if (!hit) {
              const float init = state_after[e].second[r * 3];
              for (int c = 0; c < 3; ++c) CHECK(state_after[e].second[r * 3 + c] == init);
            }
            continue;
          }
          REQUIRE(state_before[e].first == state_after[e].first);
          const bool st_same =
              std::memcmp(state_before[e].second.data() + r * 3, state_after[e].second.data() + r * 3, 12) == 0;
          if (!hit) CHECK(st_same);
        }
      }
    }
    CHECK(m.arena.at("bn.running_mean").value[0] == 0.5f);  // buffers are never optimised
  }
}

TEST_CASE("A sparse table touched on every row updates exactly like the same dense parameter") {
  for (const char* cfg : kAllConfigs) {
    INFO(cfg);
    // Adam/Adagrad/FTRL per-row updates are the dense rule; SGD momentum too when dampening = 0.
    ParameterArena dense_arena(1), sparse_arena(1);
    auto& d = dense_arena.add("t", Shape{4, 3}, {.init = Init::normal(0, 1)});
    auto& s = sparse_arena.add("t", Shape{4, 3}, {.init = Init::normal(0, 1), .sparse = true});
    REQUIRE(std::memcmp(d.value, s.value, 12 * sizeof(float)) == 0);
    auto od = make_optimizer(nlohmann::json::parse(cfg));
    auto os = make_optimizer(nlohmann::json::parse(cfg));
    Rng rng(9);
    for (int step = 0; step < 4; ++step) {
      dense_arena.zero_grad();
      sparse_arena.zero_grad();
      for (Index r : {2, 0, 3, 1}) {  // touch order must not matter
        float* g = s.sparse_grad.row(r);
        for (int c = 0; c < 3; ++c) g[c] = d.grad[r * 3 + c] = static_cast<float>(rng.normal());
      }
      od->step(dense_arena);
      os->step(sparse_arena);
      CHECK(std::memcmp(d.value, s.value, 12 * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("Resuming from exported state gives bit-identical next steps") {
  for (const char* cfg : kAllConfigs) {
    INFO(cfg);
    SparseModel a;
    auto opt_a = make_optimizer(nlohmann::json::parse(cfg));
    for (int s = 0; s < 3; ++s) {
      a.set_grads(s, {Index(s), Index(s + 3)});
      opt_a->step(a.arena);
    }
    // "Checkpoint": weights + optimiser state into a fresh model and optimiser.
    SparseModel b;
    std::memcpy(b.dense->value, a.dense->value, a.dense->numel() * sizeof(float));
    std::memcpy(b.table->value, a.table->value, a.table->numel() * sizeof(float));
    auto opt_b = make_optimizer(nlohmann::json::parse(cfg));
    opt_b->load_state(opt_a->state(), b.arena);
    CHECK(opt_b->step_count() == 3);
    for (int s = 3; s < 6; ++s) {
      a.set_grads(s, {1, 7});
      b.set_grads(s, {1, 7});
      opt_a->step(a.arena);
      opt_b->step(b.arena);
      CHECK(std::memcmp(a.dense->value, b.dense->value, a.dense->numel() * sizeof(float)) == 0);
      CHECK(std::memcmp(a.table->value, b.table->value, a.table->numel() * sizeof(float)) == 0);
    }
    auto sa = opt_a->state(), sb = opt_b->state();
    REQUIRE(sa.size() == sb.size());
    for (std::size_t i = 0; i < sa.size(); ++i) {
      CHECK(sa[i].first == sb[i].first);
      CHECK(std::memcmp(sa[i].second.data(), sb[i].second.data(), sa[i].second.numel() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("Optimizer state names, step encoding and strict loading") {
  SparseModel m;
  Adam opt;
  m.set_grads(0, {2});
  opt.step(m.arena);
  auto st = opt.state();
  std::vector<std::string> names;
  for (auto& [n, t] : st) names.push_back(n);
  CHECK(names == std::vector<std::string>{"adam.step", "adam.exp_avg.fc.weight", "adam.exp_avg_sq.fc.weight",
                                          "adam.exp_avg.emb.weight", "adam.exp_avg_sq.emb.weight"});
  CHECK(st[1].second.shape() == Shape{2, 3});
  CHECK(st[0].second[1] == 1.0f);

  auto expect_reject = [&](OptimizerState bad, const char* what) {
    Adam fresh;
    CHECK_THROWS_WITH(fresh.load_state(bad, m.arena), Catch::Contains(what));
    CHECK(fresh.step_count() == 0);
  };
  {
    auto bad = st;
    bad.erase(bad.begin());
    expect_reject(bad, "missing entry 'adam.step'");
  }
  {
    auto bad = st;
    bad.pop_back();
    expect_reject(bad, "missing entry 'adam.exp_avg_sq.emb.weight'");
  }
  {
    auto bad = st;
    bad.erase(bad.begin() + 1, bad.begin() + 3);
    expect_reject(bad, "no state for trainable parameter 'fc.weight'");
  }
  {
    auto bad = st;
    bad[1].second = Tensor(Shape{3, 2}, 0.0f);
    expect_reject(bad, "has shape [3, 2]");
  }
  {
    auto bad = st;
    bad[1].first = "adam.exp_avg.nope";
    expect_reject(bad, "unknown parameter 'nope'");
  }
  {
    auto bad = st;
    bad[1].first = "sgd.momentum_buffer.fc.weight";
    expect_reject(bad, "does not belong");
  }
  {
    auto bad = st;
    bad[2].first = "adam.exp_avg_sq.bn.running_mean";
    bad[2].second = Tensor(Shape{3}, 0.0f);
    expect_reject(bad, "non-trainable");
  }
  {
    auto bad = st;
    bad.push_back(bad[1]);
    expect_reject(bad, "duplicate");
  }
  {
    auto bad = st;
    bad[0].second[1] = 0.5f;
    expect_reject(bad, "non-negative integers");
  }
  // Step beyond 2^24 survives the round trip exactly.
  {
    auto big = st;
    big[0].second[0] = 3.0f;
    big[0].second[1] = 12345.0f;
    Adam b;
    b.load_state(big, m.arena);
    CHECK(b.step_count() == 3 * 16777216LL + 12345);
    CHECK(b.state()[0].second[0] == 3.0f);
    CHECK(b.state()[0].second[1] == 12345.0f);
    Tensor one(Shape{1}, 7.0f);
    Adam c;
    c.load_state({{"adam.step", one}, st[1], st[2], st[3], st[4]}, m.arena);
    CHECK(c.step_count() == 7);
  }
}

TEST_CASE("make_optimizer: types, defaults and errors naming the field") {
  auto adam = make_optimizer(nlohmann::json::parse(R"({"type": "adam"})"));
  CHECK(std::string(adam->name()) == "adam");
  CHECK(adam->lr() == 1e-3);
  auto adamw = make_optimizer(nlohmann::json::parse(R"({"type": "adamw", "betas": [0.5, 0.6]})"));
  CHECK(std::string(adamw->name()) == "adamw");
  CHECK(dynamic_cast<Adam&>(*adamw).options().weight_decay == 1e-2);
  CHECK(dynamic_cast<Adam&>(*adamw).options().beta2 == 0.6);
  auto ftrl = make_optimizer(nlohmann::json::parse(R"({"type": "ftrl", "lr": 0.2})"));
  CHECK(ftrl->lr() == 0.2);
  ftrl->set_lr(0.3);
  CHECK(ftrl->lr() == 0.3);

  auto err = [](const char* cfg) {
    try {
      make_optimizer(nlohmann::json::parse(cfg), "train.optimizer");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  CHECK_THAT(err(R"({"lr": 0.1})"), Catch::Contains("train.optimizer.type: missing"));
  CHECK_THAT(err(R"({"type": "rmsprop"})"), Catch::Contains("unknown optimiser 'rmsprop'"));
  CHECK_THAT(err(R"({"type": "adam", "lr": "fast"})"), Catch::Contains("train.optimizer.lr: expected a number"));
  CHECK_THAT(err(R"({"type": "adam", "momentum": 0.9})"), Catch::Contains("train.optimizer.momentum: unknown field"));
  CHECK_THAT(err(R"({"type": "adam", "betas": [0.9]})"), Catch::Contains("train.optimizer.betas"));
  CHECK_THAT(err(R"({"type": "adam", "beta1": 1.5})"), Catch::Contains("beta1 must be in [0, 1)"));
  CHECK_THAT(err(R"({"type": "sgd", "lr": -1})"), Catch::Contains("lr must be finite and >= 0"));
  CHECK_THAT(err(R"({"type": "sgd", "nesterov": true})"), Catch::Contains("nesterov requires momentum > 0"));
  CHECK_THAT(err(R"({"type": "ftrl", "beta": 0})"), Catch::Contains("divide by zero"));
  CHECK_THAT(err(R"({"type": "ftrl", "alpha": 0.1, "lr": 0.1})"), Catch::Contains("either alpha or lr"));
}

TEST_CASE("Optimizer rejects a parameter whose shape changed under its state") {
  ParameterArena a;
  a.add("w", Shape{3});
  Adam opt;
  opt.step(a);
  ParameterArena b;
  b.add("w", Shape{4});
  CHECK_THROWS_WITH(opt.step(b), Catch::Contains("parameter 'w'"));
}

TEST_CASE("Dense updates split over threads are bit-identical to one thread") {
  for (const char* type : {"sgd", "adam", "adamw", "adagrad", "ftrl"}) {
    INFO(type);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
      mtrank::set_num_threads(threads);
      ParameterArena arena(5);
      auto& p = arena.add("w", Shape{300001}, {.init = Init::normal(0.0, 1.0)});
      nlohmann::json cfg{{"type", type}};
      if (std::string(type) == "ftrl") cfg["alpha"] = 0.1;
      else cfg["lr"] = 0.01;
      if (std::string(type) == "sgd") cfg["momentum"] = 0.5;
      auto opt = train::make_optimizer(cfg, "optimizer");
      for (int step = 0; step < 3; ++step) {
        for (Index i = 0; i < p.numel(); ++i) p.grad[i] = std::sin(float(i) * 0.37f + float(step));
        opt->step(arena);
      }
      results.emplace_back(p.value, p.value + p.numel());
    }
    mtrank::set_num_threads(1);
    REQUIRE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
    REQUIRE(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
  }
}

TEST_CASE("Sparse row updates split over threads are bit-identical to one thread") {
  for (const char* type : {"sgd", "adam", "adagrad", "ftrl"}) {
    INFO(type);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
      mtrank::set_num_threads(threads);
      ParameterArena arena(5);
      // Two tables, 1500 + 700 touched rows: several 256-row chunks, one partial.
      auto& a = arena.add("a", Shape{5000, 16}, {.init = Init::normal(0.0, 1.0), .sparse = true});
      auto& b = arena.add("b", Shape{900, 8}, {.init = Init::normal(0.0, 1.0), .sparse = true});
      nlohmann::json cfg{{"type", type}};
      if (std::string(type) == "ftrl") cfg["alpha"] = 0.1;
      else cfg["lr"] = 0.01;
      auto opt = train::make_optimizer(cfg, "optimizer");
      for (int step = 0; step < 3; ++step) {
        arena.zero_grad();
        for (Index k = 0; k < 1500; ++k) {
          float* g = a.sparse_grad.row((k * 7 + step * 13) % 5000);
          for (int j = 0; j < 16; ++j) g[j] = std::sin(float(k * 16 + j) * 0.37f + float(step));
        }
        for (Index k = 0; k < 700; ++k) {
          float* g = b.sparse_grad.row((k * 11 + step) % 900);
          for (int j = 0; j < 8; ++j) g[j] = std::cos(float(k * 8 + j) * 0.21f + float(step));
        }
        opt->step(arena);
      }
      std::vector<float> v(a.value, a.value + a.numel());
      v.insert(v.end(), b.value, b.value + b.numel());
      results.push_back(std::move(v));
    }
    mtrank::set_num_threads(1);
    REQUIRE(std::memcmp(results[0].data(), results[1].data(), results[0].size() * sizeof(float)) == 0);
    REQUIRE(std::memcmp(results[0].data(), results[2].data(), results[0].size() * sizeof(float)) == 0);
  }
}
