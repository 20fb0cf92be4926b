// Parity with an independent PyTorch implementation (tools/make_block_fixtures.py).
//
// The fixtures hold float32 weights and inputs, the float64 reference outputs and gradients of
// loss = sum_k <r_k, out_k> (+ l0_weight * penalty for SNR) rounded to float32. Here the blocks
// run in float and every output, every parameter gradient and the input gradients must agree:
//   |got - want| <= kRel * max(|want|, kFloor * max|want over the tensor|, kAbsFloor)
// i.e. relative error <= 1e-5, with a floor that keeps entries made tiny by cancellation from
// failing on float rounding alone: 5% of the tensor's largest magnitude, and at least 0.01
// (an absolute error of 1e-7, about two float32 ulps of a value of 1).
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "block_testing.hpp"
#include "mtrank/blocks/co_action.hpp"
#include "mtrank/blocks/mmoe.hpp"
#include "mtrank/blocks/ple.hpp"
#include "mtrank/blocks/slot_gate.hpp"
#include "mtrank/blocks/snr.hpp"

using namespace mtrank;
using namespace mtrank::blocks;
using json = nlohmann::json;

namespace {

constexpr double kRel = 1e-5;
constexpr double kFloor = 0.05;
constexpr double kAbsFloor = 0.01;

const std::string kDir = std::string(MTRANK_SOURCE_DIR) + "/tests/fixtures/blocks/";

struct Fixture {
  json config;
  std::map<std::string, Tensor> tensors;

  const Tensor& at(const std::string& key) const {
    auto it = tensors.find(key);
    if (it == tensors.end()) fail("fixture: no tensor '", key, "'");
    return it->second;
  }
  bool has(const std::string& key) const { return tensors.count(key) > 0; }
};

Fixture load(const std::string& block) {
  std::ifstream mf(kDir + "manifest.json");
  REQUIRE(mf.good());
  json manifest = json::parse(mf);
  REQUIRE(manifest.contains(block));
  const json& b = manifest[block];
  std::ifstream bf(kDir + b["file"].get<std::string>(), std::ios::binary);
  REQUIRE(bf.good());
  std::stringstream ss;
  ss << bf.rdbuf();
  const std::string bytes = ss.str();
  Fixture f;
  f.config = b["config"];
  for (auto& [key, desc] : b["tensors"].items()) {
    Shape shape;
    for (auto d : desc["shape"]) shape.push_back(d.get<Index>());
    if (shape.rank() == 0) shape.push_back(1);
    const Index off = desc["offset"].get<Index>();
    REQUIRE(static_cast<std::size_t>((off + shape.numel()) * 4) <= bytes.size());
    Tensor t(shape);
    std::memcpy(t.data(), bytes.data() + off * 4, static_cast<std::size_t>(shape.numel()) * 4);  // little-endian host
    f.tensors.emplace(key, std::move(t));
  }
  return f;
}

/// Copies every param:<name> into the arena; every arena parameter must be covered.
void load_params(ParameterArena& arena, const Fixture& f) {
  Index loaded = 0;
  for (const auto& [key, t] : f.tensors) {
    if (key.rfind("param:", 0) != 0) continue;
    auto& p = arena.at(key.substr(6));
    INFO(key);
    REQUIRE(p.numel() == t.numel());
    std::copy(t.begin(), t.end(), p.value);
    ++loaded;
  }
  CHECK(loaded == static_cast<Index>(arena.parameters().size()));
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t) m = std::max(m, double(std::abs(v)));
  return m;
}

/// Compares got (any view of the same number of elements, row-major) with the fixture tensor.
void expect_close(const std::string& what, MatrixView<const float> got, const Tensor& want, double* worst) {
  REQUIRE(got.rows * got.cols == want.numel());
  const double floor = std::max(kFloor * max_abs(want), kAbsFloor);
  double err = 0;
  Index at = 0;
  for (Index i = 0; i < want.numel(); ++i) {
    const double g = got(i / got.cols, i % got.cols), w = want[i];
    const double e = std::abs(g - w) / std::max(std::abs(w), floor);
    if (e > err) {
      err = e;
      at = i;
    }
  }
  *worst = std::max(*worst, err);
  INFO(what << ": worst relative error " << err << " at " << at << " (got "
            << got(at / got.cols, at % got.cols) << ", want " << want[at] << ")");
  CHECK(err <= kRel);
}

void expect_param_grads(ParameterArena& arena, const Fixture& f, double* worst) {
  Index n = 0;
  for (auto& p : arena.parameters()) {
    const Tensor& want = f.at("grad:" + p.name);
    expect_close("grad " + p.name, MatrixView<const float>(p.grad, 1, p.numel()), want, worst);
    ++n;
  }
  CHECK(n > 0);
}

template <class Backbone>
void run_backbone(const Backbone& bb, typename Backbone::Workspace& ws, ParameterArena& arena, const Fixture& f,
                  const Context& ctx, double l0_weight, const char* name) {
  double worst = 0;
  const Tensor& x = f.at("input:x");
  const auto& outs = bb.forward(x.matrix(), ws, ctx);
  REQUIRE(static_cast<Index>(outs.size()) == bb.num_tasks());
  std::vector<MatrixView<const float>> d;
  for (Index k = 0; k < bb.num_tasks(); ++k) {
    expect_close("output " + std::to_string(k), outs[k], f.at("output:" + std::to_string(k)), &worst);
    const Tensor& r = f.at("r:" + std::to_string(k));
    d.push_back(r.matrix());
  }
  arena.zero_grad();
  auto dx = bb.backward(d, ws, true);
  if (l0_weight != 0) bb.penalty(l0_weight);
  expect_param_grads(arena, f, &worst);
  expect_close("grad x", dx, f.at("grad_input:x"), &worst);
  WARN(name << ": worst relative error vs PyTorch " << worst);
}

}  // namespace

TEST_CASE("PyTorch parity: MMoE") {
  Fixture f = load("mmoe");
  const json& c = f.config;
  ParameterArena arena;
  MmoeBackbone<nn::Mlp<float>> mmoe(
      arena, "",
      {.in = c["in"], .num_experts = c["num_experts"], .num_tasks = c["num_tasks"],
       .expert = {.layers = c["expert_layers"].get<std::vector<Index>>()},
       .gate = {.temperature = c["temperature"].get<double>()}});
  load_params(arena, f);
  MmoeBackbone<nn::Mlp<float>>::Workspace ws;
  run_backbone(mmoe, ws, arena, f, {}, 0.0, "mmoe");
}

TEST_CASE("PyTorch parity: PLE with two levels") {
  Fixture f = load("ple");
  const json& c = f.config;
  PleOptions<nn::MlpOptions> opt{.in = c["in"], .num_tasks = c["num_tasks"]};
  for (const auto& lv : c["levels"]) {
    nn::MlpOptions e{.layers = lv["layers"].get<std::vector<Index>>()};
    opt.levels.push_back({.num_task_experts = lv["num_task_experts"], .num_shared_experts = lv["num_shared_experts"],
                          .task_expert = e, .shared_expert = e});
  }
  ParameterArena arena;
  PleBackbone<nn::Mlp<float>> ple(arena, "", opt);
  load_params(arena, f);
  PleBackbone<nn::Mlp<float>>::Workspace ws;
  run_backbone(ple, ws, arena, f, {}, 0.0, "ple");
}

TEST_CASE("PyTorch parity: SNR-Trans codes, inference and training with fixed noise") {
  for (const char* mode : {"inference", "training"}) {
    INFO(mode);
    Fixture f = load(std::string("snr_trans_") + mode);
    const json& c = f.config;
    ParameterArena arena;
    SnrTransBackbone<nn::Mlp<float>> snr(
        arena, "",
        {.in = c["in"],
         .num_tasks = c["num_upper"],
         .stages = {{.num_subnets = c["num_lower"], .subnet = {.layers = c["lower_layers"].get<std::vector<Index>>()}},
                    {.num_subnets = c["num_upper"], .subnet = {.layers = c["upper_layers"].get<std::vector<Index>>()},
                     .in = c["route_width"]}},
         .code = {.beta = c["beta"], .gamma = c["gamma"], .zeta = c["zeta"]}});
    load_params(arena, f);
    SnrTransBackbone<nn::Mlp<float>>::Workspace ws;
    Rng rng(1);
    Context ctx{};
    if (std::string(mode) == "training") {
      ws.fixed_noise.push_back(f.at("input:noise"));
      ctx = Context::train(rng);
    }
    snr.forward(f.at("input:x").matrix(), ws, ctx);
    const auto codes = c["codes"].get<std::vector<double>>();
    for (std::size_t i = 0; i < codes.size(); ++i) CHECK(ws.routes[0].code.z[static_cast<Index>(i)] == Approx(codes[i]).epsilon(1e-5).margin(1e-6));
    run_backbone(snr, ws, arena, f, ctx, c["l0_weight"], mode);
  }
}

TEST_CASE("PyTorch parity: EPNet slot-gate") {
  Fixture f = load("epnet");
  const json& c = f.config;
  ParameterArena arena;
  EpNet<float> ep(arena, "", {.domain_in = c["domain_in"], .slot_widths = c["slot_widths"].get<std::vector<Index>>(),
                              .hidden = c["hidden"], .gamma = c["gamma"]});
  load_params(arena, f);
  EpNet<float>::Workspace ws;
  double worst = 0;
  auto O = ep.forward(f.at("input:domain").matrix(), f.at("input:emb").matrix(), ws);
  expect_close("output", O, f.at("output:0"), &worst);
  arena.zero_grad();
  auto g = ep.backward(f.at("r:0").matrix(), ws);
  expect_param_grads(arena, f, &worst);
  expect_close("grad domain", g.d_domain, f.at("grad_input:domain"), &worst);
  expect_close("grad emb", g.d_emb, f.at("grad_input:emb"), &worst);
  WARN("epnet: worst relative error vs PyTorch " << worst);
}

TEST_CASE("PyTorch parity: co-action unit over a padded behaviour sequence") {
  Fixture f = load("co_action");
  const json& c = f.config;
  CoActionUnit<float> can({.in = c["in"], .layers = c["layers"].get<std::vector<Index>>(), .orders = c["orders"]});
  const Index L = c["seq_len"];
  const auto lengths = c["lengths"].get<std::vector<Index>>();
  const Tensor& x = f.at("input:x");  // [B, L, d]
  MatrixView<const float> xm(x.data(), x.dim(0) * L, x.dim(2));
  CoActionUnit<float>::Workspace ws;
  double worst = 0;
  auto y = can.forward(f.at("input:p").matrix(), xm, L, lengths, ws);
  expect_close("output", y, f.at("output:0"), &worst);
  can.backward(f.at("r:0").matrix(), ws);
  expect_close("grad p", ws.dp.matrix(), f.at("grad_input:p"), &worst);
  expect_close("grad x", ws.dx.matrix(), f.at("grad_input:x"), &worst);
  WARN("co_action: worst relative error vs PyTorch " << worst);
}
