// io::parse_name_map / io::load_mapped (`mtrank convert`): renames, ignored prefixes, and every
// refusal checked before a value is written.
#include "mtrank/io/name_map.hpp"
#include "mtrank/nn/mlp.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::io;
using Catch::Contains;
using nlohmann::json;

TEST_CASE("name map: renamed and ignored tensors load, and every mismatch is refused with the arena untouched", "[io][convert]") {
  const nn::MlpOptions opt{.in = 3, .layers = {2}};
  ParameterArena src(1), dst(2);
  nn::Mlp<float> a(src, "mlp", opt), b(dst, "mlp", opt);
  Tensor extra(Shape{4}, 1.f);
  SafetensorsWriter w;  // torch-style names for the weight, mtrank's for the bias, and an extra tensor
  w.add("net.0.weight", TensorView<const float>{src.at("mlp.layers.0.weight").value, Shape{2, 3}});
  w.add("mlp.layers.0.bias", TensorView<const float>{src.at("mlp.layers.0.bias").value, Shape{2}});
  w.add("net.0.num_batches_tracked", extra.view());
  const auto file = SafetensorsFile::parse(w.serialize(), "torch.safetensors");

  const NameMap map = parse_name_map(json::parse(R"({"rename": {"net.0.weight": "mlp.layers.0.weight"}, "ignore": ["net.0.num_"]})"));
  CHECK_THROWS_WITH(load_mapped(dst, file, NameMap{}), Contains("torch.safetensors: no tensor 'mlp.layers.0.weight'"));
  CHECK_THROWS_WITH(load_mapped(dst, file, parse_name_map(json::parse(R"({"rename": {"net.0.weight": "mlp.layers.0.weight"}})"))),
                    Contains("tensor 'net.0.num_batches_tracked' matches no parameter"));
  CHECK(dst.at("mlp.layers.0.bias").value[0] != src.at("mlp.layers.0.bias").value[0]);  // untouched so far
  load_mapped(dst, file, map);
  for (const char* n : {"mlp.layers.0.weight", "mlp.layers.0.bias"})
    for (Index i = 0; i < src.at(n).numel(); ++i) CHECK(dst.at(n).value[i] == src.at(n).value[i]);

  CHECK_THROWS_WITH(parse_name_map(json::parse(R"({"renames": {}})")), Contains("map") && Contains("renames"));
  CHECK_THROWS_WITH(parse_name_map(json::parse(R"({"rename": {"a": 1}})")), Contains("map.rename.a: expected a string"));
  CHECK_THROWS_WITH(parse_name_map(json::parse(R"({"rename": {"a": "x", "b": "x"}})")), Contains("is the target of two tensors"));
  CHECK_THROWS_WITH(parse_name_map(json::parse(R"({"ignore": "net."})")), Contains("map.ignore: expected an array"));
  CHECK_THROWS_WITH(parse_name_map(json::parse("[]")), Contains("map: expected an object"));
  CHECK(parse_name_map(nullptr).source_of.empty());
}
