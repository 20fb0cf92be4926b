#include "onednn/matmul_cache.hpp"

#include <memory>
#include <unordered_map>

#include "mtrank/core/error.hpp"
#include "mtrank/core/threading.hpp"
#include "onednn/onednn_common.hpp"

namespace mtrank::onednn {
namespace {

using dnnl::memory;
using dt = dnnl::memory::data_type;

struct KeyHash {
  std::size_t operator()(const MatmulKey& k) const noexcept {
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](std::uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    for (Index v : {k.M, k.K, k.N, k.sa0, k.sa1, k.sb0, k.sb1, k.ldc}) mix(static_cast<std::uint64_t>(v));
    mix(static_cast<std::uint64_t>(k.act) | (std::uint64_t(k.type) << 8) | (std::uint64_t(k.bias) << 16) |
        (std::uint64_t(k.accumulate) << 17) | (std::uint64_t(k.b_any) << 18) | (std::uint64_t(k.threads) << 24));
    return static_cast<std::size_t>(h);
  }
};

}  // namespace

struct MatmulEntry {
  MatmulKey key;
  dnnl::matmul prim;
  memory::desc b_desc;
  memory a, b, bias, c, scratch;
  std::size_t scratch_bytes = 0;
};

namespace {
using Entry = MatmulEntry;

struct ThreadCache {
  std::unordered_map<MatmulKey, std::unique_ptr<Entry>, KeyHash> map;
  ScratchBuffer scratch;
  kernels::LinearCacheStats stats;
};

ThreadCache& thread_cache() {
  thread_local ThreadCache c;
  return c;
}

dnnl::algorithm eltwise_alg(int act) {
  switch (static_cast<kernels::FusedActivation>(act)) {
    case kernels::FusedActivation::relu: return dnnl::algorithm::eltwise_relu;
    case kernels::FusedActivation::sigmoid: return dnnl::algorithm::eltwise_logistic;
    case kernels::FusedActivation::tanh: return dnnl::algorithm::eltwise_tanh;
    case kernels::FusedActivation::gelu_erf: return dnnl::algorithm::eltwise_gelu_erf;
    case kernels::FusedActivation::identity: break;
  }
  return dnnl::algorithm::undef;
}

std::unique_ptr<Entry> create(const MatmulKey& k) {
  const dnnl::engine& eng = engine();
  const dt in_type = k.type == int(MatmulType::bf16) ? dt::bf16 : dt::f32;
  memory::desc a_md({k.M, k.K}, in_type, memory::dims{k.sa0, k.sa1});
  memory::desc b_md = k.b_any ? memory::desc({k.K, k.N}, in_type, memory::format_tag::any)
                             : memory::desc({k.K, k.N}, in_type, memory::dims{k.sb0, k.sb1});
  memory::desc c_md({k.M, k.N}, dt::f32, memory::dims{k.ldc, 1});
  memory::desc bias_md = k.bias ? memory::desc({1, k.N}, dt::f32, memory::dims{k.N, 1}) : memory::desc();

  dnnl::post_ops po;
  if (k.accumulate) po.append_sum(1.f);
  if (const auto alg = eltwise_alg(k.act); alg != dnnl::algorithm::undef) po.append_eltwise(1.f, alg, 0.f, 0.f);
  dnnl::primitive_attr attr;
  attr.set_post_ops(po);
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

  auto e = std::make_unique<Entry>();
  e->key = k;
  try {
    dnnl::matmul::desc d = k.bias ? dnnl::matmul::desc(a_md, b_md, bias_md, c_md) : dnnl::matmul::desc(a_md, b_md, c_md);
    dnnl::matmul::primitive_desc pd(d, attr, eng);
    e->prim = dnnl::matmul(pd);
    e->scratch_bytes = pd.scratchpad_desc().get_size();
    e->scratch = memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
    b_md = pd.weights_desc();
    e->b_desc = b_md;
  } catch (const dnnl::error& err) {
    fail("oneDNN matmul [", k.M, "x", k.K, "] x [", k.K, "x", k.N, "] (",
         k.type == int(MatmulType::bf16) ? "bf16" : "f32", "): primitive creation failed: ", err.what());
  }
  e->a = memory(a_md, eng, DNNL_MEMORY_NONE);
  e->b = memory(b_md, eng, DNNL_MEMORY_NONE);
  e->c = memory(c_md, eng, DNNL_MEMORY_NONE);
  if (k.bias) e->bias = memory(bias_md, eng, DNNL_MEMORY_NONE);
  return e;
}

void set_handle(const memory& m, const void* p) {
  const dnnl_status_t st = dnnl_memory_set_data_handle(m.get(), const_cast<void*>(p));
  if (st != dnnl_success) fail("oneDNN: set_data_handle failed with status ", static_cast<int>(st));
}

}  // namespace

MatmulEntry& lookup_matmul(const MatmulKey& key) {
  apply_thread_setting();
  ThreadCache& tc = thread_cache();
  auto it = tc.map.find(key);
  if (it == tc.map.end()) {
    if (tc.map.size() >= kernels::kLinearCacheCapacity) tc.map.clear();
    it = tc.map.emplace(key, create(key)).first;
    ++tc.stats.misses;
  } else {
    ++tc.stats.hits;
  }
  return *it->second;
}

const dnnl::memory::desc& matmul_b_desc(const MatmulEntry& e) { return e.b_desc; }

void run_matmul(MatmulEntry& e, const void* a, const void* b, const float* bias, float* c) {
  const MatmulKey& key = e.key;
  ThreadCache& tc = thread_cache();
  set_handle(e.a, a);
  set_handle(e.b, b);
  set_handle(e.c, c);
  dnnl_exec_arg_t args[5];
  int n = 0;
  args[n++] = {DNNL_ARG_SRC, e.a.get()};
  args[n++] = {DNNL_ARG_WEIGHTS, e.b.get()};
  args[n++] = {DNNL_ARG_DST, e.c.get()};
  if (key.bias) {
    set_handle(e.bias, bias);
    args[n++] = {DNNL_ARG_BIAS, e.bias.get()};
  }
  set_handle(e.scratch, tc.scratch.get(e.scratch_bytes));
  args[n++] = {DNNL_ARG_SCRATCHPAD, e.scratch.get()};
  execute(e.prim, args, n);
}

}  // namespace mtrank::onednn

namespace mtrank::kernels {

LinearCacheStats linear_cache_stats() {
  auto& tc = onednn::thread_cache();
  LinearCacheStats s = tc.stats;
  s.entries = tc.map.size();
  return s;
}

void clear_linear_cache() {
  auto& tc = onednn::thread_cache();
  tc.map.clear();
  tc.stats = {};
}

}  // namespace mtrank::kernels
