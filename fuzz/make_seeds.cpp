// Writes the seed corpora of the fuzz targets that need files written by the library itself
// (checkpoints, converted weights, npy) or many small synthetic texts, into <dir>/<target>/.
// Not a fuzzer: built on request (ninja -C build/fuzz fuzz_make_seeds) and run once; its output
// is committed under fuzz/corpus/. Every file stays below 60 000 bytes (-max_len is 65536).
//
//   build/fuzz/fuzz/fuzz_make_seeds fuzz/corpus
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_configs.hpp"
#include "mtrank/data/batch.hpp"
#include "mtrank/data/simulator.hpp"
#include "mtrank/io/checkpoint.hpp"
#include "mtrank/io/json_util.hpp"
#include "mtrank/io/npy.hpp"
#include "mtrank/io/safetensors.hpp"
#include "mtrank/models/mm_fusion.hpp"
#include "mtrank/models/model.hpp"
#include "mtrank/train/optimizer.hpp"
#include "mtrank/train/trainer.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mtrank;

namespace {

constexpr std::size_t kMaxSeed = 60000;
fs::path g_out;
int g_written = 0, g_skipped = 0;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  if (bytes.size() > kMaxSeed) {
    std::fprintf(stderr, "skip %s/%s: %zu bytes\n", target.c_str(), name.c_str(), bytes.size());
    ++g_skipped;
    return;
  }
  fs::create_directories(g_out / target);
  std::ofstream f(g_out / target / name, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) fail("cannot write ", (g_out / target / name).string());
  ++g_written;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// ---- checkpoints ----

const data::Dataset& feed() {
  static const data::Dataset d = [] {
    data::FeedSimulatorOptions o;
    o.users = 6;
    o.items = 10;
    o.categories = 3;
    o.authors = 3;
    o.impressions = 64;
    o.max_seq_len = 3;
    o.embedding_dim = 2;
    o.latent_dim = 2;
    o.seed = 3;
    return data::make_feed_dataset(o);
  }();
  return d;
}

// Layer widths at most 4: the checkpoints must stay small.
void shrink(json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& k = it.key();
      if ((k == "layers" || k == "hidden" || k == "micro_mlp") && it->is_array()) {
        for (auto& v : *it)
          if (v.is_number_integer()) v = std::min<std::int64_t>(v.get<std::int64_t>(), 4);
      } else if ((k == "ff" || k == "time_buckets" || k == "top_k") && it->is_number_integer()) {
        *it = std::min<std::int64_t>(it->get<std::int64_t>(), 4);
      } else {
        shrink(*it);
      }
    }
  } else if (j.is_array()) {
    for (auto& v : j) shrink(v);
  }
}

// The example config of `type` with the tiny feed's schema (after the data section's task options).
json example_config(const std::string& type, data::Dataset& d) {
  json c = io::parse_json(slurp(fs::path(MTRANK_SOURCE_DIR) / "examples" / "configs" / (type + "_simulator.json")), type);
  d = feed();
  const json& ds = c["data"];
  if (ds.contains("tasks")) d = data::select_tasks(d, ds["tasks"].get<std::vector<std::string>>());
  if (ds.contains("fused_task")) {
    std::vector<std::pair<std::string, double>> w;
    for (auto it = ds["fused_task"]["weights"].begin(); it != ds["fused_task"]["weights"].end(); ++it)
      w.emplace_back(it.key(), it->get<double>());
    d = models::add_fused_task(d, ds["fused_task"].value("name", "fused"), w);
  }
  c["schema"] = d.schema;
  c["data"]["impressions"] = 64;
  shrink(c["model"]);
  return c;
}

std::string train_checkpoint(const json& cfg, const data::Dataset& d, const std::string& optimizer, bool uwl) {
  auto model = models::build_model(cfg);
  auto opt = train::make_optimizer({{"type", optimizer}});
  train::TrainerOptions o;
  o.batch_size = 16;
  o.epochs = 1;
  o.max_steps_per_epoch = 1;
  o.progress = 2;
  o.uwl = uwl;
  train::Trainer t(*model, *opt, o);
  t.fit(d);
  const fs::path tmp = g_out / ".seed.tmp";
  t.save_checkpoint(tmp);
  std::string bytes = slurp(tmp);
  fs::remove(tmp);
  return bytes;
}

std::string serving_file(const json& cfg) {
  auto model = models::build_model(cfg);
  const fs::path tmp = g_out / ".seed.tmp";
  io::save_serving_weights(tmp, model->arena(), cfg);
  std::string bytes = slurp(tmp);
  fs::remove(tmp);
  return bytes;
}

// The same file with metadata key `key` replaced.
std::string with_metadata(const std::string& file, const std::string& key, const std::string& value) {
  const auto f = io::SafetensorsFile::parse(file);
  io::SafetensorsWriter w;
  std::vector<std::string> raw;
  raw.reserve(f.entries().size());
  for (const auto& e : f.entries()) {
    raw.push_back(f.raw_bytes(e.name));
    w.add_raw(e.name, e.dtype, e.shape, raw.back().data());
  }
  for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
  w.set_metadata(key, value);
  return w.serialize();
}

std::string with_config(const std::string& file, const json& cfg) { return with_metadata(file, "mtrank.config", cfg.dump()); }

void checkpoints() {
  const std::vector<std::string> types = {"dnn", "shared_bottom", "esmm", "mmoe", "ple", "cgc", "snr_trans", "snr_aver",
                                          "multi_domain", "mm", "din", "dmt", "dmt_gru", "sim", "co_action"};
  for (const auto& type : types) {
    data::Dataset d;
    const json cfg = example_config(type, d);
    put("checkpoint", type + ".train.safetensors", train_checkpoint(cfg, d, "adam", false));
    put("checkpoint", type + ".serving.safetensors", serving_file(cfg));
  }
  data::Dataset d;
  const json mmoe = example_config("mmoe", d);
  for (const char* o : {"sgd", "adagrad", "ftrl", "adamw"}) put("checkpoint", std::string("mmoe.") + o + ".safetensors", train_checkpoint(mmoe, d, o, false));
  const std::string uwl = train_checkpoint(mmoe, d, "adam", true);
  put("checkpoint", "mmoe.uwl.safetensors", uwl);

  // Big numbers in the stored config: each must end in mtrank::Error.
  const std::string base = serving_file(mmoe);
  struct Big {
    const char* name;
    const char* pointer;
    json value;
  };
  const std::int64_t huge = std::int64_t{1} << 62;
  const std::vector<Big> bigs = {
      {"layers", "/model/expert/layers", json::array({huge})},
      {"layers_many", "/model/expert/layers", json::array({1 << 20, 1 << 20, 1 << 20})},
      {"tower", "/model/tower/hidden", json::array({std::int64_t{1} << 31})},
      {"experts", "/model/num_experts", huge},
      {"vocab", "/schema/sparse/0/vocab", 50000000},
      {"vocab_huge", "/schema/sparse/1/vocab", huge},
      {"dim", "/schema/sparse/0/dim", std::int64_t{1} << 40},
      {"scenes", "/schema/num_scenes", huge},
      {"max_len", "/schema/sequences/0/max_len", huge},
      {"seed", "/seed", json(std::numeric_limits<std::uint64_t>::max())},
      {"vocab_float", "/schema/sparse/0/vocab", 5e7},
  };
  for (const auto& b : bigs) {
    json c = mmoe;
    c[json::json_pointer(b.pointer)] = b.value;
    put("checkpoint", std::string("big.") + b.name + ".safetensors", with_config(base, c));
  }
  // Other model types' own size knobs.
  struct TypeBig {
    const char* type;
    const char* name;
    const char* pointer;
    json value;
  };
  const std::vector<TypeBig> type_bigs = {
      {"multi_domain", "scene_dim", "/model/scene_dim", huge},
      {"multi_domain", "subnets", "/model/stages/0/num_subnets", huge},
      {"dmt", "heads", "/model/sequences/0/heads", huge},
      {"dmt", "ff", "/model/sequences/0/ff", huge},
      {"dmt", "time_buckets", "/model/sequences/0/time_buckets", huge},
      {"sim", "top_k", "/model/sequences/0/top_k", huge},
      {"din", "hidden", "/model/sequences/0/hidden", json::array({huge})},
      {"co_action", "orders", "/model/co_action/orders", huge},
      {"co_action", "micro_mlp", "/model/co_action/micro_mlp", json::array({huge, 4})},
      {"ple", "experts", "/model/levels/0/num_task_experts", huge},
      {"mm", "subnets", "/model/stages/0/num_subnets", huge},
      {"snr_trans", "task_subnet", "/model/task_subnet", json::array({huge, 0, 1})},
  };
  for (const auto& b : type_bigs) {
    data::Dataset dd;
    json c = example_config(b.type, dd);
    const std::string file = serving_file(c);
    c[json::json_pointer(b.pointer)] = b.value;
    put("checkpoint", std::string("big.") + b.type + "." + b.name + ".safetensors", with_config(file, c));
  }
  // Train state variants (Trainer::resume).
  const std::string train = train_checkpoint(mmoe, d, "adam", false);
  const std::vector<std::pair<const char*, const char*>> states = {
      {"state_epoch_string", R"({"epoch":"1","step_in_epoch":0,"global_step":1,"optimizer":"adam"})"},
      {"state_array", R"([1,2,3])"},
      {"state_optimizer_number", R"({"epoch":1,"step_in_epoch":0,"global_step":1,"optimizer":5})"},
      {"state_negative", R"({"epoch":-1,"step_in_epoch":-5,"global_step":-9223372036854775808,"optimizer":"adam"})"},
      {"state_missing", R"({"optimizer":"adam"})"},
      {"state_best_string", R"({"epoch":1,"step_in_epoch":0,"global_step":1,"optimizer":"adam","best":"x","monitor":3})"},
  };
  for (const auto& [name, state] : states) put("checkpoint", std::string(name) + ".safetensors", with_metadata(train, "mtrank.train_state", state));
  put("checkpoint", "kind_serving_with_state.safetensors", with_metadata(train, "mtrank.kind", "serving"));
  put("checkpoint", "format_2.safetensors", with_metadata(base, "mtrank.format", "2"));
  put("checkpoint", "config_not_object.safetensors", with_metadata(base, "mtrank.config", "[1]"));
}

// ---- convert_map ----

void convert_map() {
  const json cfg = json::parse(fuzz::kConvertMapConfig);
  auto model = models::build_model(cfg);
  auto seed = [&](const std::string& name, const json& map, const std::string& prefix, bool extra, bool f64) {
    io::SafetensorsWriter w;
    std::vector<std::vector<double>> doubles;
    doubles.reserve(model->arena().parameters().size());
    bool first = true;
    for (const auto& p : model->arena().parameters()) {
      if (f64 && first) {
        doubles.emplace_back(p.value, p.value + p.numel());
        w.add_raw(prefix + p.name, io::Dtype::F64, p.shape, doubles.back().data());
      } else {
        w.add(prefix + p.name, TensorView<const float>{p.value, p.shape});
      }
      first = false;
    }
    const std::int64_t tracked = 7;
    if (extra) w.add("bn.num_batches_tracked", Shape{}, &tracked);
    const std::string m = map.is_null() ? std::string() : map.dump();
    std::string bytes(2, '\0');
    bytes[0] = static_cast<char>(m.size() & 0xff);
    bytes[1] = static_cast<char>(m.size() >> 8);
    bytes += m;
    bytes += w.serialize();
    put("convert_map", name, bytes);
  };
  json rename = json::object();
  for (const auto& p : model->arena().parameters()) rename["module." + p.name] = p.name;
  seed("plain.bin", nullptr, "", false, false);
  seed("rename.bin", {{"rename", rename}}, "module.", false, false);
  seed("rename_ignore.bin", {{"rename", rename}, {"ignore", {"bn."}}}, "module.", true, false);
  seed("ignore_f64.bin", {{"ignore", {"bn.", "x"}}}, "", true, true);
  seed("missing_ignore.bin", {{"rename", rename}}, "module.", true, false);
  seed("bad_key.bin", {{"renames", rename}}, "module.", false, false);
}

// ---- npy ----

void npy() {
  auto t = [](Shape s) {
    Tensor x(s);
    for (Index i = 0; i < x.numel(); ++i) x.data()[i] = 0.5f * static_cast<float>(i) - 1.0f;
    return x;
  };
  put("npy", "f4_2x3.npy", io::serialize_npy(t(Shape{2, 3})));
  put("npy", "f4_scalar.npy", io::serialize_npy(t(Shape{})));
  put("npy", "f4_empty.npy", io::serialize_npy(t(Shape{0, 4})));
  put("npy", "f4_rank4.npy", io::serialize_npy(t(Shape{2, 1, 3, 2})));
  // Hand-made headers: f8 Fortran order (v1.0), and a v2.0 header.
  auto file = [](std::string dict, int major, const std::string& payload) {
    const std::size_t prefix = major == 1 ? 10 : 12;
    while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
    dict += '\n';
    std::string s = "\x93NUMPY";
    s += static_cast<char>(major);
    s += '\0';
    const std::uint32_t n = static_cast<std::uint32_t>(dict.size());
    s += static_cast<char>(n & 0xff);
    s += static_cast<char>((n >> 8) & 0xff);
    if (major != 1) {
      s += static_cast<char>((n >> 16) & 0xff);
      s += static_cast<char>(n >> 24);
    }
    return s + dict + payload;
  };
  const double f8[6] = {1, 2, 3, 4, 5, 6};
  put("npy", "f8_fortran.npy",
      file("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", 1, std::string(reinterpret_cast<const char*>(f8), sizeof f8)));
  const float f4[4] = {1, -2, 3.5f, 0};
  put("npy", "f4_v2.npy", file("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 2, std::string(reinterpret_cast<const char*>(f4), sizeof f4)));
  put("npy", "f4_v3_fortran3.npy",
      file("{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2, 2), }", 3, std::string(reinterpret_cast<const char*>(f4), sizeof f4)));
  put("npy", "i4.npy", file("{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", 1, std::string(reinterpret_cast<const char*>(f4), sizeof f4)));
  put("npy", "zero_big.npy", file("{'descr': '<f4', 'fortran_order': True, 'shape': (0, 4611686018427387904), }", 1, ""));
}

// ---- readers (byte 0: reader, bytes 1-2: options, then the file) ----

// opts: 2 bytes for the tabular readers, 4 for MovieLens, 6 for SASRec, 3 for CSV (see fuzz_readers.cpp).
void reader(const std::string& name, int which, const std::string& opts, const std::string& text) {
  put("readers", name, std::string(1, static_cast<char>(which)) + opts + text);
}

std::string census_raw_row(const char* income, const char* marital) {
  // row, then the 42 census columns (categoricals as text; the 7 continuous as numbers).
  std::string r = "0, 73, Not in universe, 0, 0, High school graduate, 0, Not in universe, ";
  r += marital;
  r += ", Not in universe or children, Not in universe, White, All other, Female, Not in universe, Not in universe, "
       "Not in labor force, 0, 0, 0, Nonfiler, Not in universe, Not in universe, Other Rel 18+ ever marr not in subfamily, "
       "Other relative of householder, 1700.09, ?, ?, ?, Not in universe under 1 year old, ?, 0, Not in universe, "
       "United-States, United-States, United-States, Native- Born in the United States, 0, Not in universe, 2, 0, 95, ";
  r += income;
  r += "\n";
  return r;
}

void readers() {
  const std::string adult =
      "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\n"
      "50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, ?, >50K\n";
  reader("adult.txt", 0, "\x01\x01", adult);
  reader("adult_test.txt", 0, "\x02\x03", "|1x3 Cross validator\n" + adult + "25, Private, 226802, 11th, 7, Never-married, ?, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.\n");
  reader("census_raw.txt", 1, "\x01\x01", census_raw_row("- 50000.", "Widowed") + census_raw_row("50000+.", "Never married"));
  {
    std::string h, r1, r2;
    const char* cols[] = {"age", "class of worker", "industry code", "occupation code", "education", "wage per hour",
                          "enrolled in edu inst last wk", "marital status", "major industry code", "major occupation code", "race",
                          "hispanic origin", "sex", "member of a labor union", "reason for unemployment",
                          "full or part time employment stat", "capital gains", "capital losses", "divdends from stocks",
                          "tax filer status", "region of previous residence", "state of previous residence",
                          "detailed household and family stat", "detailed household summary in household", "instance weight",
                          "migration code-change in msa", "migration code-change in reg", "migration code-move within reg",
                          "live in this house 1 year ago", "migration prev res in sunbelt", "num persons worked for employer",
                          "family members under 18", "country of birth father", "country of birth mother", "country of birth self",
                          "citizenship", "own business or self employed", "fill inc questionnaire for veterans admin",
                          "veterans benefits", "weeks worked in year", "year", "income"};
    int i = 0;
    for (const char* c : cols) {
      const std::string n(c);
      h += (i ? "," : "") + n;
      const bool cont = n == "age" || n == "wage per hour" || n == "capital gains" || n == "capital losses" ||
                        n == "divdends from stocks" || n == "num persons worked for employer" || n == "weeks worked in year" ||
                        n == "instance weight";
      r1 += (i ? "," : "") + std::string(n == "income" || n == "marital status" ? "0" : cont ? "0.25" : std::to_string(i % 7));
      r2 += (i ? "," : "") + std::string(n == "income" || n == "marital status" ? "1" : cont ? "0.5" : std::to_string(i % 5));
      ++i;
    }
    reader("census_rechub.csv", 2, "\x01\x01", h + "\n" + r1 + "\n" + r2 + "\n");
  }
  {
    const char* sp[] = {"101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206", "207", "210", "216",
                        "508", "509", "702", "853", "301", "109_14", "110_14", "127_14", "150_14"};
    const char* de[] = {"D109_14", "D110_14", "D127_14", "D150_14", "D508", "D509", "D702", "D853"};
    std::string h, r1, r2;
    for (const char* c : sp) {
      h += std::string(h.empty() ? "" : ",") + c;
      r1 += std::string(r1.empty() ? "" : ",") + "3";
      r2 += std::string(r2.empty() ? "" : ",") + "17";
    }
    for (const char* c : de) {
      h += std::string(",") + c;
      r1 += ",0.5";
      r2 += ",0";
    }
    reader("ali_ccp.csv", 3, "\x02\x01", h + ",click,purchase\n" + r1 + ",1,1\n" + r2 + ",0,0\n");
    reader("ali_ccp_bad.csv", 3, "\x02\x01", h + ",click,purchase\n" + r1 + ",0,1\n");
  }
  {
    std::string h = "label", r1 = "0", r2 = "1";
    for (int k = 1; k <= 13; ++k) {
      h += ",I" + std::to_string(k);
      r1 += "," + std::to_string(k * 3 - 5);
      r2 += k % 3 ? ",1" : ",";
    }
    for (int k = 1; k <= 26; ++k) {
      h += ",C" + std::to_string(k);
      r1 += ",68fd1e64";
      r2 += k % 4 ? ",a9b1" : ",";
    }
    reader("criteo.csv", 4, "\x01\x03", h + "\n" + r1 + "\n" + r2 + "\n");
  }
  {
    std::string flags;
    for (int g = 0; g < 19; ++g) flags += g == 3 ? "|1" : "|0";
    const std::string occ = "administrator\nartist\nengineer\n";
    const std::string users = "1|24|M|artist|85711\n2|53|F|administrator|94043\n3|23|M|engineer|32067\n";
    const std::string items = "1|Toy Story (1995)|01-Jan-1995||http://x" + flags + "\n2|GoldenEye (1995)|01-Jan-1995||http://y" +
                              flags + "\n3|Four Rooms|||" + flags + "\n";
    std::string ratings;
    for (int u = 1; u <= 3; ++u)
      for (int i = 1; i <= 3; ++i)
        ratings += std::to_string(u) + "\t" + std::to_string(i) + "\t" + std::to_string(1 + (u + i) % 5) + "\t" +
                   std::to_string(881250949 + 1000 * i) + "\n";
    const std::string nul(1, '\0');
    reader("movielens.bin", 5, std::string("\x00\x00\x00\x04", 4), occ + nul + users + nul + items + nul + ratings);
    reader("movielens_opts.bin", 5, "\x01\x03\x02\x84", occ + nul + users + nul + items + nul + ratings);
    // Ids at the top of the accepted range (user_id and movie_id index tables).
    reader("movielens_big_ids.bin", 5, std::string("\x00\x00\x00\x04", 4),
           occ + nul + "1073741824|24|M|artist|85711\n" + nul + "1073741824|T|01-Jan-1995||u" + flags + "\n" + nul +
               "1073741824\t1073741824\t5\t881250949\n");
  }
  reader("sasrec.txt", 6, std::string("\x00\x00\x00\x00\x00\x05", 6), "1 1\n1 2\n1 3\n1 4\n2 2\n2 5\n3 1\n3 6\n3 7\n");
  reader("sasrec_opts.txt", 6, std::string("\x01\x03\x02\x01\x02\x07", 6), "1 1\n1 2\n1 5\n2 2\n2 3\n2 4\n2 1\n");
  const std::string csv_header = "user,city,item,age,price,hist,hist_items,tags,click,dwell,scene\n";
  reader("csv_basic.csv", 7, std::string("\x00\x00\x00", 3), csv_header + "1,paris,3,31.5,9.9,1|2|3,4|5,a|b,1,12.5,0\n2,\"new, york\",0,40,1,,,,0,0,2\n");
  reader("csv_options.csv", 7, "\x83\x7d\x01",
         "# comment\nuser\tcity\titem\tage\tprice\thist\thist_items\ttags\tclick\tdwell\tscene\n"
         "3\t7\t12\tNA\t?\t4;5\t1;2\tz\tyes\t\t1\n");
  reader("csv_noheader.csv", 7, std::string("\x19\x01\x00", 3), "1,a,1,2,3,4,5,6,0,1,0\n2,b,2,3,4,5,6,7,1,0,2\n");
  reader("csv_quotes.csv", 8, std::string("\x23\x00\x00", 3), "'a''b',\"c\"\n 'multi\nline' , x\r\n\n");
  reader("csv_records.csv", 8, std::string("\x41\x00\x00", 3), "a\tb\n  c  \t\"d\"\"e\"\n#x\n");
}

// ---- config_sections ----

void config_sections() {
  const std::vector<std::pair<const char*, const char*>> seeds = {
      {"serving.json", R"({"serving": {"candidate_fields": ["item_id", "category", "author", "log_item_pop", "item_age"],
          "fusion": {"type": "weighted_sum", "weights": {"click": 1.0, "interaction": 2.0}}, "max_candidates": 100,
          "max_sequence_length": 4, "weights": "int8"}})"},
      {"serving_sides.json", R"({"serving": {"fusion": {"type": "product", "alpha": {"click": 0.1}, "beta": {"click": 1, "long_dwell": -0.5}}}})"},
      {"serving_big.json", R"({"serving": {"max_candidates": 9223372036854775807, "max_sequence_length": 18446744073709551615, "weights": "bf16"}})"},
      {"serving_schema.json", R"({"schema": {"sparse": [{"name": "candidates", "vocab": 3}, {"name": "u", "vocab": 4611686018427387904, "side": "user"}],
          "dense": ["d"], "tasks": [{"name": "t"}], "num_scenes": 4611686018427387904}, "serving": {"candidate_fields": ["d"]}})"},
      {"optimizer_adam.json", R"({"optimizer": {"type": "adam", "lr": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}})"},
      {"optimizer_sgd.json", R"({"optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "dampening": 0, "nesterov": true, "weight_decay": 1e-4}})"},
      {"optimizer_adagrad.json", R"({"optimizer": {"type": "adagrad", "lr": 0.1, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-10}})"},
      {"optimizer_ftrl.json", R"({"optimizer": {"type": "ftrl", "alpha": 0.05, "beta": 1, "l1": 0.1, "l2": 0.01}})"},
      {"optimizer_adamw.json", R"({"optimizer": {"type": "adamw", "lr": 1e308, "beta1": 0.5, "beta2": 0.9}})"},
      {"trainer.json", R"({"trainer": {"batch_size": 16, "epochs": 1, "seed": 3, "patience": 1, "monitor": "loss",
          "tasks": [{"name": "click", "loss": "bce_with_logits", "weight": 1}, {"name": "interaction", "weight": 0.5},
                    {"name": "long_dwell", "loss": "bce_with_logits", "weight": 2}],
          "penalty_weight": 0.001, "eval_batch_size": 7, "max_steps_per_epoch": 2, "log_every": 0, "data_parallel_min_rows": 4}})"},
      {"trainer_uwl.json", R"({"trainer": {"batch_size": 32, "uwl": true, "pcgrad": true, "task_specific_prefixes": ["towers."]},
          "optimizer": {"type": "sgd", "lr": 0.01}})"},
      {"trainer_big.json", R"({"trainer": {"batch_size": 9223372036854775807, "epochs": 4611686018427387904,
          "eval_batch_size": 9223372036854775807, "max_steps_per_epoch": 9223372036854775807, "data_parallel_min_rows": 9223372036854775807}})"},
      {"trainer_zero.json", R"({"trainer": {"batch_size": 1, "epochs": 1, "eval_batch_size": 1, "patience": -1, "max_steps_per_epoch": -1}})"},
      {"trainer_eval_zero.json", R"({"trainer": {"eval_batch_size": 0, "epochs": 1}})"},
      {"trainer_huber.json", R"({"trainer": {"tasks": [{"loss": "huber", "huber_delta": 0.5}, {"loss": "mse"}, {"name": "x"}], "monitor": "auc"}})"},
      {"all.json", R"({"serving": {"candidate_fields": ["item_id"]}, "optimizer": {"type": "adam"}, "trainer": {"epochs": 1, "batch_size": 64}})"},
  };
  for (const auto& [name, text] : seeds) put("config_sections", name, text);
}

// ---- parse_cost (byte 0: parser; then prefix, open, middle, close, suffix split on 0xFF) ----

void cost(const std::string& name, int mode, std::vector<std::string> parts) {
  std::string s(1, static_cast<char>(mode));
  for (std::size_t i = 0; i < parts.size(); ++i) s += (i ? std::string(1, '\xff') : std::string()) + parts[i];
  put("parse_cost", name, s);
}

void parse_cost() {
  // The quadratic case of the old parser callback: 1 MiB of {"candidates":[{},{},...]}.
  cost("request_empty_objects", 0, {R"({"candidates":[)", "{},", "{}", "", "]}"});
  cost("request_candidates", 0, {R"({"request_id":"r","user_id":3,"hour":0.5,"clicks":[1,2,3],"candidates":[)",
                                  R"({"candidate_id":"c#","item_id":7,"tag":"t#","pop":0.25},)", R"({"item_id":1,"tag":"x","pop":1})", "", "]}"});
  cost("request_nested", 0, {R"({"user_id":)", "[", "1", "]", "}"});
  cost("request_sequence", 0, {R"({"user_id":1,"hour":0,"clicks":{"ids":[)", "1,", "2", "", R"(],"times":[0.5]},"candidates":[]})"});
  cost("request_keys", 0, {"{", R"("k#":1,)", R"("user_id":1)", "", "}"});
  cost("config_empty_objects", 1, {R"({"candidates":[)", "{},", "{}", "", "]}"});
  cost("config_nested", 1, {R"({"name":)", "[", "0", "]", "}"});
  cost("config_nested_objects", 1, {R"({"data":)", R"({"a":)", "1", "}", "}"});
  cost("config_fields", 1, {R"({"seed":1,"schema":{"tasks":[{"name":"c"}],"sparse":[)", R"({"name":"f#","vocab":1,"dim":1},)",
                            R"({"name":"z","vocab":1,"dim":1}]},"serving":{"candidate_fields":[)", R"("f#",)",
                            R"("z"]},"model":{"type":"dnn","bottom":{"layers":[1]},"tower":{"hidden":[1]}}})"});
  cost("config_sequences", 1, {R"({"seed":1,"schema":{"tasks":[{"name":"c"}],"sparse":[)", R"({"name":"f#","vocab":1,"dim":1},)",
                               R"({"name":"z","vocab":1,"dim":1}],"sequences":[)", R"({"name":"s#","table":"z","max_len":1},)",
                               R"({"name":"q","table":"z","max_len":1}]},"model":{"type":"dnn","bottom":{"layers":[1]}}})"});
  cost("config_dense", 1, {R"({"seed":1,"schema":{"tasks":[{"name":"click"}],"sparse":[{"name":"u","vocab":4,"dim":1}],"dense":[)",
                           R"({"name":"d#"},)", R"({"name":"last"}]},"model":{"type":"dnn","bottom":{"layers":[1]},"tower":{"hidden":[1]}}})", "", ""});
  cost("config_layers", 1, {R"({"seed":1,"schema":{"tasks":[{"name":"click"}],"dense":["a"]},"model":{"type":"dnn","bottom":{"layers":[)",
                            "2,", "1", "", R"(]}}})"});
  cost("safetensors_tensors", 2, {"{", R"("t#":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)", R"("__metadata__":{"k":"v"}})", "", ""});
  cost("safetensors_metadata", 2, {R"({"__metadata__":{)", R"("k#":"v#",)", R"("z":"v"}})", "", ""});
  cost("safetensors_empty_objects", 2, {R"({"candidates":[)", "{},", "{}", "", "]}"});
  cost("safetensors_shape", 2, {R"({"a":{"dtype":"F32","shape":[)", "0,", "0", "", R"(],"data_offsets":[0,0]}})"});
  cost("csv_rows", 3, {"user,city,age,hist,click,buy\n", "7,c#,0.5,1|2|3,1,0\n", "1,x,1,,0,1\n", "", ""});
  cost("csv_quoted_lines", 3, {"user,city,age,hist,click,buy\n1,\"", "a\n", "\",2,,0,1", "", "\n"});
  cost("csv_columns", 3, {"", "c#,", "user,city,age,hist,click,buy\n", "", ""});
  cost("csv_sequence", 3, {"user,city,age,hist,click,buy\n1,x,2,", "#|", "1", "", ",0,1\n"});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  try {
    checkpoints();
    convert_map();
    npy();
    readers();
    config_sections();
    parse_cost();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "make_seeds: %d files written, %d skipped (too large)\n", g_written, g_skipped);
  return 0;
}
