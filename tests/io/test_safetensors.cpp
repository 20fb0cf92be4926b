#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "mtrank/io/atomic_file.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/nn/mlp.hpp"
#include "testing.hpp"

using namespace mtrank;
using namespace mtrank::io;
using Catch::Contains;
namespace fs = std::filesystem;

namespace {

// A safetensors file from a header text and a byte buffer (no validation, for error tests).
std::string make_file(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string zeros(std::size_t n) { return std::string(n, '\0'); }

void check_parse_error(const std::string& bytes, const std::string& expected) {
  INFO("expected error: " << expected);
  CHECK_THROWS_WITH(SafetensorsFile::parse(bytes, "bad.safetensors"),
                    Contains("bad.safetensors") && Contains(expected));
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && (a.numel() == 0 || std::memcmp(a.data(), b.data(), sizeof(float) * a.numel()) == 0);
}

fs::path fixtures() { return fs::path(MTRANK_SOURCE_DIR) / "tests" / "fixtures" / "io"; }

nlohmann::json expected_json() { return nlohmann::json::parse(read_file(fixtures() / "expected.json")); }

Shape shape_of(const nlohmann::json& j) {
  Shape s;
  for (auto& d : j) s.push_back(d.get<Index>());
  return s;
}

Tensor from_bits(const nlohmann::json& shape, const nlohmann::json& bits) {
  Tensor t(shape_of(shape));
  REQUIRE(static_cast<std::size_t>(t.numel()) == bits.size());
  for (std::size_t i = 0; i < bits.size(); ++i) t[static_cast<Index>(i)] = std::bit_cast<float>(bits[i].get<std::uint32_t>());
  return t;
}

}  // namespace

TEST_CASE("safetensors round trip in memory and on disk keeps names, shapes, values and metadata") {
  Rng rng(1);
  Tensor a = testing::random_tensor<float>(Shape{3, 5}, rng);
  Tensor b = testing::random_tensor<float>(Shape{7}, rng);
  Tensor scalar(Shape{}, 2.5f);
  Tensor empty(Shape{0, 4});
  std::vector<std::int64_t> ids = {-3, 0, std::int64_t(1) << 50, 7};
  SafetensorsWriter w;
  w.add("layer.weight", a.view());
  w.add("b", b.view());
  w.add("scalar", scalar.view());
  w.add("empty", empty.view());
  w.add("ids", Shape{2, 2}, ids.data());
  w.set_metadata("mtrank.note", "héllo \"quoted\"");
  w.set_metadata("empty", "");
  const std::string bytes = w.serialize();
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK(header_len % 8 == 0);

  auto dir = testing::temp_dir("st_roundtrip");
  w.save(dir / "t.safetensors");
  CHECK(read_file(dir / "t.safetensors") == bytes);

  for (int from_disk = 0; from_disk < 2; ++from_disk) {
    INFO("from_disk " << from_disk);
    SafetensorsFile f = from_disk ? SafetensorsFile::load(dir / "t.safetensors") : SafetensorsFile::parse(bytes);
    REQUIRE(f.entries().size() == 5);
    // Entries come in data-offset order, which is the order added.
    CHECK(f.entries()[0].name == "layer.weight");
    CHECK(f.entries()[4].name == "ids");
    CHECK(same_bits(f.to_float("layer.weight"), a));
    CHECK(same_bits(f.to_float("b"), b));
    CHECK(same_bits(f.to_float("scalar"), scalar));
    CHECK(f.to_float("empty").shape() == Shape{0, 4});
    CHECK(f.at("ids").dtype == Dtype::I64);
    CHECK(f.at("ids").shape == Shape{2, 2});
    CHECK(f.to_int64("ids") == ids);
    CHECK(f.metadata().at("mtrank.note") == "héllo \"quoted\"");
    CHECK(f.metadata().at("empty").empty());
    CHECK(f.raw_bytes("b").size() == 7 * 4);
    CHECK_FALSE(f.contains("nope"));
    CHECK_THROWS_WITH(f.to_float("nope"), Contains("no tensor named 'nope'"));
    CHECK_THROWS_WITH(f.to_float("ids"), Contains("tensor 'ids'") && Contains("I64 cannot be read as float"));
    CHECK_THROWS_WITH(f.to_int64("b"), Contains("tensor 'b'") && Contains("F32 cannot be read as int64"));
  }
  // The free functions produce the same bytes as the writer.
  NamedFloatTensors named = {{"x", std::as_const(a).view()}, {"y", std::as_const(b).view()}};
  SafetensorsWriter w2;
  w2.add("x", a.view());
  w2.add("y", b.view());
  w2.set_metadata("k", "v");
  CHECK(serialize_safetensors(named, {{"k", "v"}}) == w2.serialize());
  save_safetensors(dir / "free.safetensors", named, {{"k", "v"}});
  CHECK(read_file(dir / "free.safetensors") == w2.serialize());
}

TEST_CASE("An empty safetensors file (no tensors) round-trips") {
  SafetensorsWriter w;
  auto f = SafetensorsFile::parse(w.serialize());
  CHECK(f.entries().empty());
  CHECK(f.metadata().empty());
}

TEST_CASE("The writer rejects bad names") {
  Tensor t(Shape{2}, 1.f);
  SafetensorsWriter w;
  w.add("a", t.view());
  CHECK_THROWS_WITH(w.add("a", t.view()), Contains("duplicate tensor name 'a'"));
  CHECK_THROWS_WITH(w.add("", t.view()), Contains("empty tensor name"));
  CHECK_THROWS_WITH(w.add("__metadata__", t.view()), Contains("reserved"));
  SafetensorsWriter bad_utf8;
  bad_utf8.add("\xff\xfe", t.view());
  CHECK_THROWS_WITH(bad_utf8.serialize(), Contains("not valid UTF-8"));
}

TEST_CASE("safetensors validation: every malformed header is an Error naming the file and the expectation") {
  const std::string ok_entry = R"("a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})";
  // Sanity: the well-formed base parses.
  CHECK(SafetensorsFile::parse(make_file("{" + ok_entry + "}", zeros(8))).entries().size() == 1);

  SECTION("file and header length") {
    check_parse_error("abc", "too short");
    check_parse_error(make_file("{}").substr(0, 7), "too short");
    std::string past = make_file("{}");
    past[0] = 40;  // claims 40 header bytes, has 2
    check_parse_error(past, "runs past the end of the file");
    std::string huge = make_file("{}");
    huge[5] = 1;  // 2^40 + 2
    check_parse_error(huge, "exceeds the limit");
    check_parse_error(make_file(""), "too short for a JSON object");
  }
  SECTION("JSON") {
    check_parse_error(make_file("{\"a\": "), "not valid JSON");
    check_parse_error(make_file("{\"a\xff\": 1}"), "not valid JSON");
    check_parse_error(make_file("[1, 2]"), "must be a JSON object");
    check_parse_error(make_file("\"text\""), "must be a JSON object");
    check_parse_error(make_file("{" + ok_entry + ", " + ok_entry + "}", zeros(8)), "duplicate key \"a\"");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", zeros(8)),
                      "duplicate key \"dtype\"");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [[2]], "data_offsets": [0, 8]}})", zeros(8)),
                      "nests deeper");
  }
  SECTION("entries") {
    check_parse_error(make_file(R"({"a": 3})"), "tensor 'a': expected an object");
    check_parse_error(make_file(R"({"a": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}})", zeros(8)),
                      "tensor 'a': unknown dtype \"F31\"");
    check_parse_error(make_file(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", zeros(8)), "tensor 'a': dtype: expected a string");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}})", zeros(8)),
                      "tensor 'a': unknown field \"x\"");
    for (const char* shape : {"3", "[-1]", "[2.0]", "[\"2\"]", "null"})
      check_parse_error(make_file(std::string(R"({"a": {"dtype": "F32", "shape": )") + shape + R"(, "data_offsets": [0, 8]}})",
                                  zeros(8)),
                        "tensor 'a': shape: expected a list of non-negative integers");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [1,1,1,1,1,1,2], "data_offsets": [0, 8]}})", zeros(8)),
                      "rank 7 exceeds");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [4611686018427387904, 8], "data_offsets": [0, 8]}})", zeros(8)),
                      "needs more than 2^64");
    for (const char* off : {"[0]", "[0, 8, 9]", "[0, -8]", "[0.0, 8]", "\"0-8\""})
      check_parse_error(make_file(std::string(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": )") + off + "}}", zeros(8)),
                        "tensor 'a': data_offsets: expected [begin, end]");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", zeros(8)), "end < begin");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}})", zeros(8)),
                      "run past the end of the byte buffer (8 bytes)");
    check_parse_error(make_file(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", zeros(8)),
                      "tensor 'a': data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12");
    check_parse_error(make_file(R"({"a": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 8]}})", zeros(8)),
                      "of BF16 needs 12");
  }
  SECTION("coverage of the byte buffer") {
    const std::string two = R"("b": {"dtype": "F32", "shape": [2], "data_offsets": )";
    check_parse_error(make_file("{" + ok_entry + ", " + two + "[4, 12]}}", zeros(12)), "tensor 'b' (bytes [4, 12)) overlaps tensor 'a'");
    check_parse_error(make_file("{" + ok_entry + ", " + two + "[12, 20]}}", zeros(20)), "hole in the byte buffer: bytes [8, 12)");
    check_parse_error(make_file("{" + ok_entry + "}", zeros(12)), "the byte buffer has 12 bytes but the tensors cover only 8");
    check_parse_error(make_file("{}", zeros(1)), "has 1 bytes but the tensors cover only 0");
    // Tensors may appear in any order in the header, and zero-size tensors sit anywhere.
    auto f = SafetensorsFile::parse(make_file(
        "{" + two + "[8, 16]}, " + ok_entry + R"(, "z": {"dtype": "I64", "shape": [0, 5], "data_offsets": [8, 8]}})", zeros(16)));
    CHECK(f.entries()[0].name == "a");
    CHECK(f.entries()[2].name == "b");
  }
  SECTION("metadata") {
    check_parse_error(make_file(R"({"__metadata__": {"k": 1}})"), "__metadata__.k: expected a string value");
    check_parse_error(make_file(R"({"__metadata__": {"k": {"x": "y"}}})"), "__metadata__.k: expected a string value");
    check_parse_error(make_file(R"({"__metadata__": ["k"]})"), "__metadata__ must be an object of strings");
    auto f = SafetensorsFile::parse(make_file(R"({"__metadata__": {"k": "v"}}   )"));
    CHECK(f.metadata().at("k") == "v");
  }
}

TEST_CASE("SafetensorsFile::load reports the path for missing and truncated files") {
  auto dir = testing::temp_dir("st_load_errors");
  CHECK_THROWS_WITH(SafetensorsFile::load(dir / "none.safetensors"),
                    Contains("none.safetensors") && Contains(std::strerror(ENOENT)));
  Tensor t(Shape{4}, 1.f);
  std::string bytes = serialize_safetensors({{"t", std::as_const(t).view()}});
  write_file_atomic(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 1));
  CHECK_THROWS_WITH(SafetensorsFile::load(dir / "cut.safetensors"),
                    Contains("cut.safetensors") && Contains("run past the end of the byte buffer"));
  CHECK_THROWS_WITH(SafetensorsFile::load(dir), Contains("not a regular file"));
}

TEST_CASE("PyTorch-written safetensors: F32, F16, BF16, F64 and integer tensors match torch's values") {
  const auto expected = expected_json();
  for (int from_disk = 0; from_disk < 2; ++from_disk) {
    const fs::path path = fixtures() / "torch_dtypes.safetensors";
    SafetensorsFile f = from_disk ? SafetensorsFile::load(path) : SafetensorsFile::parse(read_file(path), path.string());
    CHECK(f.at("f16").dtype == Dtype::F16);
    CHECK(f.at("bf16").dtype == Dtype::BF16);
    CHECK(f.at("f64").dtype == Dtype::F64);
    CHECK(f.at("mask").dtype == Dtype::BOOL);
    for (auto& [name, e] : expected["float"].items()) {
      INFO("tensor " << name);
      Tensor want = from_bits(e["shape"], e["bits"]);
      Tensor got = f.to_float(name);
      CHECK(same_bits(got, want));  // bit-exact, incl. subnormals, -0 and infinities
    }
    for (auto& [name, e] : expected["int"].items()) {
      INFO("tensor " << name);
      CHECK(f.at(name).shape == shape_of(e["shape"]));
      CHECK(f.to_int64(name) == e["values"].get<std::vector<std::int64_t>>());
    }
    CHECK(f.metadata() == expected["metadata"].get<std::map<std::string, std::string>>());
  }
}

TEST_CASE("A PyTorch MLP state_dict loads into mtrank's Mlp and reproduces torch's output") {
  const auto expected = expected_json()["mlp"];
  auto file = SafetensorsFile::load(fixtures() / "torch_mlp.safetensors");
  ParameterArena arena(5);
  nn::Mlp<float> mlp(arena, "mlp",
                     {.in = 3, .layers = {4, 2}, .activation = nn::ActivationKind::relu, .activate_last = false, .batch_norm = true});
  // Strict loading refuses PyTorch's num_batches_tracked counter, which mtrank does not keep...
  CHECK_THROWS_WITH(load_arena(arena, file), Contains("match no model parameter") &&
                                                 Contains("'mlp.norms.0.num_batches_tracked'"));
  // ...and tolerates it when asked, reporting what it skipped.
  LoadReport r = load_arena(arena, file, {.allow_unexpected = true});
  CHECK(r.unexpected == std::vector<std::string>{"mlp.norms.0.num_batches_tracked"});
  CHECK(r.missing.empty());
  CHECK(r.loaded.size() == arena.parameters().size());
  Tensor x = from_bits(expected["x_shape"], expected["x_bits"]);
  Tensor y = from_bits(expected["y_shape"], expected["y_bits"]);
  nn::Mlp<float>::Workspace ws;
  auto out = mlp.forward(x.matrix(), ws);
  REQUIRE(out.rows == y.shape()[0]);
  REQUIRE(out.cols == y.shape()[1]);
  for (Index i = 0; i < out.rows; ++i)
    for (Index j = 0; j < out.cols; ++j) CHECK(out(i, j) == Approx(y[i * out.cols + j]).margin(1e-5));
}

TEST_CASE("save_arena / load_arena round trip, prefixes, and strict checks that leave the arena untouched") {
  auto dir = testing::temp_dir("st_arena");
  nn::MlpOptions opt{.in = 5, .layers = {4, 3}, .batch_norm = true};
  ParameterArena src(1);
  nn::Mlp<float> a(src, "mlp", opt);
  src.at("mlp.norms.0.running_mean").value[2] = 0.75f;  // a buffer, not only parameters
  save_arena(dir / "m.safetensors", src, {{"k", "v"}});

  ParameterArena dst(2);
  nn::Mlp<float> b(dst, "mlp", opt);
  auto file = SafetensorsFile::load(dir / "m.safetensors");
  CHECK(file.metadata().at("k") == "v");
  LoadReport r = load_arena(dst, file);
  CHECK(r.loaded.size() == src.parameters().size());
  for (auto& p : src.parameters()) {
    INFO(p.name);
    CHECK(std::memcmp(p.value, dst.at(p.name).value, sizeof(float) * p.numel()) == 0);
  }

  SECTION("shape mismatch names the tensor and both shapes; nothing is written") {
    ParameterArena other(3);
    nn::Mlp<float> c(other, "mlp", {.in = 3, .layers = {4, 3}, .batch_norm = true});
    const float before = other.at("mlp.layers.1.weight").value[0];
    CHECK_THROWS_WITH(load_arena(other, file), Contains("m.safetensors") &&
                                                   Contains("tensor 'mlp.layers.0.weight': shape [4, 5] in file, [4, 3] in model"));
    CHECK(other.at("mlp.layers.1.weight").value[0] == before);
  }
  SECTION("missing tensors") {
    ParameterArena bigger(4);
    nn::Mlp<float> c(bigger, "mlp", opt);
    auto& extra = bigger.add("head.weight", Shape{2, 3}, {.init = Init::constant(0.5)});
    const float before = bigger.at("mlp.layers.0.weight").value[0];
    CHECK_THROWS_WITH(load_arena(bigger, file), Contains("1 model tensor(s) missing") && Contains("'head.weight'"));
    CHECK(bigger.at("mlp.layers.0.weight").value[0] == before);
    LoadReport rr = load_arena(bigger, file, {.allow_missing = true});
    CHECK(rr.missing == std::vector<std::string>{"head.weight"});
    CHECK(extra.value[0] == 0.5f);
    CHECK(bigger.at("mlp.layers.0.weight").value[0] == src.at("mlp.layers.0.weight").value[0]);
  }
  SECTION("unexpected tensors") {
    ParameterArena smaller(5);
    smaller.add("mlp.layers.0.weight", Shape{4, 5});
    CHECK_THROWS_WITH(load_arena(smaller, file), Contains("tensor(s) in the file match no model parameter") &&
                                                     Contains("'mlp.layers.0.bias'"));
    LoadReport rr = load_arena(smaller, file, {.allow_unexpected = true});
    CHECK(rr.loaded == std::vector<std::string>{"mlp.layers.0.weight"});
    CHECK(rr.unexpected.size() == src.parameters().size() - 1);
    LoadReport ig = load_arena(smaller, file, {.ignore_prefixes = {"mlp.layers.1.", "mlp.norms.", "mlp.layers.0.bias"}});
    CHECK(ig.unexpected.empty());
  }
  SECTION("prefix: a model inside a larger state dict") {
    SafetensorsWriter w;
    add_arena(w, src, "model");
    Tensor other(Shape{3}, 1.f);
    w.add("optimizer.lr", other.view());
    auto f = SafetensorsFile::parse(w.serialize());
    CHECK(f.contains("model.mlp.layers.0.weight"));
    ParameterArena third(6);
    nn::Mlp<float> c(third, "mlp", opt);
    LoadReport rr = load_arena(third, f, {.prefix = "model"});  // tensors outside the prefix are not "unexpected"
    CHECK(rr.unexpected.empty());
    CHECK(third.at("mlp.layers.1.bias").value[1] == src.at("mlp.layers.1.bias").value[1]);
  }
  SECTION("non-float dtypes are refused for parameters; F16/BF16/F64 are converted") {
    ParameterArena t(7);
    auto& p = t.add("w", Shape{2});
    std::vector<std::int64_t> ints = {1, 2};
    SafetensorsWriter w;
    w.add("w", Shape{2}, ints.data());
    CHECK_THROWS_WITH(load_arena(t, SafetensorsFile::parse(w.serialize())), Contains("tensor 'w': dtype I64 in file"));
    const std::uint16_t half[2] = {0x3c00, 0xc000};     // 1, -2 in F16
    const std::uint16_t bf[2] = {0x3f80, 0x4040};       // 1, 3 in BF16
    const double dbl[2] = {0.25, -1e-3};
    for (int k = 0; k < 3; ++k) {
      SafetensorsWriter w2;
      if (k == 0) w2.add_raw("w", Dtype::F16, Shape{2}, half);
      if (k == 1) w2.add_raw("w", Dtype::BF16, Shape{2}, bf);
      if (k == 2) w2.add_raw("w", Dtype::F64, Shape{2}, dbl);
      load_arena(t, SafetensorsFile::parse(w2.serialize()));
      const float want[3][2] = {{1.f, -2.f}, {1.f, 3.f}, {0.25f, static_cast<float>(-1e-3)}};
      CHECK(p.value[0] == want[k][0]);
      CHECK(p.value[1] == want[k][1]);
    }
  }
}

TEST_CASE("safetensors checksums: every tensor's CRC32C is written, hidden from metadata() and verified on every read",
          "[io][checksum]") {
  auto dir = testing::temp_dir("st_checksum");
  nn::MlpOptions opt{.in = 5, .layers = {4, 3}, .batch_norm = true};
  ParameterArena a_arena(1), b_arena(2);
  nn::Mlp<float> a(a_arena, "mlp", opt), b(b_arena, "mlp", opt);  // same shapes, other values
  save_arena(dir / "a.safetensors", a_arena, {{"k", "v"}});
  save_arena(dir / "b.safetensors", b_arena, {{"k", "v"}});
  const std::string a_bytes = read_file(dir / "a.safetensors"), b_bytes = read_file(dir / "b.safetensors");
  REQUIRE(a_bytes.size() == b_bytes.size());

  auto a_file = SafetensorsFile::parse(a_bytes);
  CHECK(a_file.checksummed());
  CHECK(a_file.metadata() == std::map<std::string, std::string>{{"k", "v"}});  // the checksum key is consumed
  for (const auto& e : a_file.entries()) CHECK(e.has_crc32c);
  a_file.verify_checksums();
  std::uint64_t header_end = 8;
  for (int i = 7; i >= 0; --i) header_end += static_cast<std::uint64_t>(static_cast<unsigned char>(a_bytes[i])) << (8 * i);

  SECTION("one flipped bit in a tensor's bytes: reads of that tensor fail naming it, other tensors still read") {
    const SafetensorsEntry& e = a_file.at("mlp.layers.1.weight");
    std::string bad = a_bytes;
    bad[header_end + e.begin + 5] ^= 0x10;
    auto f = SafetensorsFile::parse(bad, "torn.safetensors");
    CHECK_THROWS_WITH(f.to_float("mlp.layers.1.weight"),
                      Contains("torn.safetensors: tensor 'mlp.layers.1.weight': checksum mismatch"));
    CHECK_THROWS_WITH(f.raw_bytes("mlp.layers.1.weight"), Contains("checksum mismatch"));
    CHECK_THROWS_WITH(f.verify_checksums(), Contains("tensor 'mlp.layers.1.weight': checksum mismatch"));
    CHECK(same_bits(f.to_float("mlp.layers.0.weight"), a_file.to_float("mlp.layers.0.weight")));
    ParameterArena dst(3);
    nn::Mlp<float> c(dst, "mlp", opt);
    CHECK_THROWS_WITH(load_arena(dst, f), Contains("checksum mismatch"));
  }
  SECTION("the header of one model over the bytes of another (a file rewritten in place) is refused") {
    const std::string mixed = a_bytes.substr(0, header_end) + b_bytes.substr(header_end);
    ParameterArena dst(3);
    nn::Mlp<float> c(dst, "mlp", opt);
    CHECK_THROWS_WITH(load_arena(dst, SafetensorsFile::parse(mixed)), Contains("checksum mismatch"));
    // The same through an open file whose bytes are replaced between the header read and the load.
    write_file_atomic(dir / "live.safetensors", a_bytes);
    auto live = SafetensorsFile::load(dir / "live.safetensors");
    {
      std::fstream out(dir / "live.safetensors", std::ios::in | std::ios::out | std::ios::binary);
      out.write(b_bytes.data(), static_cast<std::streamsize>(b_bytes.size()));  // in place: same inode
    }
    CHECK_THROWS_WITH(load_arena(dst, live), Contains("live.safetensors") && Contains("checksum mismatch"));
  }
  SECTION("BF16, F16 and integer tensors are verified too") {
    std::vector<std::uint16_t> half = {0x3f80, 0x4000, 0xbf80};
    std::vector<std::int64_t> ids = {1, 2, 3};
    SafetensorsWriter w;
    w.add_raw("bf", Dtype::BF16, Shape{3}, half.data());
    w.add_raw("f16", Dtype::F16, Shape{3}, half.data());
    w.add("ids", Shape{3}, ids.data());
    const std::string good = w.serialize();
    auto f = SafetensorsFile::parse(good);
    CHECK(f.to_float("bf")[0] == 1.f);
    CHECK(f.to_int64("ids") == ids);
    for (const char* name : {"bf", "f16", "ids"}) {
      INFO(name);
      std::string bad = good;
      std::uint64_t h = 8;
      for (int i = 7; i >= 0; --i) h += static_cast<std::uint64_t>(static_cast<unsigned char>(good[i])) << (8 * i);
      bad[h + f.at(name).begin] ^= 1;
      auto g = SafetensorsFile::parse(bad);
      if (std::string(name) == "ids") CHECK_THROWS_WITH(g.to_int64(name), Contains("checksum mismatch"));
      else CHECK_THROWS_WITH(g.to_float(name), Contains("checksum mismatch"));
    }
  }
  SECTION("files without checksums (other writers) load unchecked; malformed checksum lists are refused") {
    std::string no_crc = make_file(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", zeros(4));
    auto f = SafetensorsFile::parse(no_crc);
    CHECK_FALSE(f.checksummed());
    CHECK(f.to_float("x")[0] == 0.f);
    check_parse_error(make_file(R"({"__metadata__": {"mtrank.crc32c": "0000000"}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                                zeros(4)),
                      "__metadata__.mtrank.crc32c: expected 1 comma-separated 8-digit hex CRC32C values");
    check_parse_error(make_file(R"({"__metadata__": {"mtrank.crc32c": "0000000g"}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                                zeros(4)),
                      "got 'g' at character 7");
    // crc32c of four zero bytes is 48674bc7: a correct list is accepted.
    auto ok = SafetensorsFile::parse(make_file(
        R"({"__metadata__": {"mtrank.crc32c": "48674bc7"}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", zeros(4)));
    CHECK(ok.to_float("x")[0] == 0.f);
    SafetensorsWriter w;
    CHECK_THROWS_WITH(w.set_metadata("mtrank.crc32c", "x"), Contains("reserved"));
  }
}
